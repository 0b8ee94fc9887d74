/// How a round's client models become one model, coordinate by coordinate (before any server optimizer step).
public protocol AggregationRule: Sendable {
    /// Writes the combination of `models` (each `count` floats; `weights` are their sample shares, summing to 1)
    /// into `out`.
    func combine(_ models: [[Float]], weights: [Float], count: Int, into out: UnsafeMutablePointer<Float>)
}

extension Array where Element == [Float] {
    /// Calls `body` with a buffer pointer to each array, all valid at once.
    func withUnsafeBuffers<R>(_ body: ([UnsafeBufferPointer<Float>]) throws -> R) rethrows -> R {
        func nest(_ i: Int, _ acc: [UnsafeBufferPointer<Float>]) throws -> R {
            if i == count { return try body(acc) }
            return try self[i].withUnsafeBufferPointer { try nest(i + 1, acc + [$0]) }
        }
        return try nest(0, [])
    }
}

extension [UnsafeBufferPointer<Float>] {
    /// Coordinate `i` of every model, sorted into `column` (room for `count` values). Insertion sort: a handful
    /// of values per coordinate, and no allocation.
    func sortColumn(_ i: Int, into column: UnsafeMutablePointer<Float>) {
        for k in indices {
            let v = self[k][i]
            var j = k
            while j > 0 && column[j - 1] > v { column[j] = column[j - 1]; j -= 1 }
            column[j] = v
        }
    }
}
