import ArgumentParser
import CNNSystem
import Foundation

/// `nn worker --cpus`, which `nn launch` and `nn bench` give each worker of a host: CPUs of its own. Unpinned,
/// the scheduler tends to run the workers of a ring, which wake each other every step, one after the other on
/// one core while the other idles; pinned, they compute side by side.
enum CPUPinning {
    /// The CPUs of a list such as "0,2-3", in the order given.
    static func parse(_ text: String) throws -> [Int] {
        var cpus: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            guard (1...2).contains(bounds.count), let first = bounds.first!, let last = bounds.last!, 0 <= first, first <= last, last < 1024 else {
                throw ValidationError("--cpus takes CPU numbers and ranges such as 0,2-3; \"\(part)\" is neither")
            }
            cpus += Array(first...last)
        }
        guard Set(cpus).count == cpus.count else { throw ValidationError("--cpus names a CPU twice: \(text)") }
        return cpus
    }

    /// The CPUs this process may run on (all of them when the system cannot tell).
    static var allowed: [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let count = Int(nn_allowed_cpus(&cpus, Int32(cpus.count)))
        return count > 0 ? cpus.prefix(min(count, cpus.count)).map(Int.init) : Array(0..<ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Restricts this process, every thread of it, to `cpus`.
    static func pin(_ cpus: [Int]) throws {
        let numbers = cpus.map { Int32($0) }
        let error = nn_pin_to_cpus(numbers, Int32(numbers.count))
        guard error == 0 else { throw ValidationError("cannot run on CPUs \(cpus.map(String.init).joined(separator: ",")): \(String(cString: strerror(error)))") }
    }

    /// Each of `workers` workers' CPUs (`threads` each, from the allowed ones in order), or nil when there are
    /// too few for each to have its own.
    static func shares(workers: Int, threads: Int) -> [[Int]]? {
        let cpus = allowed
        guard workers * threads <= cpus.count else { return nil }
        return (0..<workers).map { Array(cpus[($0 * threads)..<(($0 + 1) * threads)]) }
    }

    /// A worker's arguments for `cpus`.
    static func arguments(_ cpus: [Int]?) -> [String] { cpus.map { ["--cpus", $0.map(String.init).joined(separator: ",")] } ?? [] }
}
