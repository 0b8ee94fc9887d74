/// A failure of the cluster layer: a transport, the coordinator's run, a worker's session, a rejected result.
public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A result with NaN or infinite values: a bad peer, or a model that diverged.
public struct NonFiniteResult: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
