import CZmq
import Foundation
@testable import NNCluster
import NNCore
import NNProtocol
import TestSupport
import Testing

@Suite struct RingTests {
    /// Rings of 1 to 6 members, and halving-doubling among 1 to 16, over vectors that the size does not divide:
    /// every member ends with the same bytes, which are the sum of the inputs up to float rounding, and each sends
    /// 2(n − 1)/n of the vector, in 2(n − 1) exchanges in a ring and 2·log₂ n in halving-doubling, to its peers only.
    @Test(arguments: (1...6).map { (AllReduce.ring, $0) } + [1, 2, 4, 8, 16].map { (AllReduce.halvingDoubling, $0) })
    func allReduceSums(_ algorithm: AllReduce, size n: Int) throws {
        var generator = SystemRandomNumberGenerator()
        let length = 1_001
        let inputs = (0..<n).map { _ in (0..<length).map { _ in Float.random(in: -1...1, using: &generator) } }
        /// Each member's incoming chunks by phase; each member runs on a thread of its own.
        final class Members: @unchecked Sendable {
            let lock = NSCondition()
            var queues: [[Int: [Float]]], vectors: [[Float]], sent: [Int], sends: [Int], strays: [String] = []
            init(_ n: Int) {
                queues = Array(repeating: [:], count: n); vectors = Array(repeating: [], count: n); sent = Array(repeating: 0, count: n)
                sends = sent
            }
        }
        let members = Members(n)
        let group = DispatchGroup()
        for p in 0..<n {
            group.enter()
            let input = inputs[p], exchanges = RingAllReduce.exchanges(position: p, size: n, algorithm), peers = RingAllReduce.peers(of: exchanges)
            Thread {
                var v = input
                let lock = members.lock
                let done: Void? = try? RingAllReduce.run(&v, size: n, exchanges: exchanges, send: { phase, to, values in
                    lock.lock()
                    if !peers.contains(to) || members.queues[to][phase] != nil { members.strays.append("\(p) → \(to) in phase \(phase)") }
                    members.queues[to][phase] = Array(values); members.sent[p] += values.count; members.sends[p] += 1
                    lock.broadcast(); lock.unlock()
                }, receive: { phase, consume in
                    lock.lock(); defer { lock.unlock() }
                    while members.queues[p][phase] == nil { lock.wait() }
                    try members.queues[p].removeValue(forKey: phase)!.withUnsafeBufferPointer(consume)
                })
                lock.lock(); if done != nil { members.vectors[p] = v }; lock.unlock()
                group.leave()
            }.start()
        }
        #expect(group.wait(timeout: .now() + 10) == .success)
        let (queues, vectors, sent, sends) = (members.queues, members.vectors, members.sent, members.sends)
        #expect(members.strays.isEmpty, "\(members.strays)")
        let exact = (0..<length).map { i in inputs.reduce(0.0) { $0 + Double($1[i]) } }
        let exchanges = algorithm == .ring ? 2 * (n - 1) : 2 * n.trailingZeroBitCount
        for p in 0..<n {
            #expect(vectors[p] == vectors[0], "member \(p) ended with other bytes")
            #expect(zip(vectors[p], exact).allSatisfy { abs(Double($0) - $1) < 1e-5 })
            #expect(abs(sent[p] - 2 * (n - 1) * length / n) <= 2 * n, "member \(p) sent \(sent[p]) values")
            #expect(sends[p] == exchanges, "member \(p) sent \(sends[p]) chunks")
        }
        #expect(queues.allSatisfy { $0.isEmpty })
    }

