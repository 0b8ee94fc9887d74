import CZmq
import Foundation
import Logging
import NNProtocol

/// A worker's links in a ring: a PULL socket its predecessor pushes chunks to, and a PUSH socket to its
/// successor. With `keys` (a run secured with CURVE) both are encrypted, the PULL socket admits only the
/// predecessor's key, and the PUSH socket checks the successor's. A chunk other than the one awaited is kept
/// when it may be wanted later (a peer is ahead, or in a newer generation) and dropped when it belongs to a
/// step already done; what cannot be decoded is dropped. Chunks between members on one host go through shared
/// memory (`SharedRingChannel`) instead, found from the successor's endpoint; the TCP link stays for members
/// elsewhere. The channel is a file only its user may open, so it is as private as the members' own memory, with
/// CURVE or without: CURVE guards what crosses a network, and a process of the same user could read a member's
/// keys anyway.
final class RingLink {
    private let inbound: ZmqSocket
    private var outbound: (socket: ZmqSocket, key: CurvePublicKey?, since: ContinuousClock.Instant)?
    /// Where members on this host write this member's chunks, and where it writes its successor's if that is here.
    private let sharedInbound: SharedRingChannel?
    private var sharedOutbound: SharedRingChannel?
    /// Successors whose channel failed: they get chunks over TCP for the rest of the run.
    private var brokenChannels: Set<String> = []
    /// Values in a chunk at most.
    private let capacity: Int
    private let keys: CurveKeyPair?
    /// With CURVE: the inbound socket's ZAP domain, monitor endpoint and admission rules.
    private let zap: (domain: String, monitor: String, gate: Gate)?
    /// Where peers push to.
    let endpoint: String
    private var early: [RingChunk] = []
    /// Messages on the ring port that were not ring chunks; logged at 1, 10, 100… so a stray sender cannot fill the log.
    private var dropped = 0
    private let logger: Logger
    /// Chunks kept ahead of need, and queued each way, at most. A member is rarely more than a chunk or two
    /// ahead of its successor; the bound keeps what a stray or hostile sender can make a worker hold to 2 × 64
    /// model-sized chunks.
    private static let keptChunks = 64

    /// How long a receive spins on the shared channel before it sleeps (zero: it does not).
    private let spin: Duration

