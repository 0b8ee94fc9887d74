import Foundation

/// Asks a coordinator to end its run after the current round, as it ends a finished one: workers told to
/// shut down, the checkpoint written. A scheduler's SIGTERM or a Ctrl-C sets it; another thread may too.
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var why: String?

    public init() {}

    public func request(_ reason: String) { lock.lock(); if why == nil { why = reason }; lock.unlock() }

    /// Why the run was asked to stop; nil while it was not.
    public var reason: String? { lock.lock(); defer { lock.unlock() }; return why }
}
