import NNCore

/// Netpbm grayscale images (PGM), binary `P5` or plain `P2`, scaled to floats in [0, 1].
public struct PGMImage {
    public let width: Int
    public let height: Int
    public let pixels: [Float]

    public init(contentsOf path: String) throws {
        try self.init(parsing: try AtomicFile.read(path, limit: 64 << 20), name: path)
    }

    public init(parsing bytes: [UInt8], name: String) throws {
        var position = 0
        func token() throws -> String {
            while position < bytes.count {
                if bytes[position] == UInt8(ascii: "#") {
                    while position < bytes.count && bytes[position] != UInt8(ascii: "\n") { position += 1 }
                } else if [9, 10, 13, 32].contains(bytes[position]) {
                    position += 1
                } else { break }
            }
            let start = position
            while position < bytes.count && ![9, 10, 13, 32].contains(bytes[position]) { position += 1 }
            guard position > start else { throw DataError("\(name): truncated PGM header") }
            return String(decoding: bytes[start..<position], as: UTF8.self)
        }
        let magic = try token()
        guard magic == "P5" || magic == "P2" else {
            throw DataError("\(name): not a PGM image (magic '\(magic.prefix(8))'; expected P5 or P2)")
        }
        guard let width = Int(try token()), let height = Int(try token()), let maxValue = Int(try token()),
              (1...1 << 24).contains(width), (1...1 << 24).contains(height), width * height <= 1 << 24, (1...255).contains(maxValue)
        else { throw DataError("\(name): bad PGM header (width, height and a maximum value of 1…255 expected)") }
        let count = width * height
        // The same scaling as `Dataset.gather`, so a PGM of a test image gives the same input to the bit.
        let scale = 1 / Float(maxValue)
        var values = [Float]()
        values.reserveCapacity(count)
        if magic == "P5" {
            position += 1  // the single whitespace byte after the maximum value
            guard bytes.count - position >= count else {
                throw DataError("\(name): truncated: \(width)×\(height) needs \(count) pixel bytes, found \(max(bytes.count - position, 0))")
            }
            for i in 0..<count { values.append(Float(min(Int(bytes[position + i]), maxValue)) * scale) }
        } else {
            for _ in 0..<count {
                guard let v = Int(try token()), (0...maxValue).contains(v) else { throw DataError("\(name): bad pixel value in plain PGM") }
                values.append(Float(v) * scale)
            }
        }
        self.width = width
        self.height = height
        pixels = values
    }
}
