import Foundation

/// Starts `count` worker processes connected to a coordinator's endpoint (a benchmark's workers), with the
/// CURVE keys of `keys` when given.
public typealias WorkerLauncher = (_ count: Int, _ endpoint: String, _ keys: ThrowawayKeys?) throws -> [Process]

/// Waits for workers that got their shutdown, and stops any still running when the caller leaves.
struct WorkerProcesses {
    let processes: [Process]
    func stop() { for p in processes where p.isRunning { p.terminate() } }
    func wait() { for p in processes { p.waitUntilExit() } }
}
