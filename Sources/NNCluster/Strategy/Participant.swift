/// A registered worker as a strategy sees it: where to send work, and which federated clients it hosts.
public struct Participant: Sendable {
    public var peer: PeerID
    public var clients: Range<Int>
    /// In a ring run: where the worker takes chunks from its predecessor.
    public var ringEndpoint: String?
    public init(peer: PeerID, clients: Range<Int> = 0..<0, ringEndpoint: String? = nil) {
        self.peer = peer; self.clients = clients; self.ringEndpoint = ringEndpoint
    }

    /// The clients a worker hosts when it asks for none: ⌈clients ÷ workers⌉, taken in blocks from client 0.
    public static func evenShare(clients: Int, workers: Int) -> Int { (clients + workers - 1) / workers }

    /// The blocks of `evenShare` that `workers` workers host.
    public static func evenBlocks(clients: Int, workers: Int) -> [Range<Int>] {
        let share = evenShare(clients: clients, workers: workers)
        return stride(from: 0, to: clients, by: share).map { $0..<min($0 + share, clients) }
    }
}

/// A piece of a round's work for one worker, and the keys of the results it yields (a slice's start, or the
/// ids of the clients it trains); keys tell results apart within a round.
public struct Assignment<Work: Instruction>: Sendable {
    public var worker: PeerID
    public var keys: [Int]
    public var work: Work
}
