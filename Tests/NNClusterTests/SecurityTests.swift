import Foundation
import Logging
import NNCluster
import NNCore
import NNData
import NNProtocol
import TestSupport
import Testing

/// A TCP relay on loopback that records every byte it passes on, both ways: what a tap on the wire would see.
final class RecordingRelay: @unchecked Sendable {
    let port: Int
    let bytes = Locked<[UInt8]>([])
    private let listener: Int32

    init(to target: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        listener = fd
        var address = Self.loopback(0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, 16) == 0 else { throw ClusterError("relay: cannot listen") }
        port = Int(UInt16(bigEndian: address.sin_port))
        let listening = listener
        Thread { [bytes] in
            while true {
                let client = accept(listening, nil, nil)
                guard client >= 0 else { return }
                let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var target = Self.loopback(target)
                let connected = withUnsafePointer(to: &target) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
                }
                guard connected else { close(client); close(server); continue }
                for (from, to) in [(client, server), (server, client)] {
                    Thread {
                        var buffer = [UInt8](repeating: 0, count: 65536)
                        while true {
                            let n = read(from, &buffer, buffer.count)
                            guard n > 0 else { break }
                            bytes.update { $0 += buffer[0..<n] }
                            var sent = 0
                            while sent < n {
                                let m = buffer[sent..<n].withUnsafeBytes { write(to, $0.baseAddress, $0.count) }
                                guard m > 0 else { break }
                                sent += m
                            }
                        }
                        shutdown(to, Int32(SHUT_WR))
                    }.start()
                }
            }
        }.start()
    }

    deinit { close(listener) }

    static func loopback(_ port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    /// Whether `needle` occurs anywhere in what passed.
    func saw(_ needle: [UInt8]) -> Bool {
        let haystack = bytes.get()
        guard needle.count <= haystack.count, let first = needle.first else { return false }
        var i = 0
        while i <= haystack.count - needle.count {
            if haystack[i] == first, haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}

func port(of endpoint: String) -> Int { Int(endpoint.split(separator: ":").last!)! }

/// A coordinator's server over CURVE admitting `allowed`, logging into `lines`.
func curveServer(for network: Network, allowed: [CurveKeyPair], lines: Locked<[String]>) throws -> ZmqServer {
    let allowlist = Allowlist(Dictionary(uniqueKeysWithValues: allowed.map { ($0.publicKey, nil) }))
    return try ZmqServer(bind: "tcp://127.0.0.1:*", settings: .coordinator(for: network),
                         security: ServerSecurity(keys: testKeys.coordinator, allowlist: allowlist),
                         logger: Logger(label: "test", factory: { _ in CapturingLogHandler(lines: lines) }))
}

func curveClient(_ endpoint: String, name: String, keys: CurveKeyPair) throws -> ZmqClient {
    try ZmqClient(connect: endpoint, identity: Array(name.utf8), settings: .worker,
                  security: ClientSecurity(keys: keys, serverKey: testKeys.coordinator.publicKey))
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct SecurityTests {
    /// Key files: the pair written is the pair read (also by pyzmq's format); a missing, malformed, public-for-secret
    /// or readable-by-others file is refused with the reason.
    @Test func keyFilesAreChecked() throws {
        let dir = temporaryDirectory()
        let pair = try CurveKeyPair.generate()
        let (publicPath, secretPath) = try pair.write(to: dir, name: "w")
        #expect(try CurveKeyPair.load(secret: secretPath).publicKey == pair.publicKey)
        #expect(try CurvePublicKey.load(publicPath) == pair.publicKey)
        var info = stat()
        #expect(stat(secretPath, &info) == 0 && info.st_mode & 0o777 == 0o600)
        func refused(_ body: () throws -> Void, mentioning text: String) {
            do { try body(); Issue.record("accepted; expected an error mentioning \(text)") } catch {
                #expect("\(error)".contains(text), "\(error)")
            }
        }
        refused({ _ = try CurveKeyPair.load(secret: publicPath) }, mentioning: "is a public key")
        refused({ _ = try CurveKeyPair.load(secret: "\(dir)/missing.key_secret") }, mentioning: "missing.key_secret")
        refused({ try pair.write(to: dir, name: "w") }, mentioning: "exists already")
        chmod(secretPath, 0o644)
        refused({ _ = try CurveKeyPair.load(secret: secretPath) }, mentioning: "chmod 600")
        try "secret-key = \"tooshort\"\n".write(toFile: "\(dir)/bad.key_secret", atomically: true, encoding: .utf8)
        chmod("\(dir)/bad.key_secret", 0o600)
        refused({ _ = try CurveKeyPair.load(secret: "\(dir)/bad.key_secret") }, mentioning: "40 characters of Z85")
        // Allowlists: keys a line with optional client ranges; errors name the line.
        let other = try CurveKeyPair.generate().publicKey
        try "# workers\n\(pair.publicKey) 0-49\n\(other)\n".write(toFile: "\(dir)/allow", atomically: true, encoding: .utf8)
        let list = try Allowlist.load("\(dir)/allow")
        #expect(list.keys.count == 2 && list.clients(of: pair.publicKey) == 0..<50 && list.clients(of: other) == nil)
        try "\(pair.publicKey) 0-49\n\(other) 40-59\n".write(toFile: "\(dir)/overlap", atomically: true, encoding: .utf8)
        refused({ _ = try Allowlist.load("\(dir)/overlap") }, mentioning: "overlap")
        try "\(pair.publicKey)\nnot-a-key\n".write(toFile: "\(dir)/malformed", atomically: true, encoding: .utf8)
        refused({ _ = try Allowlist.load("\(dir)/malformed") }, mentioning: "malformed:2")
        #expect(try Allowlist.load(dir).keys.keys.contains(pair.publicKey))
    }

    /// A plain ZeroMQ peer, a peer with an unknown key and raw TCP clients cannot register, and never reach the
    /// coordinator: the admitted worker alone trains, every message the coordinator saw was valid, and the log
    /// names each refused key once however often its peer reconnects.
    @Test func strangersCannotRegister() throws {
        let data = try mnistSubset(500).train
        let lines = Locked<[String]>([])
        let run = SyncTrainingRun(settings: SyncRun(spec: try ModelSpec(widths: [784, 10]), epochs: 1).settings(batch: 50),
                                  cluster: CoordinatorSettings(expectedWorkers: 1, timing: quickTiming), train: data, test: nil, logger: quiet)
        let server = try curveServer(for: run.network, allowed: [testKeys.workers[0]], lines: lines)
        defer { server.close() }
        let endpoint = server.endpoint
        let strangers = WorkerThreads()
        let outcomes = Locked<[String]>([])
        let stranger = try CurveKeyPair.generate()
        strangers.start(transport: try curveClient(endpoint, name: "stranger", keys: stranger), data: data, name: "stranger", session: 7,
                        settings: .init(name: "stranger", registrationTimeout: .seconds(3))) { o in outcomes.update { $0.append(o) } }
        strangers.start(transport: try ZmqClient(connect: endpoint, identity: Array("plain".utf8), settings: .worker), data: data,
                        name: "plain", session: 8, settings: .init(name: "plain", registrationTimeout: .seconds(3))) { o in outcomes.update { $0.append(o) } }
        for _ in 0..<3 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = RecordingRelay.loopback(port(of: endpoint))
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            let garbage = (0..<4096).map { _ in UInt8.random(in: 0...255) }
            _ = garbage.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        // The plain worker's hello waits for a connection that never completes: its send times out (10 s).
        #expect(strangers.wait(seconds: 20), "\(outcomes.get()) \(lines.get())")
        let ended = outcomes.get().sorted()
        #expect(ended.count == 2 && ended.allSatisfy { !$0.hasPrefix("finished") }, "\(ended)")
        #expect(ended.contains { $0.contains("does not admit") }, "\(ended)")
        let worker = WorkerThreads()
        worker.start(transport: try curveClient(endpoint, name: "w0", keys: testKeys.workers[0]), data: data, name: "w0", session: 1)
        let outcome = try run.run(over: server)
        #expect(worker.wait())
        #expect(outcome.epochs.count == 1 && outcome.epochs[0].total.rejectedSoFar == 0)
        #expect(server.refusedConnections >= 2, "\(lines.get())")
        let log = lines.get()
        #expect(log.filter { $0.contains("unknown key \(stranger.publicKey)") }.count == 1, "\(log)")
        #expect(log.contains { $0.contains("refused a connection from a peer of") }, "\(log)")
    }

    /// A peer with another admitted key that connects with a registered worker's routing id never gets through:
    /// the worker keeps its connection and answers every task of the run.
    @Test func routingIdsCannotBeTakenOver() throws {
        let data = try mnistSubset(1000).train
        let lines = Locked<[String]>([])
        let run = SyncTrainingRun(settings: SyncRun(spec: try ModelSpec(widths: [784, 10]), epochs: 2).settings(batch: 25),
                                  cluster: CoordinatorSettings(expectedWorkers: 1, timing: quickTiming), train: data, test: nil,
                                  logger: Logger(label: "test", factory: { _ in CapturingLogHandler(lines: lines) }))
        let server = try curveServer(for: run.network, allowed: Array(testKeys.workers[0..<2]), lines: lines)
        defer { server.close() }
        let owner = Worker(transport: try curveClient(server.endpoint, name: "w1", keys: testKeys.workers[0]), data: data, session: 1,
                           settings: .init(name: "owner", reconnectTimeout: .seconds(1)), logger: quiet)
        nonisolated(unsafe) let o = owner
        let threads = WorkerThreads()
        threads.start { _ = try? o.run() }
        let intruder = Locked<String>("")
        let outcome = try run.run(over: server, onStep: { epoch, done in
            guard epoch.epoch == 1, done == 5 else { return }
            threads.start(transport: try! curveClient(server.endpoint, name: "w1", keys: testKeys.workers[1]), data: data, name: "intruder", session: 2,
                          settings: .init(name: "intruder", registrationTimeout: .seconds(3))) { intruder.set($0) }
        })
        #expect(threads.wait())
        #expect(owner.tasksDone == 2 * run.stepsPerEpoch, "the owner answered \(owner.tasksDone) of \(2 * run.stepsPerEpoch) tasks")
        #expect(outcome.epochs.last?.total.workers == 1)
        #expect(!intruder.get().hasPrefix("finished"), "\(intruder.get())")
        #expect(!lines.get().contains { $0.contains("intruder") }, "\(lines.get())")
    }

    /// Federated clients bound to keys in the allowlist: an admitted peer with an unbound key that says hello
    /// first cannot grab them (it is refused: every client is bound), and each bound worker hosts its own range.
    @Test func boundClientsCannotBeGrabbed() throws {
        let data = try mnistSubset(1000).train
        let lines = Locked<[String]>([])
        let run = try FederatedRun(experiment: try smallExperiment(rounds: 2), train: data, test: nil,
                                   logger: Logger(label: "test", factory: { _ in CapturingLogHandler(lines: lines) }))
        let allowlist = Allowlist([testKeys.workers[0].publicKey: 5..<10, testKeys.workers[1].publicKey: 0..<5, testKeys.workers[2].publicKey: nil])
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: .coordinator(for: run.network),
                                   security: ServerSecurity(keys: testKeys.coordinator, allowlist: allowlist), logger: quiet)
        defer { server.close() }
        let greedy = Locked("")
        let threads = WorkerThreads()
        threads.start(transport: try curveClient(server.endpoint, name: "greedy", keys: testKeys.workers[2]), data: data, name: "greedy", session: 9,
                      settings: .init(name: "greedy", registrationTimeout: .seconds(5))) { greedy.set($0) }
        Thread.sleep(forTimeInterval: 0.5)
        for i in 0..<2 {
            threads.start(transport: try curveClient(server.endpoint, name: "bound-\(i)", keys: testKeys.workers[i]), data: data, name: "bound-\(i)",
                          session: UInt64(i + 1))
        }
        _ = try run.run(over: server, cluster: CoordinatorSettings(expectedWorkers: 2, timing: quickTiming,
                                                                   boundClients: allowlist.keys.compactMapValues { $0 }))
        #expect(threads.wait())
        #expect(greedy.get().contains("every one of the 10 clients is already hosted"), "\(greedy.get())")
        #expect(lines.get().contains { $0.contains("bound-0 (") && $0.contains("hosting clients 5…9") }, "\(lines.get())")
        #expect(lines.get().contains { $0.contains("bound-1 (") && $0.contains("hosting clients 0…4") }, "\(lines.get())")
    }

    /// On the wire, a CURVE run shows neither the hello (magic, version, type and session) nor any sampled 64-byte
    /// run of the initial parameters, nor the data fingerprint; the same run in plain text shows all of them.
    @Test(arguments: [false, true])
    func trafficIsEncrypted(curve: Bool) throws {
        let data = try mnistSubset(500).train
        let run = SyncTrainingRun(settings: SyncRun(spec: try ModelSpec(widths: [784, 32, 10]), epochs: 1).settings(batch: 50),
                                  cluster: CoordinatorSettings(expectedWorkers: 1, timing: quickTiming), train: data, test: nil, logger: quiet)
        let initial = run.network.parameters.array
        let server = curve ? try curveServer(for: run.network, allowed: [testKeys.workers[0]], lines: Locked([]))
                           : try ZmqServer(bind: "tcp://127.0.0.1:*", settings: .coordinator(for: run.network))
        defer { server.close() }
        let relay = try RecordingRelay(to: port(of: server.endpoint))
        let endpoint = "tcp://127.0.0.1:\(relay.port)"
        let client = curve ? try curveClient(endpoint, name: "w0", keys: testKeys.workers[0])
                           : try ZmqClient(connect: endpoint, identity: Array("w0".utf8), settings: .worker)
        let threads = WorkerThreads()
        threads.start(transport: client, data: data, name: "w0", session: 0x1122334455667788)
        _ = try run.run(over: server)
        #expect(threads.wait())
        #expect(relay.bytes.get().count > 4 * initial.count, "the relay saw \(relay.bytes.get().count) bytes")
        let hello: [UInt8] = Array("NN".utf8) + [UInt8(WireCodec.version), 1] + withUnsafeBytes(of: UInt64(0x1122334455667788).littleEndian, Array.init)
        let windows = stride(from: 0, to: initial.count - 16, by: initial.count / 8).map { i in initial[i..<(i + 16)].withUnsafeBytes { Array($0) } }
        let seen = [relay.saw(hello), relay.saw(data.identity.fingerprint)] + windows.map(relay.saw)
        if curve {
            #expect(!seen.contains(true), "plain text on an encrypted wire: \(seen)")
        } else {
            #expect(!seen.contains(false), "the check cannot see plain text: \(seen)")
        }
    }
}
