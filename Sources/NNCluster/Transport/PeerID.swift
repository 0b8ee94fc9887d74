import NNCore

/// Names a worker connection on the coordinator's side (a ZeroMQ routing id, or an in-process handle), and
/// the CURVE key its connection was admitted with, if any.
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public let key: CurvePublicKey?
    public init(_ bytes: [UInt8], key: CurvePublicKey? = nil) { self.bytes = bytes; self.key = key }
    public var description: String {
        if let text = String(validating: bytes, as: UTF8.self), !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:#".contains($0)) }) {
            return text
        }
        return "0x" + bytes.hexString
    }
}
