import NNCore

/// Names a worker connection on the coordinator's side (a ZeroMQ routing id, or an in-process handle).
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var description: String {
        if let text = String(validating: bytes, as: UTF8.self), !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:#".contains($0)) }) {
            return text
        }
        return "0x" + bytes.hexString
    }
}
