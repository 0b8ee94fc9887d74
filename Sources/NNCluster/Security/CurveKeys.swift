import CZmq
import Foundation
import NNCore

/// A CurveZMQ public key: 32 bytes, written as 40 characters of Z85.
public struct CurvePublicKey: Hashable, Sendable, CustomStringConvertible {
    /// The Z85 text, as libzmq's socket options and ZAP's User-Id take it.
    public let z85: String

    /// Checks that `text` is 40 characters of Z85 that decode to 32 bytes.
    public init(z85 text: String) throws {
        guard text.utf8.count == 40, CurveKeyPair.decodes(text) else {
            throw ClusterError("'\(text.prefix(60))' is not a CURVE key (40 characters of Z85)")
        }
        z85 = text
    }

    /// A key from its 32 bytes (as ZAP's credentials frame carries it).
    init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        var text = [CChar](repeating: 0, count: 41)
        guard zmq_z85_encode(&text, bytes, 32) != nil else { return nil }
        z85 = text.text
    }

    public var description: String { z85 }
}

/// A CurveZMQ key pair, made by libzmq (from libsodium), kept in the certificate files czmq and pyzmq use:
/// `NAME.key` (the public key, to hand out) and `NAME.key_secret` (both keys, mode 0600).
public struct CurveKeyPair: Sendable {
    public let publicKey: CurvePublicKey
    /// The secret key's Z85 text.
    let secret: String

    /// A new random key pair.
    public static func generate() throws -> CurveKeyPair {
        var publicText = [CChar](repeating: 0, count: 41), secretText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicText, &secretText) == 0 else {
            throw ClusterError("cannot make a CURVE key pair: this libzmq has no CURVE support")
        }
        return CurveKeyPair(publicKey: try CurvePublicKey(z85: publicText.text), secret: secretText.text)
    }

    /// The key pair in a secret certificate. Refuses a missing or malformed file, a public certificate, and a
    /// file that others than its owner may read.
    public static func load(secret path: String) throws -> CurveKeyPair {
        let fields = try CertificateFile.read(path)
        guard let secret = fields["secret-key"] else {
            if fields["public-key"] != nil {
                throw ClusterError("\(path) is a public key; give the secret one (\(path)_secret, made by `nn keygen`)")
            }
            throw ClusterError("\(path) holds no secret-key line: not a key file made by `nn keygen`")
        }
        var info = stat()
        guard stat(path, &info) == 0 else { throw ClusterError("cannot read \(path)") }
        guard info.st_mode & 0o077 == 0 else {
            throw ClusterError("\(path) is a secret key that others may read (mode \(String(info.st_mode & 0o777, radix: 8))); run `chmod 600 \(path)`")
        }
        guard secret.utf8.count == 40, decodes(secret) else { throw ClusterError("\(path): the secret key is not 40 characters of Z85") }
        var derived = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&derived, secret) == 0 else { throw ClusterError("\(path): cannot derive the public key: no CURVE support") }
        let publicKey = try CurvePublicKey(z85: derived.text)
        if let stated = fields["public-key"], stated != publicKey.z85 {
            throw ClusterError("\(path): its public-key line does not belong to its secret key")
        }
        return CurveKeyPair(publicKey: publicKey, secret: secret)
    }

    /// Writes `DIRECTORY/NAME.key` and `DIRECTORY/NAME.key_secret` (mode 0600), each atomically; refuses to
    /// overwrite an existing key. Returns the two paths.
    @discardableResult
    public func write(to directory: String, name: String) throws -> (publicPath: String, secretPath: String) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let publicPath = "\(directory)/\(name).key", secretPath = "\(directory)/\(name).key_secret"
        for path in [publicPath, secretPath] where FileManager.default.fileExists(atPath: path) {
            throw ClusterError("\(path) exists already; remove it or choose another --name")
        }
        let stamp = ISO8601DateFormatter().string(from: Date())
        try AtomicFile.write("""
            #   ****  Generated on \(stamp) by nn keygen  ****
            #   ZeroMQ CURVE **Secret** Certificate
            #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

            metadata
            curve
                public-key = "\(publicKey.z85)"
                secret-key = "\(secret)"

            """, to: secretPath, mode: 0o600)
        try AtomicFile.write("""
            #   ****  Generated on \(stamp) by nn keygen  ****
            #   ZeroMQ CURVE Public Certificate
            #   Hand this file to the other side of a run: a coordinator's to its workers, a worker's to the
            #   coordinator's allowlist.

            metadata
            curve
                public-key = "\(publicKey.z85)"

            """, to: publicPath)
        return (publicPath, secretPath)
    }

    static func decodes(_ text: String) -> Bool {
        var bytes = [UInt8](repeating: 0, count: 32)
        return text.utf8.count == 40 && zmq_z85_decode(&bytes, text) != nil
    }
}

/// Reads the `name = "value"` lines of a czmq certificate (comments and section names are skipped).
enum CertificateFile {
    static func read(_ path: String) throws -> [String: String] {
        let bytes: [UInt8]
        do { bytes = try AtomicFile.read(path, limit: 64 << 10) } catch { throw ClusterError("cannot read key file: \(error)") }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw ClusterError("\(path) is not a text file") }
        var fields: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.hasPrefix("#"), let equals = trimmed.firstIndex(of: "=") else { continue }
            let name = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: CharacterSet(charactersIn: " \t\"'"))
            fields[name] = value
        }
        return fields
    }

    /// The public key of a certificate (public or secret), or of a file that holds only the key.
    static func publicKey(_ path: String) throws -> CurvePublicKey {
        let fields = try read(path)
        if let key = fields["public-key"] { return try CurvePublicKey(z85: key) }
        let bytes = try AtomicFile.read(path, limit: 64 << 10)
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        do { return try CurvePublicKey(z85: text) } catch { throw ClusterError("\(path) holds no public key: \(error)") }
    }
}

extension [CChar] {
    /// The C string in this buffer (up to its terminating zero).
    var text: String { String(decoding: prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
}

extension CurvePublicKey {
    /// The public key in a certificate file (public or secret) or in a file that holds only the key.
    public static func load(_ path: String) throws -> CurvePublicKey { try CertificateFile.publicKey(path) }
}
