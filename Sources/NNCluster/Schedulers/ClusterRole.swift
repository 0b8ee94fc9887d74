import Foundation

/// Where this process stands in a job that a scheduler (or its user) started: its rank, how many processes the
/// job has, and where rank 0, the coordinator, listens. Read from the environment, as torchrun does, in this
/// order: Slurm (`SLURM_PROCID`, `SLURM_NTASKS`, the step's or job's node list), Open MPI
/// (`OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`), then nn's own contract (`NN_RANK`, `NN_WORLD_SIZE`,
/// `NN_COORDINATOR=HOST:PORT`). `NN_COORDINATOR` (or a flag) also names rank 0's host for the other two.
public struct ClusterRole: Equatable, Sendable {
    public enum Source: String, Sendable { case slurm = "Slurm", openMPI = "Open MPI", nn = "NN_RANK" }
    public let source: Source
    public let rank: Int
    public let worldSize: Int
    /// Rank 0's host as the other ranks reach it; 127.0.0.1 when the whole job runs on one host.
    public let coordinatorHost: String
    public let port: Int

    public var isCoordinator: Bool { rank == 0 }
    public var workers: Int { worldSize - 1 }
    public var isLocal: Bool { ["127.0.0.1", "localhost", "::1"].contains(coordinatorHost) }
    /// What rank 0 binds: loopback for a one-host job, every interface otherwise.
    public var bindEndpoint: String { "tcp://\(isLocal ? "127.0.0.1" : "*"):\(port)" }
    public var connectEndpoint: String { "tcp://\(coordinatorHost.contains(":") ? "[\(coordinatorHost)]" : coordinatorHost):\(port)" }

    /// Default port: `5555`; under Slurm one derived from the job id, so that jobs sharing a node do not collide.
    static func defaultPort(_ environment: [String: String]) -> Int {
        environment["SLURM_JOB_ID"].flatMap(Int.init).map { 20_000 + $0 % 20_000 } ?? 5555
    }

    /// The role from `environment`. `coordinator` ("HOST" or "HOST:PORT", overriding `NN_COORDINATOR`) and `port`
    /// come from flags; `hostnames` expands a Slurm node list (`scontrol show hostnames`).
    public static func discover(environment: [String: String], coordinator: String? = nil, port: Int? = nil,
                                hostnames: (String) throws -> [String] = SlurmNodeList.hostnames) throws -> ClusterRole {
        func number(_ name: String) throws -> Int? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else { throw ClusterError("\(name)=\(text) is not a number") }
            return value
        }
        let named = try (coordinator ?? environment["NN_COORDINATOR"]).map(parseAddress)
        let nnRank = try number("NN_RANK"), nnSize = try number("NN_WORLD_SIZE")
        let source: Source, rank: Int, size: Int
        var host = named?.host
        if let slurmRank = try number("SLURM_PROCID") {
            guard let slurmSize = try number("SLURM_NTASKS") ?? number("SLURM_NPROCS") else {
                throw ClusterError("SLURM_PROCID is set but SLURM_NTASKS is not: run nn cluster under srun (or sbatch with srun)")
            }
            (source, rank, size) = (.slurm, slurmRank, slurmSize)
            if host == nil {
                if try number("SLURM_STEP_NUM_NODES") ?? number("SLURM_NNODES") == 1 {
                    host = "127.0.0.1"
                } else {
                    guard let list = environment["SLURM_STEP_NODELIST"] ?? environment["SLURM_JOB_NODELIST"] else {
                        throw ClusterError("Slurm gives no node list (SLURM_STEP_NODELIST, SLURM_JOB_NODELIST): give --coordinator HOST")
                    }
                    guard let first = try hostnames(list).first else { throw ClusterError("the Slurm node list '\(list)' names no host") }
                    host = first
                }
            }
        } else if let mpiRank = try number("OMPI_COMM_WORLD_RANK") {
            guard let mpiSize = try number("OMPI_COMM_WORLD_SIZE") else { throw ClusterError("OMPI_COMM_WORLD_RANK is set but OMPI_COMM_WORLD_SIZE is not") }
            (source, rank, size) = (.openMPI, mpiRank, mpiSize)
            if host == nil {
                guard try number("OMPI_COMM_WORLD_LOCAL_SIZE") == mpiSize else {
                    throw ClusterError("the Open MPI job spans several hosts and Open MPI does not say where rank 0 runs: give --coordinator HOST or NN_COORDINATOR")
                }
                host = "127.0.0.1"
            }
        } else if let nnRank {
            guard let nnSize else { throw ClusterError("NN_RANK is set but NN_WORLD_SIZE is not") }
            (source, rank, size) = (.nn, nnRank, nnSize)
            guard host != nil else { throw ClusterError("NN_RANK is set but NN_COORDINATOR (HOST:PORT of rank 0) is not") }
        } else {
            throw ClusterError("no rank in the environment: run under Slurm (srun), Open MPI (mpirun), or set NN_RANK, NN_WORLD_SIZE and NN_COORDINATOR")
        }
        // nn's own variables may accompany a scheduler's, but must agree with it.
        if source != .nn, let nnRank, nnRank != rank { throw ClusterError("NN_RANK=\(nnRank) contradicts \(source.rawValue)'s rank \(rank)") }
        if source != .nn, let nnSize, nnSize != size { throw ClusterError("NN_WORLD_SIZE=\(nnSize) contradicts \(source.rawValue)'s \(size) processes") }
        guard size >= 2 else { throw ClusterError("a job of \(size) process\(size == 1 ? "" : "es") has no worker: start at least 2 (a coordinator and a worker)") }
        guard (0..<size).contains(rank) else { throw ClusterError("rank \(rank) is outside the job's 0…\(size - 1)") }
        let chosen = port ?? named?.port ?? defaultPort(environment)
        guard (1...65535).contains(chosen) else { throw ClusterError("port \(chosen) is outside 1…65535") }
        return ClusterRole(source: source, rank: rank, worldSize: size, coordinatorHost: host!, port: chosen)
    }

    /// "HOST", "HOST:PORT" or "[IPv6]:PORT".
    static func parseAddress(_ text: String) throws -> (host: String, port: Int?) {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { throw ClusterError("'\(text)' is not HOST or HOST:PORT") }
            return (host, rest.isEmpty ? nil : try port(String(rest.dropFirst()), in: text))
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard !text.isEmpty, parts.count <= 2, !parts[0].isEmpty else { throw ClusterError("'\(text)' is not HOST or HOST:PORT") }
        return (String(parts[0]), parts.count == 2 ? try port(String(parts[1]), in: text) : nil)
    }

    private static func port(_ text: String, in address: String) throws -> Int {
        guard let port = Int(text), (1...65535).contains(port) else { throw ClusterError("'\(address)': the port must be 1…65535") }
        return port
    }
}

/// Slurm's compressed node lists ("node[1-3,7]"), expanded by Slurm itself.
public enum SlurmNodeList {
    public static func hostnames(_ list: String) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["scontrol", "show", "hostnames", list]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { throw ClusterError("cannot run scontrol to expand the node list '\(list)': \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ClusterError("scontrol show hostnames '\(list)' failed (exit \(process.terminationStatus))") }
        return String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).map(String.init)
    }
}
