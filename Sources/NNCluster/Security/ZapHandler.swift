import CZmq
import Foundation
import Logging

/// The admission rules of one CURVE server socket, consulted by the ZAP handler for every connection.
final class Gate: @unchecked Sendable {
    private var allowlist: Allowlist
    private let logger: Logger
    private let lock = NSLock()
    private var logged: Set<String> = []
    private var counts: [String: Int] = [:]
    private var refusals = 0
    /// Connections refused so far.
    var refusalCount: Int {
        lock.lock(); defer { lock.unlock() }
        return refusals
    }

    init(allowlist: Allowlist, logger: Logger) { self.allowlist = allowlist; self.logger = logger }

    /// From now on admits the keys of `allowlist` (earlier connections stay).
    func admit(_ allowlist: Allowlist) {
        lock.lock(); defer { lock.unlock() }
        self.allowlist = allowlist
    }

    /// Whether a peer at `address` with `key` may connect; nil admits, else the reason. (ZAP's identity frame
    /// carries the server's own routing id, not the peer's, so routing ids are guarded by the ROUTER instead.)
    func decide(address: String, key: CurvePublicKey?) -> String? {
        lock.lock(); defer { lock.unlock() }
        guard let key else { return refuse(address, "no CURVE key") }
        guard allowlist.keys[key] != nil else { return refuse(address, "unknown key \(key)") }
        return nil
    }

    /// A handshake that failed before ZAP was asked (the peer spoke no CURVE, or no ZMTP at all).
    func handshakeFailed(_ reason: String, endpoint: String) {
        lock.lock(); defer { lock.unlock() }
        _ = refuse("a peer of \(endpoint)", reason)
    }

    /// Counts a refusal and logs it the first time its address and reason come together; repeats are
    /// summarised at 10, 100, 1000… so that a peer that keeps reconnecting cannot fill the log.
    private func refuse(_ address: String, _ reason: String) -> String {
        refusals += 1
        let entry = "\(address): \(reason)"
        if logged.count < 10_000, logged.insert(entry).inserted {
            logger.warning("refused a connection from \(address): \(reason)")
        }
        counts[reason, default: 0] += 1
        let count = counts[reason]!
        if count >= 10, String(count).dropFirst().allSatisfy({ $0 == "0" }), String(count).first == "1" {
            logger.warning("refused \(count) connections so far for: \(reason)")
        }
        if counts.count > 10_000 { counts.removeAll() }
        return reason
    }
}

/// The process's ZAP handler (RFC 27): libzmq asks it, on inproc://zeromq.zap.01 of the process's one context,
/// whether each connecting peer may in, and it answers from the `Gate` of the server socket's ZAP domain. Its
/// thread also reads each secure server's monitor for handshakes that failed before ZAP was asked.
final class ZapHandler: @unchecked Sendable {
    static let shared = ZapHandler()

    private let lock = NSLock()
    private var gates: [String: Gate] = [:]
    /// Monitor endpoints to connect to, and those to close, handed to the handler's thread.
    private var monitorsToOpen: [(endpoint: String, domain: String)] = []
    private var monitorsToClose: Set<String> = []
    private var nextDomain = 0
    private let bound: Bool

    private init() {
        let socket = zmq_socket(ZmqSocket.context, ZMQ_REP)!
        bound = zmq_bind(socket, "inproc://zeromq.zap.01") == 0
        nonisolated(unsafe) let rep = socket
        let thread = Thread { [unowned self] in serve(rep) }
        thread.name = "nn-zap"
        thread.start()
    }

    /// Registers `gate` for a new server socket; returns the ZAP domain and monitor endpoint to give that socket.
    func register(_ gate: Gate) throws -> (domain: String, monitor: String) {
        guard bound else { throw ClusterError("cannot start the ZAP handler: inproc://zeromq.zap.01 is taken") }
        lock.lock(); defer { lock.unlock() }
        nextDomain += 1
        let domain = "nn-\(nextDomain)", monitor = "inproc://nn-monitor-\(nextDomain)"
        gates[domain] = gate
        monitorsToOpen.append((monitor, domain))
        return (domain, monitor)
    }

    func unregister(domain: String, monitor: String) {
        lock.lock(); defer { lock.unlock() }
        gates[domain] = nil
        monitorsToClose.insert(monitor)
    }

    private func gate(_ domain: String) -> Gate? {
        lock.lock(); defer { lock.unlock() }
        return gates[domain]
    }

