import NNProtocol

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
    /// Why the coordinator's end refused the connection (an unknown key, a wrong server key), once it has.
    func refusal() -> String?
    /// The CURVE key pair this end authenticates with, if any; a ring worker secures its ring links with it.
    var keys: CurveKeyPair? { get }
}

extension ClientTransport {
    public func refusal() -> String? { nil }
    public var keys: CurveKeyPair? { nil }
}
