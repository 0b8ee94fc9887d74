import ArgumentParser
import CNNSystem
import Foundation
import NNCluster

/// `torchrun` for nn under a scheduler: every process of the job runs `nn cluster` with the same options, and
/// each takes its part from the environment: rank 0 coordinates, the others are its workers.
public struct ClusterCommand: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Run one process of a job started by Slurm (srun), Open MPI (mpirun) or by hand: rank 0 coordinates, the others work.",
        discussion: """
            The rank and the job's size come from, in this order: Slurm (SLURM_PROCID, SLURM_NTASKS, and the node \
            list for rank 0's host), Open MPI (OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE), or NN_RANK, NN_WORLD_SIZE \
            and NN_COORDINATOR=HOST:PORT. A job on one host uses loopback; across hosts rank 0 binds every interface, \
            which takes --keys (or --insecure among the coordinator's options). Every option not listed here goes to \
            the coordinator (model, optimizer, batch per worker, epochs, --out, --metrics, --run-dir, or --config FILE \
            for a federated experiment, whose clients the workers share evenly).
            """)

    @Option(help: ArgumentHelp("Rank 0's host (and port) as the other ranks reach it, when the environment does not say.", valueName: "host[:port]"))
    var coordinator: String?

    @Option(help: "Port of rank 0 (default: NN_COORDINATOR's, under Slurm 20000 + job id mod 20000, else 5555).")
    var port: Int?

    @Option(help: ArgumentHelp("Folder with the job's CURVE keys: coordinator.key(_secret) and worker.key(_secret), from `nn keygen` (one worker pair for the whole job).", valueName: "folder"),
            completion: .directory)
    var keys: String?

    @Option(help: "Serve each process's Prometheus metrics: rank r at port PORT + r (loopback; see nn coordinator --help).")
    var metricsPort: Int?

    @Option(help: "Threads each worker computes its share of a step on (nn worker --batch-threads), e.g. the CPUs of its task.")
    var batchThreads: Int = 1

    public func validate() throws { try BatchThreads.validate(batchThreads) }

    @OptionGroup var dataOptions: DataOptions

    @Argument(parsing: .allUnrecognized, help: "Options for the coordinator.")
    var coordinatorOptions: [String] = []

    public func run() async throws {
        let role = try ClusterRole.discover(environment: ProcessInfo.processInfo.environment, coordinator: coordinator, port: port)
        nn_line_buffer_stdout()
        print("nn cluster: rank \(role.rank) of \(role.worldSize) (from \(role.source.rawValue)); coordinator at \(role.connectEndpoint)")
        let monitoring = metricsPort.map { ["--metrics-port", String($0 + role.rank)] } ?? []
        if role.isCoordinator {
            let keyArguments = keys.map { ["--key", "\($0)/coordinator.key_secret", "--allow", "\($0)/worker.key"] } ?? []
            let command = try CoordinatorCommand.parse(["--bind", role.bindEndpoint, "--workers", String(role.workers)]
                                                       + dataOptions.arguments + keyArguments + monitoring + coordinatorOptions)
            try await command.run()
        } else {
            // Workers load the experiment's data set, when there is one.
            let experiment = try CoordinatorCommand.parse(["--workers", String(role.workers)] + coordinatorOptions).experimentOptions.load()
            let dataArguments = try experiment.map { try dataOptions.fixing($0).arguments } ?? dataOptions.arguments
            let keyArguments = keys.map { ["--key", "\($0)/worker.key_secret", "--server-key", "\($0)/coordinator.key"] } ?? []
            let command = try WorkerCommand.parse(["--connect", role.connectEndpoint, "--name", "rank-\(role.rank)"] + dataArguments
                                               + BatchThreads.arguments(batchThreads) + keyArguments + monitoring)
            try await command.run()
        }
    }
}