    /// Binds on `host` (an address of this machine the other workers can reach) and `port` (0: one the system picks).
    init(host: String, port: Int, keys: CurveKeyPair?, maximumChunkBytes: Int64, spin: Duration = .zero, logger: Logger) throws {
        self.spin = spin
        let address = host.contains(":") ? "[\(host)]" : host
        inbound = try ZmqSocket(type: ZMQ_PULL, endpoint: "tcp://\(address):\(port == 0 ? "*" : String(port))")
        try inbound.set(ZMQ_MAXMSGSIZE, maximumChunkBytes)
        try inbound.set(ZMQ_RCVHWM, Int32(Self.keptChunks))
        try inbound.set(ZMQ_LINGER, Int32(0))
        if host.contains(":") { try inbound.set(ZMQ_IPV6, Int32(1)) }
        self.keys = keys
        if let keys {
            let gate = Gate(allowlist: Allowlist([:]), logger: logger)
            let (domain, monitor) = try ZapHandler.shared.register(gate)
            zap = (domain, monitor, gate)
            try inbound.set(ZMQ_CURVE_SERVER, Int32(1))
            try inbound.set(ZMQ_CURVE_SECRETKEY, bytes: Array(keys.secret.utf8))
            try inbound.set(ZMQ_ZAP_DOMAIN, bytes: Array(domain.utf8))
            try inbound.monitor(monitor, events: ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        } else {
            zap = nil
        }
        try inbound.bind()
        endpoint = inbound.lastEndpoint
        self.logger = logger
        capacity = Int(maximumChunkBytes / 4)
        do {
            sharedInbound = try SharedRingChannel(creatingFor: endpoint, capacity: capacity)
        } catch {
            logger.warning("ring chunks from members on this host go through TCP: \(error)")
            sharedInbound = nil
        }
    }

    /// Takes chunks from the predecessor and pushes to `successor` from now on, reconnecting if it
    /// changed (chunks still queued for an old successor are dropped). The keys are Z85, empty without CURVE.
    func join(successor: String, successorKey: String, predecessorKey: String) throws {
        guard (keys == nil) == successorKey.isEmpty, (keys == nil) == predecessorKey.isEmpty else {
            throw ClusterError(keys == nil ? "the ring is secured with CURVE, and this worker has no keys" : "this worker has CURVE keys, and the ring names none")
        }
        let successorPublic = successorKey.isEmpty ? nil : try CurvePublicKey(z85: successorKey)
        if let predecessor = predecessorKey.isEmpty ? nil : try CurvePublicKey(z85: predecessorKey) {
            zap?.gate.admit(Allowlist([predecessor: nil]))
        }
        if sharedOutbound.map({ $0.endpoint != successor || !$0.isCurrent }) ?? true {
            sharedOutbound = brokenChannels.contains(successor) ? nil : SharedRingChannel(writingTo: successor, capacity: capacity)
        }
        if let outbound, outbound.socket.endpoint == successor, outbound.key == successorPublic { return }
        try connect(to: successor, key: successorPublic)
    }

    private func connect(to successor: String, key successorPublic: CurvePublicKey?) throws {
        outbound?.socket.close()
        let socket = try ZmqSocket(type: ZMQ_PUSH, endpoint: successor)
        try socket.set(ZMQ_LINGER, Int32(0))
        try socket.set(ZMQ_SNDHWM, Int32(Self.keptChunks))
        // Chunks wait here until the connection is complete: a chunk queued to a connection whose handshake then
        // fails (the successor has not yet been told to admit this worker's key) would be lost with it.
        try socket.set(ZMQ_IMMEDIATE, Int32(1))
        try socket.set(ZMQ_SNDTIMEO, Int32(1_000))
        if successor.contains("[") { try socket.set(ZMQ_IPV6, Int32(1)) }
        if let keys, let successorPublic {
            try socket.set(ZMQ_CURVE_SERVERKEY, bytes: Array(successorPublic.z85.utf8))
            try socket.set(ZMQ_CURVE_PUBLICKEY, bytes: Array(keys.publicKey.z85.utf8))
            try socket.set(ZMQ_CURVE_SECRETKEY, bytes: Array(keys.secret.utf8))
        }
        try socket.connect()
        outbound = (socket, successorPublic, .now)
    }

    /// The successor runs on this host and takes this member's chunks through shared memory.
    var sharesMemoryWithSuccessor: Bool { sharedOutbound != nil }

    /// Sends `values` as the chunk of `phase` of `step` once the successor is connected and takes it (through shared
    /// memory if it is on this host: once a slot is free); false when that did not happen within `timeout`.
    /// A connection still incomplete after a quarter of a second is made again: libzmq does not retry one whose
    /// handshake was refused, which happens when this worker connects before its successor was told to admit it.
    func send(generation: UInt64, step: UInt64, phase: UInt32, values: ArraySlice<Float>, within timeout: Duration) throws -> Bool {
        guard let outbound else { throw ClusterError("the ring has no successor to send to") }
        if let shared = sharedOutbound {
            let deadline = ContinuousClock.now + timeout
            do {
                repeat {
                    if try shared.put(generation: generation, step: step, phase: phase, values: values) { return true }
                    usleep(50)
                } while ContinuousClock.now < deadline
                return false
            } catch {
                logger.warning("ring chunks to \(shared.endpoint) go through TCP from now on: \(error)")
                brokenChannels.insert(shared.endpoint)
                sharedOutbound = nil
            }
        }
        guard try outbound.socket.canSend(within: timeout) else {
            if ContinuousClock.now - outbound.since > .milliseconds(250) { try connect(to: outbound.socket.endpoint, key: outbound.key) }
            return false
        }
        try outbound.socket.send(WireCodec.encode(.ringChunk(RingChunk(generation: generation, step: step, phase: phase, values: Array(values)))))
        return true
    }

    /// The chunk of `phase` of `step` in `generation`, or nil when none came within `timeout`.
    func receive(generation: UInt64, step: UInt64, phase: UInt32, timeout: Duration) throws -> RingChunk? {
        func wanted(_ c: RingChunk) -> Bool { c.generation == generation && c.step == step && c.phase == phase }
        if let i = early.firstIndex(where: wanted) { return early.remove(at: i) }
        let deadline = ContinuousClock.now + timeout
        while true {
            while let chunk = sharedInbound?.take() {
                if let wanted = keep(chunk, wanted: wanted, generation: generation, step: step, phase: phase) { return wanted }
            }
            if spin > .zero, let shared = sharedInbound, shared.spin(for: spin) { continue }
            let left = max(ContinuousClock.now.duration(to: deadline), .zero)
            if let shared = sharedInbound, try !inbound.waitReadable(orReadable: shared.doorbell, timeout: left) { return nil }
            guard let frames = try inbound.receive(timeout: sharedInbound == nil ? left : .zero) else {
                if sharedInbound == nil { return nil }
                continue
            }
            guard case .ringChunk(let chunk)? = try? WireCodec.decode(frames) else {
                dropped += 1
                if String(dropped).dropFirst().allSatisfy({ $0 == "0" }) {
                    logger.warning("dropped \(dropped) message\(dropped == 1 ? "" : "s") on the ring port that \(dropped == 1 ? "was not a ring chunk" : "were not ring chunks") so far")
                }
                continue
            }
            if let wanted = keep(chunk, wanted: wanted, generation: generation, step: step, phase: phase) { return wanted }
        }
    }

    /// `chunk` if it is the one awaited; else nil, and it is kept if it may be wanted later.
    private func keep(_ chunk: RingChunk, wanted: (RingChunk) -> Bool, generation: UInt64, step: UInt64, phase: UInt32) -> RingChunk? {
        if wanted(chunk) { return chunk }
        let behind = chunk.generation == generation && (chunk.step < step || (chunk.step == step && chunk.phase < phase))
        if !behind {
            if early.count == Self.keptChunks { early.removeFirst() }
            early.append(chunk)
        }
        return nil
    }

    /// Drops kept chunks of other generations than `generation` (a worker starting a new one).
    func forget(except generation: UInt64) { early.removeAll { $0.generation != generation } }

    deinit {
        if let zap {
            _ = try? inbound.monitor(nil, events: 0)
            ZapHandler.shared.unregister(domain: zap.domain, monitor: zap.monitor)
        }
    }
}
