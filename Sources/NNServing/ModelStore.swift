import Foundation
import Logging
import NNCore

/// The model being served and its file. A new checkpoint at the same path (trainers write atomically, by rename)
/// or SIGHUP loads it beside the old one, then swaps: requests already running finish on the model they started
/// with, none waits or fails. A file that does not load leaves the old model serving, and the log says why.
public final class ModelStore: @unchecked Sendable {
    public let path: String
    private let logger: Logger
    private let lock = NSLock()
    private var model: ServedModel
    private var loadedFile: FileIdentity?

    /// Loads `path`; an unreadable checkpoint is the caller's error to report.
    public init(path: String, logger: Logger) throws {
        self.path = path
        self.logger = logger
        let identity = FileIdentity(path: path)
        model = ServedModel(try Checkpoint.load(from: path), path: path)
        loadedFile = identity
    }

    public var current: ServedModel { lock.withLock { model } }

    /// Loads the file again if it changed since the last load (`force`: in any case).
    public func reloadIfChanged(force: Bool = false, reason: String) {
        let identity = FileIdentity(path: path)
        guard force || identity != lock.withLock({ loadedFile }) else { return }
        do {
            let fresh = ServedModel(try Checkpoint.load(from: path), path: path)
            lock.withLock { model = fresh; loadedFile = identity }
            let accuracy = fresh.metadata["test_accuracy"].map { ", test accuracy \($0)" } ?? ""
            logger.notice("reloaded \(path) (\(reason)): \(fresh.spec.description), \(fresh.parameterCount) parameters\(accuracy)")
        } catch {
            lock.withLock { loadedFile = identity }
            logger.error("cannot reload \(path) (\(reason)), still serving the model loaded at \(ISO8601DateFormatter().string(from: current.loadedAt)): \(error)")
        }
    }

    /// Checks the file every `interval` until the task is cancelled.
    public func watch(every interval: Duration = .milliseconds(500)) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            reloadIfChanged(reason: "the file changed")
        }
    }
}

/// Which file a path names and its last change: a rename over the path gives a new inode, an edit in place a new
/// modification time or size.
struct FileIdentity: Equatable {
    var device: UInt64, inode: UInt64, size: Int64, modified: timespec

    init?(path: String) {
        var s = stat()
        guard stat(path, &s) == 0 else { return nil }
        device = UInt64(s.st_dev); inode = UInt64(s.st_ino); size = Int64(s.st_size); modified = s.st_mtim
    }

    static func == (a: FileIdentity, b: FileIdentity) -> Bool {
        a.device == b.device && a.inode == b.inode && a.size == b.size
            && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
    }
}
