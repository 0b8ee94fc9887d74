import Foundation

/// Key pairs for one run's own processes (a launcher's, a benchmark's): a coordinator's and one per worker, in
/// a private temporary folder that `remove()` deletes. Every connection of such a run is encrypted, and only
/// its own workers are admitted.
public struct ThrowawayKeys: Sendable {
    public let folder: String

    public init(workers: Int) throws {
        var template = Array("\(NSTemporaryDirectory())/nn-keys-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ClusterError("cannot make a private folder for the run's keys") }
        folder = String(cString: made)
        try CurveKeyPair.generate().write(to: folder, name: "coordinator")
        for i in 0..<workers { try CurveKeyPair.generate().write(to: workerFolder, name: "worker-\(i)") }
    }

    private var workerFolder: String { "\(folder)/workers" }

    /// `nn coordinator` options that use these keys.
    public var coordinatorArguments: [String] { ["--key", "\(folder)/coordinator.key_secret", "--allow", workerFolder] }

    /// `nn worker` options for worker `index`.
    public func workerArguments(_ index: Int) -> [String] {
        ["--key", "\(workerFolder)/worker-\(index).key_secret", "--server-key", "\(folder)/coordinator.key"]
    }

    /// The coordinator's side, for a server in this process.
    public func serverSecurity() throws -> ServerSecurity {
        ServerSecurity(keys: try CurveKeyPair.load(secret: "\(folder)/coordinator.key_secret"), allowlist: try Allowlist.load(workerFolder))
    }

    public func remove() { try? FileManager.default.removeItem(atPath: folder) }
}
