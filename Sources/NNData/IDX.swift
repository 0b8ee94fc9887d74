import NNCore

/// An IDX array (the MNIST file format) of unsigned bytes: a big-endian header of magic number, element type
/// and dimension sizes, then the elements.
public struct IDXArray {
    public let dimensions: [Int]
    public let elements: [UInt8]

    static let elementTypes: [UInt8: String] = [
        0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int", 0x0D: "float", 0x0E: "double",
    ]

    /// Reads a raw or gzip-compressed IDX file; `name` appears in every error.
    public init(contentsOf path: String) throws {
        var bytes = try AtomicFile.read(path)
        if Gzip.isCompressed(bytes) {
            do { bytes = try Gzip.decompress(bytes) } catch let error as DataError { throw DataError("\(path): \(error.description)") }
        }
        try self.init(parsing: bytes, name: path)
    }

    public init(parsing bytes: [UInt8], name: String) throws {
        guard bytes.count >= 4 else { throw DataError("\(name): \(bytes.count) bytes is too short for an IDX header") }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DataError("\(name): not an IDX file (magic number starts with \(bytes[0]), \(bytes[1]) instead of 0, 0)")
        }
        guard let type = IDXArray.elementTypes[bytes[2]] else {
            throw DataError("\(name): unknown IDX element type 0x\(String(bytes[2], radix: 16))")
        }
        guard bytes[2] == 0x08 else { throw DataError("\(name): IDX elements are \(type)s; only unsigned bytes are supported") }
        let rank = Int(bytes[3])
        guard rank >= 1 else { throw DataError("\(name): IDX header declares no dimensions") }
        let headerSize = 4 + 4 * rank
        guard bytes.count >= headerSize else { throw DataError("\(name): truncated IDX header (\(bytes.count) bytes, \(rank) dimensions)") }
        var dimensions: [Int] = []
        var expected = 1
        for d in 0..<rank {
            let o = 4 + 4 * d
            let size = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
            dimensions.append(size)
            expected *= size
        }
        let payload = bytes.count - headerSize
        guard payload == expected else {
            let shape = dimensions.map(String.init).joined(separator: "×")
            throw DataError(payload < expected
                ? "\(name): truncated: dimensions \(shape) need \(expected) bytes of data, the file has \(payload)"
                : "\(name): \(payload - expected) bytes of trailing data after the \(shape) elements")
        }
        self.dimensions = dimensions
        var elements = bytes
        elements.removeSubrange(0..<headerSize)
        self.elements = elements
    }
}
