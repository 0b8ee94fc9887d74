import ArgumentParser

/// `--batch-threads`, of `nn train` and `nn worker`, which `nn launch` and `nn cluster` pass to their workers.
enum BatchThreads {
    static let limit = 256

    static func validate(_ threads: Int) throws {
        guard (1...limit).contains(threads) else { throw ValidationError("--batch-threads must be 1…\(limit)") }
    }

    /// A worker's arguments for `threads` (none for the default).
    static func arguments(_ threads: Int) -> [String] { threads == 1 ? [] : ["--batch-threads", String(threads)] }
}
