import Foundation

/// xoshiro256** seeded through SplitMix64: fast, and identical on every platform for a given seed,
/// which the standard library's generators do not promise.
public struct SeededRandom: Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(); s1 = splitMix(); s2 = splitMix(); s3 = splitMix()
    }

    /// A generator for a sub-stream (an epoch, a layer, a client) that does not overlap the parent's use of `seed`.
    public init(seed: UInt64, stream: UInt64...) {
        var mixed = seed
        for s in stream {
            var g = SeededRandom(seed: mixed ^ (s &* 0xD1B5_4A32_D192_ED03))
            mixed = g.next()
        }
        self.init(seed: mixed)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 24 bits, the precision of a Float.
    @inline(__always)
    public mutating func nextUnitFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, bound) without modulo bias (Lemire's multiply-shift with rejection).
    public mutating func next(below bound: Int) -> Int {
        precondition(bound > 0)
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// Standard normal sample (Box–Muller, one value per call).
    public mutating func nextGaussian() -> Float {
        let u1 = Double(next() >> 11) * 0x1.0p-53
        let u2 = Double(next() >> 11) * 0x1.0p-53
        let r = (-2.0 * log(1.0 - u1)).squareRoot()
        return Float(r * cos(2.0 * Double.pi * u2))
    }

    /// Fisher–Yates shuffle.
    public mutating func shuffle<T>(_ array: inout [T]) {
        guard array.count > 1 else { return }
        for i in stride(from: array.count - 1, to: 0, by: -1) {
            array.swapAt(i, next(below: i + 1))
        }
    }
}

/// The order in which an epoch visits the training samples: a seeded shuffle, the same in every process.
public func epochOrder(seed: UInt64, epoch: Int, count: Int) -> [Int] {
    var order = Array(0..<count)
    var rng = SeededRandom(seed: seed, stream: 0x5348_5546, UInt64(epoch))
    rng.shuffle(&order)
    return order
}
