import CZmq
import Foundation
import Logging
import NNCore
import NNProtocol

/// A libzmq socket: options, multipart send (float frames without copying) and timed multipart receive.
/// Not thread-safe, as libzmq sockets are not: one owner thread at a time.
final class ZmqSocket {
    /// One context per process; its I/O thread serves every socket (a second one did not measurably help
    /// on two cores).
    nonisolated(unsafe) static let context: UnsafeMutableRawPointer = zmq_ctx_new()!

    private var handle: UnsafeMutableRawPointer?
    let endpoint: String
    /// Index of the first frame that may be a float frame: 1 after a DEALER's header, 2 after a ROUTER's
    /// routing id and header.
    private let floatFramesFrom: Int

    init(type: Int32, endpoint: String) throws {
        floatFramesFrom = type == ZMQ_ROUTER ? 2 : 1
        guard let socket = zmq_socket(ZmqSocket.context, type) else { throw ZmqSocket.error("create a socket for \(endpoint)") }
        handle = socket
        self.endpoint = endpoint
    }

    deinit { close() }

    func close() {
        if let handle { zmq_close(handle) }
        handle = nil
    }

    static func error(_ action: String) -> ClusterError {
        ClusterError("cannot \(action): \(String(cString: zmq_strerror(zmq_errno())))")
    }

    func set(_ option: Int32, _ value: Int32) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) == 0 else { throw ZmqSocket.error("set option \(option)") }
    }

    func set(_ option: Int32, _ value: Int64) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) == 0 else { throw ZmqSocket.error("set option \(option)") }
    }

    func set(_ option: Int32, bytes: [UInt8]) throws {
        guard bytes.withUnsafeBytes({ zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }) == 0 else {
            throw ZmqSocket.error("set option \(option)")
        }
    }

    /// Publishes this socket's `events` on a PAIR endpoint (nil stops it).
    @discardableResult
    func monitor(_ endpoint: String?, events: Int32) throws -> Bool {
        guard zmq_socket_monitor(handle, endpoint, events) == 0 else {
            if endpoint == nil { return false }
            throw ZmqSocket.error("monitor \(self.endpoint)")
        }
        return true
    }

    func bind() throws {
        guard zmq_bind(handle, endpoint) == 0 else { throw ZmqSocket.error("bind \(endpoint)") }
    }

    func connect() throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZmqSocket.error("connect to \(endpoint)") }
    }

    /// The endpoint actually bound (with the port the system chose for "tcp://127.0.0.1:*").
    var lastEndpoint: String {
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size)
        return buffer.text
    }

    /// True once `events` (ZMQ_POLLIN, ZMQ_POLLOUT) are ready, or `descriptor` (if given) is readable; false
    /// after `timeout` or an interrupt.
    private func poll(_ events: Int32, timeout: Duration, descriptor: Int32? = nil) throws -> Bool {
        var items = [zmq_pollitem_t(socket: handle, fd: 0, events: Int16(events), revents: 0)]
        if let descriptor { items.append(zmq_pollitem_t(socket: nil, fd: descriptor, events: Int16(ZMQ_POLLIN), revents: 0)) }
        // Never negative: zmq_poll would wait for ever.
        let milliseconds = max(Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000), 0)
        let ready = zmq_poll(&items, Int32(items.count), milliseconds)
        if ready < 0 {
            if zmq_errno() == EINTR { return false }
            throw ZmqSocket.error("poll \(endpoint)")
        }
        return ready > 0
    }

    /// True once a message can be received or `descriptor` is readable, false after `timeout`.
    func waitReadable(orReadable descriptor: Int32, timeout: Duration) throws -> Bool { try poll(ZMQ_POLLIN, timeout: timeout, descriptor: descriptor) }

    /// True once a message can be sent without blocking, false after `timeout`.
    func canSend(within timeout: Duration) throws -> Bool { try poll(ZMQ_POLLOUT, timeout: timeout) }

    /// Sends `frames` as one multipart message. Float frames go out without a copy: libzmq holds a retain on
    /// the array until its I/O thread is done with it, and releases it through the free function.
    func send(_ frames: [Frame], prefix: [UInt8]? = nil) throws {
        var parts: [Frame] = []
        if let prefix { parts.append(.bytes(prefix)) }
        parts += frames
        for (i, frame) in parts.enumerated() {
            var message = zmq_msg_t()
            switch frame {
            case .bytes(let bytes):
                guard zmq_msg_init_size(&message, bytes.count) == 0 else { throw ZmqSocket.error("allocate a message") }
                if !bytes.isEmpty { bytes.withUnsafeBytes { _ = memcpy(zmq_msg_data(&message), $0.baseAddress!, $0.count) } }
            case .floats(let floats) where floats.isEmpty:
                zmq_msg_init(&message)
            case .floats(let floats):
                let box = Unmanaged.passRetained(FloatsBox(floats))
                let base = box.takeUnretainedValue().base
                guard zmq_msg_init_data(&message, base, floats.count * 4, { _, hint in
                    Unmanaged<FloatsBox>.fromOpaque(hint!).release()
                }, box.toOpaque()) == 0 else {
                    box.release()
                    throw ZmqSocket.error("wrap a message")
                }
            }
            let flags: Int32 = i < parts.count - 1 ? ZMQ_SNDMORE : 0
            while zmq_msg_send(&message, handle, flags) < 0 {
                if zmq_errno() == EINTR { continue }
                let error = ZmqSocket.error("send to \(endpoint)")
                zmq_msg_close(&message)
                throw error
            }
        }
    }

    /// The next multipart message, or nil after `timeout`. Frames after the first whose length is a multiple of
    /// four are copied straight into float arrays: they are the protocol's float frames, and this saves a second
    /// copy of every parameter and gradient vector (the codec takes either form).
    func receive(timeout: Duration) throws -> [Frame]? {
        var userID: String?
        return try receive(timeout: timeout, userID: &userID)
    }

    /// As `receive(timeout:)`; `userID` gets the User-Id the ZAP handler gave the sender's connection (its key).
    func receive(timeout: Duration, userID: inout String?) throws -> [Frame]? {
        guard try poll(ZMQ_POLLIN, timeout: timeout) else { return nil }
        var parts: [Frame] = []
        var more: Int32 = 1
        while more != 0 {
            var message = zmq_msg_t()
            zmq_msg_init(&message)
            defer { zmq_msg_close(&message) }
            while zmq_msg_recv(&message, handle, 0) < 0 {
                if zmq_errno() == EINTR { continue }
                throw ZmqSocket.error("receive from \(endpoint)")
            }
            // The ROUTER's routing-id frame carries no metadata; the peer's own frames do.
            if userID == nil, let value = zmq_msg_gets(&message, "User-Id") { userID = String(cString: value) }
            let size = zmq_msg_size(&message)
            let bytes = UnsafeRawBufferPointer(start: zmq_msg_data(&message), count: size)
            if parts.count >= floatFramesFrom && size % 4 == 0 {
                parts.append(.floats(size == 0 ? [] : [Float](unsafeUninitializedCapacity: size / 4) { buffer, count in
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes)
                    count = size / 4
                }))
            } else {
                parts.append(.bytes(size == 0 ? [] : Array(bytes)))
            }
            more = zmq_msg_more(&message)
        }
        return parts
    }
}