    private func serve(_ rep: UnsafeMutableRawPointer) {
        var monitors: [(socket: UnsafeMutableRawPointer, endpoint: String, domain: String)] = []
        while true {
            lock.lock()
            let opening = monitorsToOpen, closing = monitorsToClose
            monitorsToOpen = []; monitorsToClose = []
            lock.unlock()
            for (endpoint, domain) in opening {
                guard let pair = zmq_socket(ZmqSocket.context, ZMQ_PAIR) else { continue }
                if zmq_connect(pair, endpoint) == 0 { monitors.append((pair, endpoint, domain)) } else { zmq_close(pair) }
            }
            for m in monitors where closing.contains(m.endpoint) { zmq_close(m.socket) }
            monitors.removeAll { closing.contains($0.endpoint) }

            var items = [zmq_pollitem_t(socket: rep, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)]
                + monitors.map { zmq_pollitem_t(socket: $0.socket, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0) }
            let ready = zmq_poll(&items, Int32(items.count), 100)
            if ready < 0 && zmq_errno() == ETERM {
                // The process is ending (`ZmqContext.terminate`), which waits for these sockets too.
                zmq_close(rep)
                for m in monitors { zmq_close(m.socket) }
                return
            }
            guard ready > 0 else { continue }
            if items[0].revents & Int16(ZMQ_POLLIN) != 0, let request = Self.receive(rep) {
                Self.send(answer(request), on: rep)
            }
            for (i, m) in monitors.enumerated() where items[i + 1].revents & Int16(ZMQ_POLLIN) != 0 {
                guard let event = Self.receive(m.socket), event.count >= 2, event[0].count >= 6 else { continue }
                let id = UInt16(event[0][0]) | UInt16(event[0][1]) << 8
                let value = event[0][2...5].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                let endpoint = String(decoding: event[1], as: UTF8.self)
                let reason: String
                switch Int32(id) {
                case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL where Int32(bitPattern: value) == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                    reason = "no CURVE (the peer speaks plain ZeroMQ)"
                case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL where Int32(bitPattern: value) == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
                    reason = "a CURVE handshake that does not decrypt (the peer has another coordinator key)"
                case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
                    reason = "a broken handshake (protocol error 0x\(String(value, radix: 16)))"
                default:
                    reason = "a failed handshake (not ZeroMQ, or a wrong server key)"
                }
                gate(m.domain)?.handshakeFailed(reason, endpoint: endpoint)
            }
        }
    }

    /// RFC 27: request = version, request id, domain, address, identity, mechanism, credentials…;
    /// reply = version, request id, status code, status text, user id (the key), metadata.
    private func answer(_ request: [[UInt8]]) -> [[UInt8]] {
        guard request.count >= 6, request[0] == Array("1.0".utf8) else {
            return [Array("1.0".utf8), request.count > 1 ? request[1] : [], Array("500".utf8), Array("malformed ZAP request".utf8), [], []]
        }
        let domain = String(decoding: request[2], as: UTF8.self), address = String(decoding: request[3], as: UTF8.self)
        let mechanism = String(decoding: request[5], as: UTF8.self)
        let key = mechanism == "CURVE" && request.count >= 7 ? CurvePublicKey(bytes: request[6]) : nil
        let refusal: String?
        if let gate = gate(domain) {
            refusal = gate.decide(address: address, key: key)
        } else {
            refusal = "no such server"
        }
        if let refusal { return [Array("1.0".utf8), request[1], Array("400".utf8), Array(refusal.utf8), [], []] }
        return [Array("1.0".utf8), request[1], Array("200".utf8), Array("OK".utf8), Array(key!.z85.utf8), []]
    }

    private static func receive(_ socket: UnsafeMutableRawPointer) -> [[UInt8]]? {
        var parts: [[UInt8]] = []
        var more: Int32 = 1
        while more != 0 {
            var message = zmq_msg_t()
            zmq_msg_init(&message)
            defer { zmq_msg_close(&message) }
            guard zmq_msg_recv(&message, socket, 0) >= 0 else { return nil }
            parts.append(Array(UnsafeRawBufferPointer(start: zmq_msg_data(&message), count: zmq_msg_size(&message))))
            more = zmq_msg_more(&message)
        }
        return parts
    }

    private static func send(_ parts: [[UInt8]], on socket: UnsafeMutableRawPointer) {
        for (i, part) in parts.enumerated() {
            _ = part.withUnsafeBytes { zmq_send(socket, $0.baseAddress, $0.count, i < parts.count - 1 ? ZMQ_SNDMORE : 0) }
        }
    }
}