    /// A topology of halving-doubling sums by it among a power-of-two number of members, and by the ring otherwise.
    @Test func halvingDoublingOnlyAmongPowersOfTwo() {
        #expect((1...9).map { RingAllReduce.algorithm(for: .halvingDoubling, size: $0) }
                == [.halvingDoubling, .halvingDoubling, .ring, .halvingDoubling, .ring, .ring, .ring, .halvingDoubling, .ring])
        #expect((1...9).allSatisfy { RingAllReduce.algorithm(for: .ring, size: $0) == .ring })
        #expect(RingAllReduce.peers(position: 5, size: 8, .halvingDoubling) == [1, 7, 4])
        #expect(RingAllReduce.peers(position: 0, size: 5, .ring) == [1, 4])
    }

    /// A CURVE-secured ring port admits only the members it was told send to it: a peer with another key (or
    /// none) gets nothing through, each of the senders does.
    @Test func securedPortAdmitsOnlyItsSenders() throws {
        let owner = try CurveKeyPair.generate(), predecessor = try CurveKeyPair.generate(), partner = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        let link = try RingLink(host: "127.0.0.1", port: 0, keys: owner, maximumChunkBytes: 1 << 16, logger: quiet)
        try link.join(sendingTo: [RingPeer(position: 1, endpoint: link.endpoint, key: owner.publicKey.z85)],
                      receivingFrom: [predecessor, partner].enumerated().map { RingPeer(position: UInt32($0 + 1), endpoint: "", key: $1.publicKey.z85) })
        func push(as keys: CurveKeyPair?, phase: UInt32) throws -> ZmqSocket {
            let socket = try ZmqSocket(type: ZMQ_PUSH, endpoint: link.endpoint)
            try socket.set(ZMQ_LINGER, Int32(0))
            if let keys {
                try socket.set(ZMQ_CURVE_SERVERKEY, bytes: Array(owner.publicKey.z85.utf8))
                try socket.set(ZMQ_CURVE_PUBLICKEY, bytes: Array(keys.publicKey.z85.utf8))
                try socket.set(ZMQ_CURVE_SECRETKEY, bytes: Array(keys.secret.utf8))
            }
            try socket.connect()
            try socket.send(WireCodec.encode(.ringChunk(RingChunk(generation: 1, step: 0, phase: phase, values: [Float(phase)]))))
            return socket
        }
        let strangers = [try push(as: stranger, phase: 0), try push(as: nil, phase: 0)]
        #expect(try link.receive(generation: 1, step: 0, phase: 0, timeout: .milliseconds(500), Array.init) == nil)
        let admitted = [try push(as: predecessor, phase: 0), try push(as: partner, phase: 1)]
        #expect(try link.receive(generation: 1, step: 0, phase: 0, timeout: .seconds(5), Array.init) == [0])
        #expect(try link.receive(generation: 1, step: 0, phase: 1, timeout: .seconds(5), Array.init) == [1])
        withExtendedLifetime((strangers, admitted)) {}
    }

    /// A link sends to every member it is told to, and closes its socket to one it no longer sends to.
    @Test func linkSendsToEachTarget() throws {
        let links = try (0..<3).map { _ in try RingLink(host: "127.0.0.1", port: 0, keys: nil, maximumChunkBytes: 1 << 16, logger: quiet) }
        let peers = links.enumerated().map { RingPeer(position: UInt32($0), endpoint: $1.endpoint) }
        try links[0].join(sendingTo: [peers[1], peers[2]], receivingFrom: [peers[1], peers[2]])
        for (phase, target) in [(0, 1), (1, 2)] {
            #expect(try links[0].send(to: peers[target].endpoint, generation: 1, step: 0, phase: UInt32(phase), values: [Float(target)][...], within: .seconds(1)))
            #expect(try links[target].receive(generation: 1, step: 0, phase: UInt32(phase), timeout: .seconds(5), Array.init) == [Float(target)])
        }
        try links[0].join(sendingTo: [peers[2]], receivingFrom: [peers[2]])
        #expect(throws: ClusterError.self) { try links[0].send(to: peers[1].endpoint, generation: 1, step: 1, phase: 0, values: [0][...], within: .seconds(1)) }
    }

    /// A member waiting on its ring when its coordinator is replaced (killed, then resumed) hears from the new one
    /// that it is not registered: it gives the step up and registers again at once, instead of waiting on until the
    /// new coordinator ignores its heartbeats as a stranger's.
    @Test func memberForgottenByANewCoordinatorRegistersAgain() throws {
        let member = try LoneMember()
        // A ring of two whose other member never answers (nothing listens at its port): the member waits on its ring.
        try member.send(.task(member.ringTask(RingPlan(generation: 7, position: 0, size: 2, firstStep: 0, totals: [4],
                                                       peers: [RingPeer(position: 1, endpoint: "tcp://127.0.0.1:9")], sync: member.replica))))
        #expect(try member.next(within: .seconds(2)) { if case .heartbeat = $0 { true } else { false } } != nil, "no heartbeat while the ring waits")
        let forgotten = ContinuousClock.now
        try member.send(.error(ErrorReport(code: .notRegistered, text: "not registered: send hello first")))
        let again = try member.next(within: .seconds(3)) { if case .hello = $0 { true } else { false } }
        #expect(again != nil && forgotten.duration(to: .now) < .seconds(1), "no new hello")
        if let again { member.peer = again }
        try member.stop()
    }

    /// A ring task that leaves out a member its position exchanges with is rejected with the position named, and
    /// the worker goes on.
    @Test func ringTaskWithoutAPeerIsRejected() throws {
        let member = try LoneMember()
        try member.send(.task(member.ringTask(RingPlan(generation: 3, position: 0, size: 4, firstStep: 0, totals: [4], allReduce: .halvingDoubling,
                                                       peers: [RingPeer(position: 1, endpoint: "tcp://127.0.0.1:9")], sync: member.replica), samples: [0])))
        var text = ""
        _ = try member.next(within: .seconds(5)) { if case .error(let report) = $0 { text = report.text; return true } else { return false } }
        #expect(text.contains("names no member at position 2"), "\(text)")
        try member.stop()
    }

    /// A worker thread welcomed into a ring run of a one-layer model by a coordinator the test plays.
    private final class LoneMember {
        let spec = try! ModelSpec(widths: [784, 10])
        let server: ServerTransport
        var peer: PeerID
        let threads = WorkerThreads()
        let outcome = Locked("")
        /// The starting replica, a run state.
        let replica: [UInt8]

        init() throws {
            let data = try mnistSubset(100).train
            let optimizer = OptimizerSettings(kind: .sgd), schedule = LearningRateSchedule(base: 0.1)
            let job = Job(mode: "sync", seed: 1, globalBatch: 4,
                          ring: RingConfiguration(optimizer: optimizer, schedule: schedule, clipNorm: nil, stepsPerEpoch: 1, totalSteps: 1))
            let configuration = RunConfiguration(job: job, model: spec, timing: ClusterTiming(heartbeat: .milliseconds(50), timeout: .seconds(5)))
            let network = InProcessNetwork()
            server = network.server()
            let outcome = self.outcome
            threads.start(transport: network.connect(), data: data, name: "member", session: 1,
                          settings: .init(name: "member", registrationTimeout: .seconds(5), reconnectTimeout: .seconds(5))) { outcome.set($0) }
            var state = RunState()
            ParameterUpdate(network: Network(spec: spec, seed: 1), optimizer: optimizer, schedule: schedule).save(into: &state)
            replica = try state.encoded()
            peer = PeerID([])
            guard let hello = try next(within: .seconds(5), { if case .hello = $0 { true } else { false } }) else { throw ClusterError("no hello") }
            peer = hello
            try send(.welcome(Welcome(workerIndex: 0, configuration: configuration.json)))
        }

        func ringTask(_ plan: RingPlan, samples: [UInt32] = [0, 1]) -> GradientTask {
            GradientTask(step: 0, start: 0, firstRow: 0, samples: samples, parameters: [], state: [], ring: plan)
        }

        func send(_ message: Message) throws { try server.send(WireCodec.encode(message), to: peer) }

        /// The peer that sent the first message `wanted` admits within `timeout`, or nil.
        func next(within timeout: Duration, _ wanted: (Message) -> Bool) throws -> PeerID? {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if let (peer, frames) = try server.receive(timeout: .milliseconds(50)), let message = try? WireCodec.decode(frames), wanted(message) {
                    return peer
                }
            }
            return nil
        }

        func stop() throws {
            try send(.shutdown(Shutdown(reason: "test over")))
            #expect(threads.wait(seconds: 10), "the member did not stop: \(outcome.get())")
        }
    }

    /// Members on one host pass chunks through shared memory: in order, from more than one writer, refused when a
    /// chunk outgrows a slot, held back when every slot is full until the reader takes one, and given up by a
    /// writer once the reader is gone or replaced.
    @Test func sharedChannelPassesChunksOnOneHost() throws {
        let endpoint = "tcp://127.0.0.1:\(Int.random(in: 20_000..<60_000))"
        var reader: SharedRingChannel? = try SharedRingChannel(creatingFor: endpoint, capacity: 8)
        let first = try #require(SharedRingChannel(writingTo: endpoint, capacity: 8))
        let second = try #require(SharedRingChannel(writingTo: endpoint, capacity: 8))
        #expect(SharedRingChannel(writingTo: endpoint, capacity: 9) == nil, "a channel of another size was taken")
        #expect(SharedRingChannel(writingTo: "tcp://127.0.0.1:1", capacity: 8) == nil, "a channel no member laid out")
        #expect(try first.put(generation: 3, step: 1, phase: 0, values: [1, 2, 3][...]))
        #expect(try second.put(generation: 3, step: 1, phase: 1, values: [4][...]))
        #expect(throws: ClusterError.self) { try first.put(generation: 3, step: 1, phase: 2, values: ArraySlice(repeating: 0, count: 9)) }
        #expect(reader?.take() == RingChunk(generation: 3, step: 1, phase: 0, values: [1, 2, 3]))
        #expect(reader?.take() == RingChunk(generation: 3, step: 1, phase: 1, values: [4]))
        #expect(reader?.take() == nil)
        for phase in 0..<UInt32(SharedRingChannel.slots) { #expect(try first.put(generation: 3, step: 2, phase: phase, values: [Float(phase)][...])) }
        #expect(try !second.put(generation: 3, step: 2, phase: 9, values: [9][...]), "a full channel took a chunk")
        #expect(reader?.take()?.phase == 0)
        #expect(try second.put(generation: 3, step: 2, phase: 9, values: [9][...]))
        #expect(first.isCurrent && second.isCurrent)
        // A member that had the endpoint is gone, and a new one has it.
        reader = nil
        reader = try SharedRingChannel(creatingFor: endpoint, capacity: 8)
        #expect(!first.isCurrent, "a writer kept a channel its reader replaced")
        #expect(SharedRingChannel(writingTo: endpoint, capacity: 8)?.isCurrent == true)
        reader = nil
        #expect(!second.isCurrent && SharedRingChannel(writingTo: endpoint, capacity: 8) == nil, "a channel outlived its reader")
        // The file of a member killed before it could remove it goes when the next channel is laid out; one of
        // another network namespace, whose doorbell cannot be seen from here, stays.
        let abandoned = try #require(SharedRingChannel.path(for: endpoint + "0"))
        let elsewhere = "/dev/shm/nn-ring-net__1__" + abandoned.split(separator: "_").last!
        for path in [abandoned, elsewhere] { #expect(FileManager.default.createFile(atPath: path, contents: Data(count: 64))) }
        defer { unlink(elsewhere) }
        _ = try SharedRingChannel(creatingFor: endpoint, capacity: 8)
        #expect(!FileManager.default.fileExists(atPath: abandoned), "an abandoned channel file stayed")
        #expect(FileManager.default.fileExists(atPath: elsewhere), "another namespace's channel file was removed")
    }

    /// Two ring links on one host exchange chunks through shared memory, with CURVE or without, the receiver
    /// spinning before it sleeps or not; a channel that failed is not written to again, nor is a channel file of
    /// another user, and chunks take the TCP link.
    @Test func linksOnOneHostUseSharedMemory() throws {
        let a = try RingLink(host: "127.0.0.1", port: 0, keys: nil, maximumChunkBytes: 1 << 16, logger: quiet)
        let b = try RingLink(host: "127.0.0.1", port: 0, keys: nil, maximumChunkBytes: 1 << 16, spin: .microseconds(200), logger: quiet)
        func peer(_ link: RingLink, key: String = "") -> RingPeer { RingPeer(position: 1, endpoint: link.endpoint, key: key) }
        try a.join(sendingTo: [peer(b)], receivingFrom: [peer(b)])
        try b.join(sendingTo: [peer(a)], receivingFrom: [peer(a)])
        #expect(a.sharesMemory(with: b.endpoint) && b.sharesMemory(with: a.endpoint))
        for step in UInt64(0)..<100 {
            #expect(try a.send(to: b.endpoint, generation: 1, step: step, phase: 0, values: [Float(step)][...], within: .seconds(1)))
            #expect(try b.receive(generation: 1, step: step, phase: 0, timeout: .seconds(5), Array.init) == [Float(step)])
            #expect(try b.send(to: a.endpoint, generation: 1, step: step, phase: 1, values: [-Float(step)][...], within: .seconds(1)))
            #expect(try a.receive(generation: 1, step: step, phase: 1, timeout: .seconds(5), Array.init) == [-Float(step)])
        }
        // The spinning receiver still waits out its timeout when nothing comes, and takes a chunk that comes
        // after its spin, once woken.
        let waited = ContinuousClock.now
        #expect(try b.receive(generation: 1, step: 100, phase: 0, timeout: .milliseconds(50), Array.init) == nil)
        #expect(waited.duration(to: .now) >= .milliseconds(48), "gave up after \(waited.duration(to: .now))")  // poll counts whole milliseconds
        nonisolated(unsafe) let sender = a
        let receiver = b.endpoint
        let late = Thread { usleep(30_000); _ = try? sender.send(to: receiver, generation: 1, step: 100, phase: 0, values: [5][...], within: .seconds(1)) }
        late.start()
        #expect(try b.receive(generation: 1, step: 100, phase: 0, timeout: .seconds(5), Array.init) == [5])
        // A chunk the channel cannot take (nor, being too large, the successor's port): that successor gets
        // TCP from then on.
        #expect(try a.send(to: b.endpoint, generation: 2, step: 0, phase: 0, values: ArraySlice(repeating: 1, count: (1 << 14) + 1), within: .seconds(1)))
        #expect(!a.sharesMemory(with: b.endpoint))
        try a.join(sendingTo: [peer(b)], receivingFrom: [peer(b)])
        #expect(!a.sharesMemory(with: b.endpoint), "a broken channel was taken up again")
        let keys = try CurveKeyPair.generate()
        let secured = try RingLink(host: "127.0.0.1", port: 0, keys: keys, maximumChunkBytes: 1 << 16, logger: quiet)
        try secured.join(sendingTo: [peer(secured, key: keys.publicKey.z85)], receivingFrom: [peer(secured, key: keys.publicKey.z85)])
        #expect(secured.sharesMemory(with: secured.endpoint))
        #expect(try secured.send(to: secured.endpoint, generation: 1, step: 0, phase: 0, values: [7][...], within: .seconds(5)))
        #expect(try secured.receive(generation: 1, step: 0, phase: 0, timeout: .seconds(5), Array.init) == [7])
        // Another user's file at the successor's path: the link keeps to TCP.
        let c = try RingLink(host: "127.0.0.1", port: 0, keys: nil, maximumChunkBytes: 1 << 16, logger: quiet)
        let path = try #require(SharedRingChannel.path(for: c.endpoint))
        if getuid() == 0 {
            #expect(chown(path, 65_534, 65_534) == 0)
            let d = try RingLink(host: "127.0.0.1", port: 0, keys: nil, maximumChunkBytes: 1 << 16, logger: quiet)
            try d.join(sendingTo: [peer(c)], receivingFrom: [peer(c)])
            #expect(!d.sharesMemory(with: c.endpoint), "a channel file of another user was written to")
            #expect(try d.send(to: c.endpoint, generation: 1, step: 0, phase: 0, values: [8][...], within: .seconds(5)))
            #expect(try c.receive(generation: 1, step: 0, phase: 0, timeout: .seconds(5), Array.init) == [8])
        }
    }
}
