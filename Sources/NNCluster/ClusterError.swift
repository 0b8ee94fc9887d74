/// A failure of the cluster layer: a transport, the coordinator's run, a worker's session, a rejected result.
public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
