import Foundation
import NNCore
import NNData
import TestSupport
import Testing

@Suite struct FormatTests {
    @Test func sha256KnownAnswers() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex(Array(repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func gzipRoundTripAndDamage() throws {
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7 / 3) }
        let packed = gzip(data)
        #expect(Gzip.isCompressed(packed) && !Gzip.isCompressed(data))
        #expect(try Gzip.decompress(packed) == data)
        expectDataError("truncated") { _ = try Gzip.decompress(Array(packed.prefix(packed.count / 2))) }
        var damaged = packed
        for i in stride(from: 20, to: damaged.count - 8, by: 17) { damaged[i] ^= 0x5A }
        expectDataError("corrupt") { _ = try Gzip.decompress(damaged) }
        expectDataError("more than") { _ = try Gzip.decompress(packed, limit: 1000) }
    }

    @Test func idxParsesAndValidates() throws {
        let array = try IDXArray(parsing: idx([2, 3], [1, 2, 3, 4, 5, 6]), name: "t")
        #expect(array.dimensions == [2, 3] && array.elements == [1, 2, 3, 4, 5, 6])
        expectDataError("f.idx", "magic") { _ = try IDXArray(parsing: [1, 0, 8, 1, 0, 0, 0, 0], name: "f.idx") }
        expectDataError("unknown IDX element type") { _ = try IDXArray(parsing: [0, 0, 0x42, 1, 0, 0, 0, 0], name: "f") }
        expectDataError("floats") { _ = try IDXArray(parsing: [0, 0, 0x0D, 1, 0, 0, 0, 0], name: "f") }
        expectDataError("truncated IDX header") { _ = try IDXArray(parsing: [0, 0, 8, 3, 0, 0], name: "f") }
        expectDataError("truncated", "need 6 bytes") { _ = try IDXArray(parsing: idx([2, 3], [1, 2, 3]), name: "f") }
        expectDataError("trailing") { _ = try IDXArray(parsing: idx([2, 3], [1, 2, 3, 4, 5, 6, 7]), name: "f") }
        expectDataError("too short") { _ = try IDXArray(parsing: [0, 0], name: "f") }
    }

    @Test func idxFilesRawAndGzipped() throws {
        let dir = temporaryDirectory()
        let bytes = idx([4], [9, 8, 7, 6])
        try AtomicFile.write(bytes, to: dir + "/raw")
        try AtomicFile.write(gzip(bytes), to: dir + "/packed.gz")
        #expect(try IDXArray(contentsOf: dir + "/raw").elements == [9, 8, 7, 6])
        #expect(try IDXArray(contentsOf: dir + "/packed.gz").elements == [9, 8, 7, 6])
        try AtomicFile.write(Array(gzip(bytes).dropLast(6)), to: dir + "/cut.gz")
        expectDataError(dir + "/cut.gz", "gzip") { _ = try IDXArray(contentsOf: dir + "/cut.gz") }
        #expect(throws: FileError.self) { try IDXArray(contentsOf: dir + "/missing") }
    }

    @Test func datasetChecksItsFilesBelongTogether() throws {
        let dir = temporaryDirectory()
        try AtomicFile.write(idx([2, 2, 2], [0, 255, 51, 102, 1, 2, 3, 4]), to: dir + "/images")
        try AtomicFile.write(idx([2], [3, 1]), to: dir + "/labels")
        try AtomicFile.write(idx([3], [3, 1, 0]), to: dir + "/three-labels")
        try AtomicFile.write(idx([2], [3, 12]), to: dir + "/bad-labels")
        let data = try Dataset(name: "t", imagesPath: dir + "/images", labelsPath: dir + "/labels", classes: 10)
        #expect(data.sampleCount == 2 && data.inputWidth == 4)
        let x = FloatBuffer(count: 8)
        let labels = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { labels.deallocate() }
        data.gather([1, 0], into: x.base, labels: labels)
        #expect(x.array == [1, 2, 3, 4, 0, 255, 51, 102].map { Float($0) * (1 / 255) })
        #expect(labels[0] == 1 && labels[1] == 3)
        expectDataError("2 images", "3 labels") { _ = try Dataset(name: "t", imagesPath: dir + "/images", labelsPath: dir + "/three-labels", classes: 10) }
        expectDataError("label 12") { _ = try Dataset(name: "t", imagesPath: dir + "/images", labelsPath: dir + "/bad-labels", classes: 10) }
        expectDataError("labels file") { _ = try Dataset(name: "t", imagesPath: dir + "/labels", labelsPath: dir + "/labels", classes: 10) }
        expectDataError("images file") { _ = try Dataset(name: "t", imagesPath: dir + "/images", labelsPath: dir + "/images", classes: 10) }
        expectDataError("missing", "nn data fetch") { _ = try DatasetKind.mnist.load(from: dir) }
    }

    @Test func pgmImages() throws {
        let binary = Array("P5\n# a comment\n2 2\n255\n".utf8) + [0, 255, 51, 102]
        let image = try PGMImage(parsing: binary, name: "b.pgm")
        #expect(image.width == 2 && image.height == 2 && image.pixels == [0, 255, 51, 102].map { Float($0) * (1 / 255) })
        let plain = try PGMImage(parsing: Array("P2 2 1 15\n0 15\n".utf8), name: "p.pgm")
        #expect(plain.pixels == [0, 1])
        expectDataError("not a PGM") { _ = try PGMImage(parsing: Array("P6 1 1 255\n".utf8) + [0, 0, 0], name: "c.ppm") }
        expectDataError("truncated") { _ = try PGMImage(parsing: Array("P5 2 2 255\n".utf8) + [0], name: "t.pgm") }
        expectDataError("bad PGM header") { _ = try PGMImage(parsing: Array("P5 2 2 65535\n".utf8), name: "w.pgm") }
        expectDataError("bad PGM header") { _ = try PGMImage(parsing: Array("P5 166666333333 11666666333333 255\n".utf8), name: "huge.pgm") }
    }
}
