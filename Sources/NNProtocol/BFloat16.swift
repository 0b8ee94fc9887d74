/// bfloat16, the upper half of a float32: the compact wire format of parameters and gradients
/// (`docs/protocol.md`, "Compact vectors"). Same range as float32, 8 significant bits.
public enum BFloat16 {
    /// Each value rounded to the nearest bfloat16 (ties to even), little-endian: 2 bytes a value. NaN stays NaN.
    public static func encode(_ values: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * 2)
        out.withUnsafeMutableBytes { raw in
            let halves = raw.bindMemory(to: UInt16.self)
            for (i, v) in values.enumerated() { halves[i] = (round(v)).littleEndian }
        }
        return out
    }

    /// The float32 values of little-endian bfloat16 bytes (an even count).
    public static func decode(_ raw: UnsafeRawBufferPointer) -> [Float] {
        precondition(raw.count % 2 == 0)
        return [Float](unsafeUninitializedCapacity: raw.count / 2) { out, count in
            for i in 0..<(raw.count / 2) {
                out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
            count = raw.count / 2
        }
    }

    /// The bfloat16 bits nearest to `v`.
    static func round(_ v: Float) -> UInt16 {
        let bits = v.bitPattern
        if v.isNaN { return UInt16(bits >> 16) | 0x0040 }
        return UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }

    /// `values` as they arrive after a trip in bfloat16.
    public static func rounded(_ values: [Float]) -> [Float] { values.map { Float(bitPattern: UInt32(round($0)) << 16) } }
}
