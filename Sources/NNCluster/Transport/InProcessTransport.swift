import Foundation
import NNProtocol

/// A blocking queue with a timed take.
final class Mailbox<T>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [T] = []
    private var head = 0

    func put(_ item: T) {
        condition.lock()
        items.append(item)
        condition.signal()
        condition.unlock()
    }

    func take(timeout: Duration) -> T? {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) * 1e-18)
        condition.lock()
        defer { condition.unlock() }
        while head == items.count {
            if !condition.wait(until: deadline) && head == items.count { return nil }
        }
        let item = items[head]
        head += 1
        if head > 1024 && head * 2 > items.count { items.removeFirst(head); head = 0 }
        return item
    }
}

/// Coordinator and workers in one process, passing frames through queues: the same codec and logic as over
/// ZeroMQ, deterministic and without ports.
public final class InProcessNetwork: @unchecked Sendable {
    private let lock = NSLock()
    fileprivate let serverInbox = Mailbox<(PeerID, [Frame])>()
    private var clients: [PeerID: Mailbox<[Frame]>] = [:]
    private var nextID = 0

    public init() {}

    public func server() -> ServerTransport { InProcessServer(network: self) }

    public func connect() -> InProcessClient {
        lock.lock(); defer { lock.unlock() }
        nextID += 1
        let id = PeerID(Array("client-\(nextID)".utf8))
        let box = Mailbox<[Frame]>()
        clients[id] = box
        return InProcessClient(network: self, id: id, inbox: box)
    }

    fileprivate func deliver(_ frames: [Frame], to peer: PeerID) {
        lock.lock()
        let box = clients[peer]
        lock.unlock()
        box?.put(frames)  // like a ROUTER, drop what has no live recipient
    }
}

final class InProcessServer: ServerTransport {
    let network: InProcessNetwork
    init(network: InProcessNetwork) { self.network = network }

    func send(_ frames: [Frame], to peer: PeerID) throws { network.deliver(frames, to: peer) }

    func receive(timeout: Duration) throws -> (peer: PeerID, frames: [Frame])? {
        network.serverInbox.take(timeout: timeout).map { (peer: $0.0, frames: $0.1) }
    }
}

public final class InProcessClient: ClientTransport, @unchecked Sendable {
    let network: InProcessNetwork
    public let id: PeerID
    private let inbox: Mailbox<[Frame]>

    init(network: InProcessNetwork, id: PeerID, inbox: Mailbox<[Frame]>) {
        self.network = network; self.id = id; self.inbox = inbox
    }

    public func send(_ frames: [Frame]) throws { network.serverInbox.put((id, frames)) }

    public func receive(timeout: Duration) throws -> [Frame]? { inbox.take(timeout: timeout) }
}
