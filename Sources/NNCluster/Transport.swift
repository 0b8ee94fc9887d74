import NNProtocol

/// Names a worker connection on the coordinator's side (a ZeroMQ routing id, or an in-process handle).
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var description: String {
        if let text = String(validating: bytes, as: UTF8.self), !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:#".contains($0)) }) {
            return text
        }
        return "0x" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// The coordinator's end: messages from and to many peers. Implementations: in-process and ZeroMQ ROUTER.
public protocol ServerTransport: AnyObject {
    func send(_ frames: [Frame], to peer: PeerID) throws
    /// The next message from any peer, or nil once `timeout` has passed without one.
    func receive(timeout: Duration) throws -> (peer: PeerID, frames: [Frame])?
}

/// A worker's end: messages from and to the coordinator. Implementations: in-process and ZeroMQ DEALER.
public protocol ClientTransport: AnyObject {
    func send(_ frames: [Frame]) throws
    func receive(timeout: Duration) throws -> [Frame]?
}

/// A failure of the cluster layer: a transport, the coordinator's run, a worker's session, a rejected result.
public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
