import ArgumentParser
import Foundation
import Logging

/// `--batch-threads`, of `nn train` and `nn worker`, which `nn launch` and `nn cluster` pass to their workers.
enum BatchThreads {
    static let limit = 256

    static func validate(_ threads: Int) throws {
        guard (1...limit).contains(threads) else { throw ValidationError("--batch-threads must be 1…\(limit)") }
    }

    /// Warns when the batch threads, each with `blasThreads` OpenBLAS threads, outnumber the cores this process may
    /// run on (fewer than the machine's when it is pinned): they then take turns, and the run is slower than with
    /// one OpenBLAS thread each.
    static func warnIfOversubscribed(_ threads: Int, blasThreads: Int, logger: Logger) {
        let cores = CPUPinning.allowed.count
        guard threads > 1, threads * blasThreads > cores else { return }
        logger.warning("--batch-threads \(threads) with --threads \(blasThreads) runs \(threads * blasThreads) threads on \(cores) core\(cores == 1 ? "" : "s"); give --threads 1 with --batch-threads, and a core for each")
    }

    /// A worker's arguments for `threads` (none for the default).
    static func arguments(_ threads: Int) -> [String] { threads == 1 ? [] : ["--batch-threads", String(threads)] }
}
