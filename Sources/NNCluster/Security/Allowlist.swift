import Foundation
import NNCore

/// The worker keys a coordinator admits, and the federated clients bound to some of them.
public struct Allowlist: Sendable {
    /// Admitted keys; a key with a range hosts exactly those clients, and no other worker may host them.
    public private(set) var keys: [CurvePublicKey: Range<Int>?] = [:]

    public init(_ keys: [CurvePublicKey: Range<Int>?]) { self.keys = keys }

    /// A directory: every public certificate (`*.key`) in it. A file: one key a line, each optionally followed
    /// by the client ids it hosts (`KEY 0-49`); a word starting with `#` starts a comment. A czmq certificate
    /// file is one key.
    public static func load(_ path: String) throws -> Allowlist {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ClusterError("the allowlist \(path) does not exist")
        }
        var list = Allowlist([:])
        if isDirectory.boolValue {
            let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".key") }.sorted()
            for name in names { list.keys[try CertificateFile.publicKey("\(path)/\(name)")] = .some(nil) }
        } else if try CertificateFile.read(path)["public-key"] != nil {
            list.keys[try CertificateFile.publicKey(path)] = .some(nil)
        } else {
            let text = String(decoding: try AtomicFile.read(path, limit: 16 << 20), as: UTF8.self)
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                // Z85 has '#' among its characters: a comment is a line, or the end of a line after the key and
                // range, that starts with one.
                var words = line.split(whereSeparator: \.isWhitespace).map(String.init)
                if let comment = words.indices.first(where: { $0 > 0 && words[$0].hasPrefix("#") }) { words.removeSubrange(comment...) }
                guard let first = words.first, !(first.hasPrefix("#") && !CurveKeyPair.decodes(first)) else { continue }
                do {
                    guard words.count <= 2 else { throw ClusterError("expected KEY or KEY FIRST-LAST") }
                    let key = try CurvePublicKey(z85: words[0])
                    guard list.keys[key] == nil else { throw ClusterError("key listed twice") }
                    list.keys[key] = .some(try words.dropFirst().first.map(clientRange))
                } catch {
                    throw ClusterError("\(path):\(number + 1): \(error)")
                }
            }
        }
        guard !list.keys.isEmpty else { throw ClusterError("the allowlist \(path) holds no keys") }
        let ranges = list.keys.compactMap(\.value).sorted { $0.lowerBound < $1.lowerBound }
        for (a, b) in zip(ranges, ranges.dropFirst()) where a.overlaps(b) {
            throw ClusterError("\(path): client ranges \(a.lowerBound)-\(a.upperBound - 1) and \(b.lowerBound)-\(b.upperBound - 1) overlap")
        }
        return list
    }

    /// The clients bound to `key`, if any.
    public func clients(of key: CurvePublicKey) -> Range<Int>? { keys[key] ?? nil }

    /// Every bound range, which no unbound worker may take.
    public var boundRanges: [Range<Int>] { keys.values.compactMap { $0 } }

    /// `first-last` (client ids, as an allowlist line and `nn-worker --clients` give them) as a range.
    public static func clientRange(_ text: String) throws -> Range<Int> {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let first = parts[0], let last = parts[1], first >= 0, last >= first else {
            throw ClusterError("client ids are given as first-last, e.g. 0-49, not '\(text)'")
        }
        return first..<(last + 1)
    }
}