/// Keeps a float array, and so its storage, alive while libzmq sends it.
final class FloatsBox {
    let values: [Float]
    let base: UnsafeMutableRawPointer
    init(_ values: [Float]) {
        self.values = values
        // The array is never mutated while boxed, so its storage stays put for the box's lifetime.
        base = values.withUnsafeBufferPointer { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
    }
}

/// The end of this process's ZeroMQ. Closing a socket leaves its queued messages (a coordinator's last shutdown
/// notices) to the I/O thread, for as long as the socket's linger; a process that then just exits drops them.
/// Terminating the context waits until they are delivered or their linger is over.
public enum ZmqContext {
    /// Call with every socket closed, as a command's last act: no socket can be made after it. False when the
    /// context did not end within `timeout` (a socket left open), and the process goes on to exit regardless.
    @discardableResult
    public static func terminate(within timeout: Duration) -> Bool {
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            while zmq_ctx_term(ZmqSocket.context) != 0 && zmq_errno() == EINTR {}
            done.signal()
        }
        thread.name = "nn-zmq-term"
        thread.start()
        return done.wait(timeout: .now() + timeout.seconds) == .success
    }
}

/// Socket settings chosen for a training cluster.
public struct ZmqSettings: Sendable {
    /// Largest message a peer may send; bigger ones make libzmq drop the connection. Set from the model size.
    public var maximumMessageBytes: Int64
    /// How long queued messages (the shutdown notices) may still be delivered after their socket is closed, before
    /// `ZmqContext.terminate` gives them up. With several processes a core, a slow worker's queue (the last
    /// step's model, then the shutdown) can take over a second to drain; a worker that misses the shutdown
    /// waits out its reconnect timeout and fails, so up to 5 s are given.
    public var lingerMilliseconds: Int32 = 5000
    /// First and longest wait between reconnection attempts.
    public var reconnectMilliseconds: Int32 = 100
    public var reconnectMaximumMilliseconds: Int32 = 2000
    /// A worker's blocked send gives up after this long instead of hanging. The coordinator never blocks:
    /// a peer whose queue is full (1000 messages unread) is unreachable, and the coordinator goes on.
    public var sendTimeoutMilliseconds: Int32 = 10_000

