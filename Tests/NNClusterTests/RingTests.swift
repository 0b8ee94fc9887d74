import CZmq
import Foundation
@testable import NNCluster
import NNProtocol
import Testing

@Suite struct RingTests {
    /// Rings of 1 to 6 members over vectors that the ring size does not divide: every member ends with the same
    /// bytes, which are the sum of the inputs up to float rounding, and each sends 2(n − 1) chunks of about 1/n.
    @Test(arguments: 1...6)
    func allReduceSums(size n: Int) throws {
        var generator = SystemRandomNumberGenerator()
        let length = 1_001
        let inputs = (0..<n).map { _ in (0..<length).map { _ in Float.random(in: -1...1, using: &generator) } }
        /// Member p pushes into the queue of member (p + 1) mod n, by phase; each member runs on a thread of its own.
        final class Ring: @unchecked Sendable {
            let lock = NSCondition()
            var queues: [[Int: [Float]]], vectors: [[Float]], reduced: [[Float]], sent: [Int]
            init(_ n: Int) { queues = Array(repeating: [:], count: n); vectors = Array(repeating: [], count: n); reduced = vectors; sent = Array(repeating: 0, count: n) }
        }
        let ring = Ring(n)
        let group = DispatchGroup()
        for p in 0..<n {
            group.enter()
            let input = inputs[p]
            Thread {
                var v = input
                let lock = ring.lock
                let done: Void? = try? RingAllReduce.run(&v, position: p, size: n, send: { phase, values in
                    lock.lock(); ring.queues[(p + 1) % n][phase] = Array(values); ring.sent[p] += values.count; lock.broadcast(); lock.unlock()
                }, receive: { phase in
                    lock.lock(); defer { lock.unlock() }
                    while ring.queues[p][phase] == nil { lock.wait() }
                    return ring.queues[p].removeValue(forKey: phase)!
                }, reduced: { chunk in
                    lock.lock(); ring.reduced[p] = Array(chunk); lock.unlock()
                })
                lock.lock(); if done != nil { ring.vectors[p] = v }; lock.unlock()
                group.leave()
            }.start()
        }
        #expect(group.wait(timeout: .now() + 10) == .success)
        let (queues, vectors, reducedChunks, sent) = (ring.queues, ring.vectors, ring.reduced, ring.sent)
        let exact = (0..<length).map { i in inputs.reduce(0.0) { $0 + Double($1[i]) } }
        for p in 0..<n {
            #expect(vectors[p] == vectors[0], "member \(p) ended with other bytes")
            #expect(zip(vectors[p], exact).allSatisfy { abs(Double($0) - $1) < 1e-5 })
            let owned = RingAllReduce.bounds(chunk: RingAllReduce.owned(position: p, size: n), size: n, length: length)
            #expect(reducedChunks[p] == Array(vectors[p][owned]))
            #expect(abs(sent[p] - 2 * (n - 1) * length / n) <= 2 * n, "member \(p) sent \(sent[p]) values")
        }
        #expect(queues.allSatisfy { $0.isEmpty })
    }

    /// A CURVE-secured ring port admits only the predecessor it was told of: a peer with another key (or none)
    /// gets nothing through, the predecessor does.
    @Test func securedPortAdmitsOnlyThePredecessor() throws {
        let owner = try CurveKeyPair.generate(), predecessor = try CurveKeyPair.generate(), stranger = try CurveKeyPair.generate()
        let link = try RingLink(host: "127.0.0.1", port: 0, keys: owner, maximumChunkBytes: 1 << 16, logger: quiet)
        try link.join(successor: link.endpoint, successorKey: owner.publicKey.z85, predecessorKey: predecessor.publicKey.z85)
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
        #expect(try link.receive(generation: 1, step: 0, phase: 0, timeout: .milliseconds(500)) == nil)
        let admitted = try push(as: predecessor, phase: 0)
        #expect(try link.receive(generation: 1, step: 0, phase: 0, timeout: .seconds(5))?.values == [0])
        withExtendedLifetime((strangers, admitted)) {}
    }
}
