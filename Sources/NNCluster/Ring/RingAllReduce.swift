import NNCore
import NNProtocol

/// Sums a vector among n workers, each sending 2(n − 1)/n of it whatever n is, so that a link's traffic does not
/// grow with n (a parameter server's does, n-fold). The vector is cut into n near-equal chunks; a reduce-scatter
/// leaves each worker with the full sum of one chunk, and an all-gather passes the summed chunks on. Each chunk's
/// sum is made by one worker and copied by the others, so every worker ends with the same bits.
///
/// - `ring` (Patarasuk and Yuan 2009): n − 1 reduce-scatter steps, each passing one chunk to the successor,
///   leave worker p with chunk (p + 1) mod n; n − 1 all-gather steps pass the summed chunks round.
/// - `halvingDoubling` (Rabenseifner), n a power of two: in step s the worker exchanges with the one at
///   distance d = n/2ˢ⁺¹ (p XOR d) the half of its current range of chunks that the other keeps, and adds
///   what it gets into its own half; after log₂ n steps worker p holds chunk p. The all-gather retraces the
///   steps, doubling the range. 2·log₂ n exchanges instead of 2(n − 1), for the same bytes.
enum RingAllReduce {
    /// Chunk `chunk` of a vector of `length` values cut into `size` near-equal chunks.
    static func bounds(chunk: Int, size: Int, length: Int) -> Range<Int> { (chunk * length / size)..<((chunk + 1) * length / size) }

    /// The algorithm for a ring of `size` under `topology`: halving-doubling when asked for and `size` is a
    /// power of two, the ring's otherwise.
    static func algorithm(for topology: Topology, size: Int) -> AllReduce {
        topology == .halvingDoubling && size & (size - 1) == 0 ? .halvingDoubling : .ring
    }

    /// One exchange: the chunks `sending` go to the member at `to`, and chunks `receiving` come from the member at `from`.
    struct Exchange: Equatable {
        var to: Int, sending: Range<Int>
        var from: Int, receiving: Range<Int>
        /// Reduce-scatter adds what comes in; all-gather overwrites with it.
        var adds: Bool
    }

    /// The exchanges of member `p` of `n`, phase by phase.
    static func exchanges(position p: Int, size n: Int, _ algorithm: AllReduce) -> [Exchange] {
        switch algorithm {
        case .ring:
            let next = (p + 1) % n, previous = (p + n - 1) % n
            func chunk(_ c: Int) -> Range<Int> { ((c % n + n) % n)..<((c % n + n) % n + 1) }
            return (0..<max(n - 1, 0)).map { s in Exchange(to: next, sending: chunk(p - s), from: previous, receiving: chunk(p - s - 1), adds: true) }
                + (0..<max(n - 1, 0)).map { s in Exchange(to: next, sending: chunk(p + 1 - s), from: previous, receiving: chunk(p - s), adds: false) }
        case .halvingDoubling:
            precondition(n & (n - 1) == 0, "halving-doubling among \(n)")
            var halving: [Exchange] = [], range = 0..<n, d = n / 2
            while d >= 1 {
                let lower = range.lowerBound..<(range.lowerBound + d), upper = (range.lowerBound + d)..<range.upperBound
                let keep = p & d == 0 ? lower : upper
                halving.append(Exchange(to: p ^ d, sending: keep == lower ? upper : lower, from: p ^ d, receiving: keep, adds: true))
                range = keep
                d /= 2
            }
            let doubling = halving.reversed().map { Exchange(to: $0.to, sending: $0.receiving, from: $0.from, receiving: $0.sending, adds: false) }
            return halving + doubling
        }
    }

    /// The members member `p` exchanges with, each once.
    static func peers(position p: Int, size n: Int, _ algorithm: AllReduce) -> [Int] { peers(of: exchanges(position: p, size: n, algorithm)) }

    /// The members `exchanges` are with, each once, in the order they first come.
    static func peers(of exchanges: [Exchange]) -> [Int] {
        var seen: [Int] = []
        for e in exchanges { for q in [e.to, e.from] where !seen.contains(q) { seen.append(q) } }
        return seen
    }

    /// Sums `vector` with the other members' of a ring of `n`, by a member's `exchanges`. `send` passes a phase's
    /// values to the member at a position; `receive` hands a phase's values from the member expected to send them
    /// to its second argument (either throws when the sum is given up).
    static func run(_ vector: inout [Float], size n: Int, exchanges: [Exchange], send: (Int, Int, ArraySlice<Float>) throws -> Void,
                    receive: (Int, (UnsafeBufferPointer<Float>) throws -> Void) throws -> Void) throws {
        let length = vector.count
        func values(_ chunks: Range<Int>) -> Range<Int> {
            bounds(chunk: chunks.lowerBound, size: n, length: length).lowerBound..<bounds(chunk: chunks.upperBound - 1, size: n, length: length).upperBound
        }
        for (phase, exchange) in exchanges.enumerated() {
            try send(phase, exchange.to, vector[values(exchange.sending)])
            let range = values(exchange.receiving)
            try receive(phase) { incoming in
                guard incoming.count == range.count else {
                    throw ClusterError("ring chunk \(phase) has \(incoming.count) values, \(range.count) expected")
                }
                guard let x = incoming.baseAddress else { return }
                vector.withUnsafeMutableBufferPointer { v in
                    let y = v.baseAddress! + range.lowerBound
                    if exchange.adds { BLAS.add(x, into: y, count: range.count) } else { y.update(from: x, count: range.count) }
                }
            }
        }
    }

    /// One step of a replica from the reduced vector (gradient, then state), the same on every member, so that
    /// all replicas stay bit-identical. False, and nothing changed, when the step would leave the model
    /// non-finite: the ring then stops, as a parameter server's run does.
    static func step(_ update: ParameterUpdate, reduced: [Float], stepsPerEpoch: Int, totalSteps: Int) -> Bool {
        let network = update.network, p = network.parameterCount
        precondition(reduced.count == p + network.state.count)
        reduced.withUnsafeBufferPointer { r in
            network.gradients.base.update(from: r.baseAddress!, count: p)
            if network.state.count > 0 { network.state.base.update(from: r.baseAddress! + p, count: network.state.count) }
        }
        return update.applyIfFinite(stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
    }
}