    public init(maximumMessageBytes: Int64) { self.maximumMessageBytes = maximumMessageBytes }

    /// A coordinator's settings for a run of `network`: the largest message a worker sends is a result (its
    /// header and the model-sized float frames, or a ring member's replica: the model, up to two optimizer
    /// moments and a run state's header), a hello, or a worker's sealed shares in secure aggregation.
    public static func coordinator(for network: Network) -> ZmqSettings {
        ZmqSettings(maximumMessageBytes: Int64(max(4 * (3 * network.parameterCount + network.state.count + 2) + (64 << 10) + WireCodec.maximumWorkerHeader,
                                                   WireCodec.maximumMaskingBytes)))
    }

    /// A worker's settings: anything up to 256 MiB from the coordinator unless told otherwise.
    public static let worker = ZmqSettings(maximumMessageBytes: 256 << 20)
}

/// The coordinator's ROUTER socket, encrypted and authenticated with CURVE when given `security`.
public final class ZmqServer: ServerTransport {
    private let socket: ZmqSocket
    /// With CURVE: the ZAP domain and monitor endpoint of this socket, and its admission rules.
    private var zap: (domain: String, monitor: String, gate: Gate)?

    /// Binds `endpoint`, e.g. "tcp://*:5555" or "tcp://127.0.0.1:*". Without `security` only a loopback or
    /// local endpoint is bound, unless `insecure`: anything else would let any host on the network in.
    public init(bind endpoint: String, settings: ZmqSettings, security: ServerSecurity? = nil, insecure: Bool = false,
                logger: Logger = Logger(label: "nn.zmq")) throws {
        if security == nil, !insecure, !Self.isLocal(endpoint) {
            throw ClusterError("""
                refusing to bind \(endpoint) without encryption: anyone who reaches it could join the run. Make keys \
                with `nn keygen --out keys --name coordinator` (and one pair per worker), then give the coordinator \
                --key keys/coordinator.key_secret --allow keys/ (the workers' .key files), or bind 127.0.0.1, or \
                pass --insecure on a network you control
                """)
        }
        socket = try ZmqSocket(type: ZMQ_ROUTER, endpoint: endpoint)
        try socket.set(ZMQ_MAXMSGSIZE, settings.maximumMessageBytes)
        try socket.set(ZMQ_LINGER, settings.lingerMilliseconds)
        try socket.set(ZMQ_SNDTIMEO, Int32(0))
        try socket.set(ZMQ_SNDHWM, AdmissionLimits.queuedMessages)
        try socket.set(ZMQ_RCVHWM, AdmissionLimits.queuedMessages)
        // An unroutable send is an error (the worker is gone), not a silent drop.
        try socket.set(ZMQ_ROUTER_MANDATORY, Int32(1))
        // Plain: a worker that reconnects with its routing id takes over its old connection. With CURVE a
        // connection never takes over another: the first one with a routing id keeps it until it dies (ZMTP
        // heartbeats find a dead one within seconds), so no admitted peer can steal a worker's tasks.
        try socket.set(ZMQ_ROUTER_HANDOVER, Int32(security == nil ? 1 : 0))
        if let security {
            try socket.set(ZMQ_HEARTBEAT_IVL, Int32(1000))
            try socket.set(ZMQ_HEARTBEAT_TIMEOUT, Int32(3000))
            let gate = Gate(allowlist: security.allowlist, logger: logger)
            let (domain, monitor) = try ZapHandler.shared.register(gate)
            zap = (domain, monitor, gate)
            try socket.set(ZMQ_CURVE_SERVER, Int32(1))
            try socket.set(ZMQ_CURVE_SECRETKEY, bytes: Array(security.keys.secret.utf8))
            try socket.set(ZMQ_ZAP_DOMAIN, bytes: Array(domain.utf8))
            try socket.monitor(monitor, events: ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        }
        try socket.bind()
    }

    /// Loopback TCP, and transports that never leave the host.
    public static func isLocal(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        let host = endpoint.dropFirst(6).split(separator: ":", omittingEmptySubsequences: false).dropLast().joined(separator: ":")
        return host == "localhost" || host == "[::1]" || host.hasPrefix("127.")
    }

    /// The bound endpoint, with the port the system picked for a wildcard.
    public var endpoint: String { socket.lastEndpoint }

    /// Connections refused so far by the CURVE handshake or the allowlist.
    public var refusedConnections: Int { zap?.gate.refusalCount ?? 0 }

    public func send(_ frames: [Frame], to peer: PeerID) throws {
        try socket.send(frames, prefix: peer.bytes)
    }

    public func receive(timeout: Duration) throws -> (peer: PeerID, frames: [Frame])? {
        var userID: String?
        guard let parts = try socket.receive(timeout: timeout, userID: &userID) else { return nil }
        guard case .bytes(let identity)? = parts.first, !identity.isEmpty else { return nil }
        return (PeerID(identity, key: try userID.map { try CurvePublicKey(z85: $0) }), Array(parts.dropFirst()))
    }

    public func close() {
        if let zap {
            _ = try? socket.monitor(nil, events: 0)
            ZapHandler.shared.unregister(domain: zap.domain, monitor: zap.monitor)
            self.zap = nil
        }
        socket.close()
    }
}

/// A coordinator's CURVE key pair and the worker keys it admits.
public struct ServerSecurity: Sendable {
    public let keys: CurveKeyPair
    public let allowlist: Allowlist
    public init(keys: CurveKeyPair, allowlist: Allowlist) { self.keys = keys; self.allowlist = allowlist }
}

/// A worker's CURVE key pair and the coordinator's public key, which it checks the server against.
public struct ClientSecurity: Sendable {
    public let keys: CurveKeyPair
    public let serverKey: CurvePublicKey
    public init(keys: CurveKeyPair, serverKey: CurvePublicKey) { self.keys = keys; self.serverKey = serverKey }
}

/// A worker's DEALER socket, with a routing id derived from its session so that a reconnection keeps its identity.
public final class ZmqClient: ClientTransport {
    private let socket: ZmqSocket
    public let keys: CurveKeyPair?
    /// With CURVE: the socket's handshake failures.
    private var monitor: ZmqSocket?

