/// How the workers of synchronous SGD sum their gradients.
public enum Topology: String, Sendable, CaseIterable {
    /// Through the coordinator: it sends every worker the model and takes every gradient, so its link carries
    /// n models and n gradients a step.
    case parameterServer = "server"
    /// Among themselves, in a ring all-reduce; each steps its own replica, and the coordinator only hands out
    /// samples for a round of several steps and takes one replica a round. Per-link traffic does not grow with n.
    case ring
}
