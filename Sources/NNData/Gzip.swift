import CZlib

public struct DataError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum Gzip {
    /// True when `bytes` start with the gzip magic number.
    public static func isCompressed(_ bytes: [UInt8]) -> Bool { bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b }

    /// Inflates a whole gzip stream; a truncated or corrupt stream, or more than `limit` bytes of output, is an error.
    public static func decompress(_ input: [UInt8], limit: Int = 1 << 30) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DataError("zlib could not start inflating")
        }
        defer { inflateEnd(&stream) }
        var output = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var status: Int32 = Z_OK
        try input.withUnsafeBytes { inBuffer in
            stream.next_in = UnsafeMutablePointer(mutating: inBuffer.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            repeat {
                let produced = chunk.withUnsafeMutableBytes { outBuffer -> Int in
                    stream.next_out = outBuffer.bindMemory(to: Bytef.self).baseAddress
                    stream.avail_out = uInt(outBuffer.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return outBuffer.count - Int(stream.avail_out)
                }
                guard status == Z_OK || status == Z_STREAM_END || (status == Z_BUF_ERROR && produced > 0) else {
                    let reason = stream.msg.map { String(cString: $0) } ?? (status == Z_BUF_ERROR ? "unexpected end of data" : "zlib error \(status)")
                    throw DataError("corrupt gzip data: \(reason)")
                }
                output.append(contentsOf: chunk[0..<produced])
                guard output.count <= limit else { throw DataError("gzip data inflates to more than \(limit) bytes") }
                if status != Z_STREAM_END && stream.avail_in == 0 && produced < chunk.count {
                    throw DataError("truncated gzip data: the stream ends before its trailer")
                }
            } while status != Z_STREAM_END
        }
        return output
    }
}
