import CSodium
import NNCore

/// SHA-256 from libsodium (`crypto_hash_sha256`), for verifying downloads and fingerprinting data.
public enum SHA256 {
    public static func digest(_ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = message.withUnsafeBufferPointer { crypto_hash_sha256(&out, $0.baseAddress, UInt64($0.count)) }
        return out
    }

    public static func hex(_ message: [UInt8]) -> String { digest(message).hexString }
}
