extension Sequence where Element == UInt8 {
    /// Lower-case hexadecimal, two digits a byte: digests, fingerprints, binary peer ids.
    public var hexString: String { map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
}
