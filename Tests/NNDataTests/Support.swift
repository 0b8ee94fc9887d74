import CZlib
import Foundation
import NNCore
import NNData
import Testing

/// gzip-compresses with zlib (window bits 31 selects the gzip wrapper).
func gzip(_ input: [UInt8]) -> [UInt8] {
    var stream = z_stream()
    precondition(deflateInit2_(&stream, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK)
    defer { deflateEnd(&stream) }
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 64)
    var input = input
    let produced = input.withUnsafeMutableBytes { inBuffer in
        output.withUnsafeMutableBytes { outBuffer in
            stream.next_in = inBuffer.bindMemory(to: Bytef.self).baseAddress
            stream.avail_in = uInt(inBuffer.count)
            stream.next_out = outBuffer.bindMemory(to: Bytef.self).baseAddress
            stream.avail_out = uInt(outBuffer.count)
            precondition(deflate(&stream, Z_FINISH) == Z_STREAM_END)
            return outBuffer.count - Int(stream.avail_out)
        }
    }
    return Array(output.prefix(produced))
}

/// An IDX file of unsigned bytes with the given dimensions.
func idx(_ dimensions: [Int], _ elements: [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = [0, 0, 0x08, UInt8(dimensions.count)]
    for d in dimensions { bytes += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
    return bytes + elements
}

/// The real MNIST folder: `$NN_MNIST_DIR`, else the default folder `nn data fetch` fills.
func mnistDirectory() throws -> String {
    let directory = DatasetKind.mnist.defaultDirectory()
    guard DatasetKind.mnist.files.allSatisfy({ DatasetKind.mnist.locate($0, in: directory) != nil }) else {
        Issue.record("MNIST is not in \(directory): run `nn data fetch` or set NN_MNIST_DIR")
        throw DataError("no MNIST")
    }
    return directory
}

/// Expects `body` to throw a `DataError` whose message contains every one of `words`.
func expectDataError(_ words: String..., sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("no error; expected one mentioning \(words)", sourceLocation: sourceLocation)
    } catch let error as DataError {
        for w in words { #expect(error.description.contains(w), "\(error.description)", sourceLocation: sourceLocation) }
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}
