import CZmq
import Foundation
import Logging
import NNProtocol

/// A worker's links in a ring: a PULL socket the members that send to it push chunks to, and a PUSH socket to
/// each member it sends to (the successor in a ring; the partners in halving-doubling). With `keys` (a run
/// secured with CURVE) all are encrypted, the PULL socket admits only the senders' keys, and each PUSH socket
/// checks its target's. A chunk other than the one awaited is kept when it may be wanted later (a peer is ahead,
/// or in a newer generation) and dropped when it belongs to a step already done; what cannot be decoded is
/// dropped. Chunks between members on one host go through shared memory (`SharedRingChannel`) instead, found
/// from the target's endpoint; the TCP link stays for members elsewhere. The channel is a file only its user may
/// open, so it is as private as the members' own memory, with CURVE or without: CURVE guards what crosses a
/// network, and a process of the same user could read a member's keys anyway.
final class RingLink {
    private let inbound: ZmqSocket
    /// A member this one sends to: its PUSH socket, and its channel if it runs on this host.
    private struct Outbound {
        var socket: ZmqSocket
        var key: CurvePublicKey?
        var since: ContinuousClock.Instant
        var shared: SharedRingChannel?
    }
    /// By the target's endpoint.
    private var outbound: [String: Outbound] = [:]
    /// Where members on this host write this member's chunks.
    private let sharedInbound: SharedRingChannel?
    /// Targets whose channel failed: they get chunks over TCP for the rest of the run.
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

    /// Pushes to `targets` and admits chunks from `senders` from now on, reconnecting to a target whose key changed
    /// and closing the sockets of members no longer sent to (with chunks still queued for them). The keys are Z85,
    /// empty without CURVE.
    func join(sendingTo targets: [RingPeer], receivingFrom senders: [RingPeer]) throws {
        guard (targets + senders).allSatisfy({ (keys == nil) == $0.key.isEmpty }) else {
            throw ClusterError(keys == nil ? "the ring is secured with CURVE, and this worker has no keys" : "this worker has CURVE keys, and the ring names none")
        }
        if keys != nil {
            var admitted: [CurvePublicKey: Range<Int>?] = [:]
            for sender in senders { admitted[try CurvePublicKey(z85: sender.key)] = .some(nil) }
            zap?.gate.admit(Allowlist(admitted))
        }
        for gone in Set(outbound.keys).subtracting(targets.map(\.endpoint)) { outbound.removeValue(forKey: gone)?.socket.close() }
        for target in targets {
            let key = target.key.isEmpty ? nil : try CurvePublicKey(z85: target.key)
            if var current = outbound[target.endpoint], current.key == key {
                if current.shared.map({ !$0.isCurrent }) ?? true {
                    current.shared = channel(to: target.endpoint)
                    outbound[target.endpoint] = current
                }
                continue
            }
            outbound.removeValue(forKey: target.endpoint)?.socket.close()
            outbound[target.endpoint] = Outbound(socket: try connect(to: target.endpoint, key: key), key: key, since: .now, shared: channel(to: target.endpoint))
        }
    }

    /// The channel of the member at `endpoint` if it runs on this host and its channel has not failed.
    private func channel(to endpoint: String) -> SharedRingChannel? {
        brokenChannels.contains(endpoint) ? nil : SharedRingChannel(writingTo: endpoint, capacity: capacity)
    }

    private func connect(to endpoint: String, key: CurvePublicKey?) throws -> ZmqSocket {
        let socket = try ZmqSocket(type: ZMQ_PUSH, endpoint: endpoint)
        try socket.set(ZMQ_LINGER, Int32(0))
        try socket.set(ZMQ_SNDHWM, Int32(Self.keptChunks))
        // Chunks wait here until the connection is complete: a chunk queued to a connection whose handshake then
        // fails (the target has not yet been told to admit this worker's key) would be lost with it.
        try socket.set(ZMQ_IMMEDIATE, Int32(1))
        try socket.set(ZMQ_SNDTIMEO, Int32(1_000))
        if endpoint.contains("[") { try socket.set(ZMQ_IPV6, Int32(1)) }
        if let keys, let key {
            try socket.set(ZMQ_CURVE_SERVERKEY, bytes: Array(key.z85.utf8))
            try socket.set(ZMQ_CURVE_PUBLICKEY, bytes: Array(keys.publicKey.z85.utf8))
            try socket.set(ZMQ_CURVE_SECRETKEY, bytes: Array(keys.secret.utf8))
        }
        try socket.connect()
        return socket
    }

    /// The member at `endpoint` runs on this host and takes this member's chunks through shared memory.
    func sharesMemory(with endpoint: String) -> Bool { outbound[endpoint]?.shared != nil }

    /// Sends `values` to the member at `endpoint` as the chunk of `phase` of `step` once it is connected and takes
    /// it (through shared memory if it is on this host: once a slot is free); false when that did not happen within
    /// `timeout`. A connection still incomplete after a quarter of a second is made again: libzmq does not retry one
    /// whose handshake was refused, which happens when this worker connects before its target was told to admit it.
    func send(to endpoint: String, generation: UInt64, step: UInt64, phase: UInt32, values: ArraySlice<Float>, within timeout: Duration) throws -> Bool {
        guard let target = outbound[endpoint] else { throw ClusterError("the ring has no member at \(endpoint) to send to") }
        if let shared = target.shared {
            let deadline = ContinuousClock.now + timeout
            do {
                repeat {
                    if try shared.put(generation: generation, step: step, phase: phase, values: values) { return true }
                    usleep(50)
                } while ContinuousClock.now < deadline
                return false
            } catch {
                logger.warning("ring chunks to \(endpoint) go through TCP from now on: \(error)")
                brokenChannels.insert(endpoint)
                outbound[endpoint]?.shared = nil
            }
        }
        guard try target.socket.canSend(within: timeout) else {
            if ContinuousClock.now - target.since > .milliseconds(250) {
                target.socket.close()
                outbound[endpoint]?.socket = try connect(to: endpoint, key: target.key)
                outbound[endpoint]?.since = .now
            }
            return false
        }
        try target.socket.send(WireCodec.encode(.ringChunk(RingChunk(generation: generation, step: step, phase: phase, values: Array(values)))))
        return true
    }

    /// Hands the values of the chunk of `phase` of `step` in `generation` to `body` (where they lie, when they
    /// came through shared memory) and returns what it returns; nil when none came within `timeout`.
    func receive<T>(generation: UInt64, step: UInt64, phase: UInt32, timeout: Duration,
                    _ body: (UnsafeBufferPointer<Float>) throws -> T) throws -> T? {
        func wanted(_ c: RingChunk) -> Bool { c.generation == generation && c.step == step && c.phase == phase }
        if let i = early.firstIndex(where: wanted) { return try early.remove(at: i).values.withUnsafeBufferPointer(body) }
        let deadline = ContinuousClock.now + timeout
        while true {
            while let shared = sharedInbound, let head = shared.peek() {
                if head == (generation, step, phase), let value = try shared.consume(body) { return value }
                if let chunk = shared.take() { _ = keep(chunk, wanted: wanted, generation: generation, step: step, phase: phase) }
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
            if let wanted = keep(chunk, wanted: wanted, generation: generation, step: step, phase: phase) {
                return try wanted.values.withUnsafeBufferPointer(body)
            }
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
