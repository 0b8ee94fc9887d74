import NNCore

/// Sums a vector over a ring of n workers (Patarasuk and Yuan 2009) in 2(n − 1) sends of about 1/n of it each:
/// n − 1 reduce-scatter steps leave worker p with the full sum of chunk (p + 1) mod n, and n − 1 all-gather
/// steps pass the summed chunks round. Whatever n is, each worker sends and receives 2(n − 1)/n of the vector,
/// so a link's traffic does not grow with the ring (a parameter server's does, n-fold).
enum RingAllReduce {
    /// Chunk `chunk` of a vector of `length` values cut into `size` near-equal chunks.
    static func bounds(chunk: Int, size: Int, length: Int) -> Range<Int> { (chunk * length / size)..<((chunk + 1) * length / size) }

    /// Sums `vector` with the ring's. `send` passes a phase's chunk to the successor; `receive` returns the
    /// predecessor's chunk for a phase (either throws when the ring is given up).
    static func run(_ vector: inout [Float], position p: Int, size n: Int, send: (Int, ArraySlice<Float>) throws -> Void,
                    receive: (Int) throws -> [Float]) throws {
        let length = vector.count
        func exchange(_ phase: Int, sending: Int, receiving: Int, combine: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void) throws {
            try send(phase, vector[bounds(chunk: sending, size: n, length: length)])
            let incoming = try receive(phase)
            let range = bounds(chunk: receiving, size: n, length: length)
            guard incoming.count == range.count else {
                throw ClusterError("ring chunk \(phase) has \(incoming.count) values, \(range.count) expected")
            }
            vector.withUnsafeMutableBufferPointer { v in incoming.withUnsafeBufferPointer { combine(v.baseAddress! + range.lowerBound, $0.baseAddress!, range.count) } }
        }
        for s in 0..<(n - 1) {
            try exchange(s, sending: (p - s + n) % n, receiving: (p - s - 1 + n) % n) { y, x, count in BLAS.add(x, into: y, count: count) }
        }
        for s in 0..<(n - 1) {
            try exchange(n - 1 + s, sending: (p + 1 - s + n) % n, receiving: (p - s + n) % n) { y, x, count in
                y.update(from: x, count: count)
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
