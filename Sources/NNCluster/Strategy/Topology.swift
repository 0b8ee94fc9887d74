/// How the workers of synchronous SGD sum their gradients.
public enum Topology: String, Sendable, CaseIterable {
    /// Through the coordinator: it sends every worker the model and takes every gradient, so its link carries
    /// n models and n gradients a step.
    case parameterServer = "server"
    /// Among themselves, in a ring all-reduce; each steps its own replica, and the coordinator only hands out
    /// samples for a round of several steps and takes one replica a round. Per-link traffic does not grow with n.
    case ring
    /// As `ring`, with the members summing by recursive halving and doubling when they are a power of two (and by
    /// the ring's algorithm otherwise): the same bytes in 2·log₂ n exchanges instead of 2(n − 1), for links where
    /// each exchange's wait counts.
    case halvingDoubling = "halving-doubling"

    /// Whether the workers sum among themselves, each stepping a replica (a "ring run", whatever the algorithm).
    public var sumsAmongWorkers: Bool { self != .parameterServer }
}
