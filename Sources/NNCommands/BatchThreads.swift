import ArgumentParser

/// `--batch-threads`, of `nn train` and `nn worker`.
enum BatchThreads {
    static let limit = 256

    static func validate(_ threads: Int) throws {
        guard (1...limit).contains(threads) else { throw ValidationError("--batch-threads must be 1…\(limit)") }
    }
}
