import Foundation

#if _endian(big)
#error("safetensors stores little-endian floats; this code writes memory as it is")
#endif

public struct SafeTensorsError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping each tensor name to
/// dtype, shape and byte offsets (plus string metadata under `__metadata__`), then the raw data.
/// Only float32 tensors are written and read.
public struct SafeTensors {
    public struct Tensor: Equatable {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
        public init(name: String, shape: [Int], values: [Float]) { self.name = name; self.shape = shape; self.values = values }
    }

    public var tensors: [Tensor]
    public var metadata: [String: String]

    public init(tensors: [Tensor], metadata: [String: String]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    public subscript(name: String) -> Tensor? { tensors.first { $0.name == name } }

    /// Header limit when reading: far above any MLP's, far below what could exhaust memory.
    static let maximumHeaderBytes = 16 << 20

    /// The file's bytes; tensors are laid out in order, so the data section follows the given order.
    public func encoded() throws -> [UInt8] {
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        for t in tensors {
            guard t.shape.reduce(1, *) == t.values.count else {
                throw SafeTensorsError("tensor \(t.name) has shape \(t.shape) but \(t.values.count) values")
            }
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.values.count]] as [String: Any]
            offset += 4 * t.values.count
        }
        var json = Array(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        // Pad with spaces so the data starts 8-byte aligned, as the reference implementation does.
        while json.count % 8 != 0 { json.append(0x20) }
        var bytes = [UInt8]()
        bytes.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: json)
        for t in tensors { t.values.withUnsafeBytes { bytes.append(contentsOf: $0) } }
        return bytes
    }

    /// Parses and validates a whole file: header bounds, JSON, dtypes, shapes and that the tensors tile the
    /// data section exactly.
    public init(decoding bytes: [UInt8]) throws {
        guard bytes.count >= 8 else { throw SafeTensorsError("file is \(bytes.count) bytes, too short for a safetensors header") }
        let headerLength = bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(min(Self.maximumHeaderBytes, bytes.count - 8)) else {
            throw SafeTensorsError("header length \(headerLength) does not fit the file (\(bytes.count) bytes); not a safetensors file, or truncated")
        }
        let dataStart = 8 + Int(headerLength)
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart]))
        } catch {
            throw SafeTensorsError("header is not valid JSON; not a safetensors file")
        }
        guard let header = object as? [String: Any] else { throw SafeTensorsError("header is not a JSON object") }
        var metadata: [String: String] = [:]
        if let m = header["__metadata__"] {
            guard let m = m as? [String: String] else { throw SafeTensorsError("__metadata__ must map strings to strings") }
            metadata = m
        }
        let dataLength = bytes.count - dataStart
        var entries: [(name: String, shape: [Int], begin: Int, end: Int)] = []
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw SafeTensorsError("tensor \(name): malformed header entry") }
            guard dtype == "F32" else { throw SafeTensorsError("tensor \(name): dtype \(dtype) is not supported (only F32)") }
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataLength else {
                throw SafeTensorsError("tensor \(name): offsets \(offsets) fall outside the \(dataLength)-byte data section")
            }
            // The product of the dimensions, stopping at overflow: a shape is checked against the bytes it claims
            // before anything is allocated for it.
            let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
            let bytes = offsets[1] - offsets[0]
            guard count != Int.max, bytes % 4 == 0, count == bytes / 4 else {
                throw SafeTensorsError("tensor \(name): shape \(shape) does not match its \(offsets[1] - offsets[0]) bytes")
            }
            entries.append((name, shape, offsets[0], offsets[1]))
        }
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var expected = 0
        for e in entries {
            guard e.begin == expected else { throw SafeTensorsError("tensor \(e.name): data overlaps another tensor or leaves a gap") }
            expected = e.end
        }
        guard expected == dataLength else { throw SafeTensorsError("data section has \(dataLength - expected) bytes no tensor describes") }
        tensors = bytes.withUnsafeBytes { raw in
            entries.map { e in
                var values = [Float](repeating: 0, count: (e.end - e.begin) / 4)
                values.withUnsafeMutableBytes {
                    $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[(dataStart + e.begin)..<(dataStart + e.end)]))
                }
                return Tensor(name: e.name, shape: e.shape, values: values)
            }
        }
        self.metadata = metadata
    }
}