    public init(connect endpoint: String, identity: [UInt8], settings: ZmqSettings, security: ClientSecurity? = nil) throws {
        socket = try ZmqSocket(type: ZMQ_DEALER, endpoint: endpoint)
        keys = security?.keys
        try socket.set(ZMQ_ROUTING_ID, bytes: identity)
        if let security {
            try socket.set(ZMQ_CURVE_SERVERKEY, bytes: Array(security.serverKey.z85.utf8))
            try socket.set(ZMQ_CURVE_PUBLICKEY, bytes: Array(security.keys.publicKey.z85.utf8))
            try socket.set(ZMQ_CURVE_SECRETKEY, bytes: Array(security.keys.secret.utf8))
            let endpoint = "inproc://nn-client-monitor-\(ObjectIdentifier(self).hashValue)"
            try socket.monitor(endpoint, events: ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
            monitor = try ZmqSocket(type: ZMQ_PAIR, endpoint: endpoint)
            try monitor?.connect()
        }
        try socket.set(ZMQ_MAXMSGSIZE, settings.maximumMessageBytes)
        try socket.set(ZMQ_LINGER, settings.lingerMilliseconds)
        try socket.set(ZMQ_SNDTIMEO, settings.sendTimeoutMilliseconds)
        try socket.set(ZMQ_RECONNECT_IVL, settings.reconnectMilliseconds)
        try socket.set(ZMQ_RECONNECT_IVL_MAX, settings.reconnectMaximumMilliseconds)
        try socket.connect()
    }

    public func send(_ frames: [Frame]) throws { try socket.send(frames) }

    public func receive(timeout: Duration) throws -> [Frame]? {
        try socket.receive(timeout: timeout)
    }

    public func refusal() -> String? {
        guard let monitor, let event = try? monitor.receive(timeout: .zero), case .bytes(let head)? = event.first, head.count >= 6 else { return nil }
        let id = Int32(head[0]) | Int32(head[1]) << 8
        let value = head[2...5].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        if id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH {
            return "the coordinator does not admit this worker's key (status \(value)); add its .key file to the coordinator's --allow"
        }
        return "the CURVE handshake failed (protocol error 0x\(String(value, radix: 16))): check --server-key, and that the coordinator runs with --key"
    }

    /// Makes `close` drop what is still queued instead of waiting out the linger: for a worker that gives up on a
    /// coordinator that no longer takes its messages.
    public func dropUnsent() {
        try? socket.set(ZMQ_LINGER, Int32(0))
    }

    public func close() {
        if monitor != nil { _ = try? socket.monitor(nil, events: 0) }
        monitor?.close()
        socket.close()
    }
}
