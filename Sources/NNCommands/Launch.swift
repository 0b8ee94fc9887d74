import ArgumentParser
import Foundation
import NNCluster
import NNData

/// `torchrun --nproc_per_node` for nn: a coordinator and N workers on this host, their output merged with a
/// prefix per process, all stopped together.
public struct Launch: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Run a coordinator and N workers on this machine in one command.",
        discussion: """
            Every option not listed here goes to the coordinator (see `nn coordinator --help`): model, optimizer, \
            batch (per worker), epochs, seed, --out, --metrics, timeouts, or --config FILE for a federated \
            experiment (the workers then host an even share of its clients each). On Ctrl-C, or when the coordinator \
            fails, every process is stopped; a worker that dies is handled by the coordinator, which hands its \
            work to the others (or stops below --min-workers).
            """)

    @Option(help: "Worker processes to start.")
    var workers: Int

    @Option(help: "Loopback port for the coordinator (default: a free one).")
    var port: Int?

    @Flag(help: "Run without CURVE encryption (by default the launcher makes throwaway keys for its processes).")
    var insecure = false

    @Option(help: "Threads each worker computes its share of a step on (nn worker --batch-threads).")
    var batchThreads: Int = 1

    @Flag(inversion: .prefixedNo, help: "Give each worker CPUs of its own (nn worker --cpus), when there are enough for every worker's batch threads.")
    var pin = true

    @OptionGroup var dataOptions: DataOptions

    @Argument(parsing: .allUnrecognized, help: "Options for the coordinator.")
    var coordinatorOptions: [String] = []

    public func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        if let port, !(1...65535).contains(port) { throw ValidationError("--port must be 1…65535") }
        try BatchThreads.validate(batchThreads)
        // Fail here, with the coordinator's own message, rather than in a child process.
        let coordinator = try CoordinatorCommand.parse(try coordinatorArguments(port: 1))
        if coordinator.security.key != nil || coordinator.security.insecure {
            throw ValidationError("the launcher makes its own keys; drop --key, --allow and --insecure from the coordinator's options (nn launch --insecure runs without encryption)")
        }
    }

    private func coordinatorArguments(port: Int) throws -> [String] {
        ["--bind", "tcp://127.0.0.1:\(port)", "--workers", String(workers)] + dataOptions.arguments + coordinatorOptions
    }

    public func run() async throws {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let port = try self.port ?? freeLoopbackPort()
        // Workers load the experiment's data set, when there is one.
        let experiment = try CoordinatorCommand.parse(try coordinatorArguments(port: port)).experimentOptions.load()
        let dataArguments = try experiment.map { try dataOptions.fixing($0).arguments } ?? dataOptions.arguments
        let keys = insecure ? nil : try ThrowawayKeys(workers: workers)
        defer { keys?.remove() }
        let group = ProcessGroup()
        try group.start(label: "coordinator", executable: executable,
                        arguments: ["coordinator"] + (try coordinatorArguments(port: port)) + (keys?.coordinatorArguments ?? []))
        let cpus = pin ? CPUPinning.shares(workers: workers, threads: batchThreads) : nil
        for i in 0..<workers {
            try group.start(label: "worker \(i)", executable: executable,
                            arguments: ["worker", "--connect", "tcp://127.0.0.1:\(port)", "--name", "worker-\(i)"] + dataArguments + BatchThreads.arguments(batchThreads)
                                       + CPUPinning.arguments(cpus?[i]) + (keys?.workerArguments(i) ?? []))
        }
        let status = group.waitForCoordinator()
        guard status == 0 else { throw ExitCode(status) }
    }
}

/// A free TCP port on 127.0.0.1, found by binding port 0.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ValidationError("cannot create a socket to find a free port") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw ValidationError("cannot find a free loopback port; pass --port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Child processes whose output is merged line by line with a prefix, and which are all stopped together:
/// on SIGINT or SIGTERM to the launcher, when the coordinator exits, and (through the parent-death signal the
/// children set) when the launcher itself is killed.
final class ProcessGroup: @unchecked Sendable {
    private var children: [(label: String, process: Process)] = []
    private let outputLock = NSLock()
    private var signalSources: [DispatchSourceSignal] = []
    private let readers = DispatchGroup()

    init() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                self?.emit("launcher", "signal \(sig): stopping every process")
                self?.stopAll()
            }
            source.resume()
            signalSources.append(source)
        }
    }

    func start(label: String, executable: String, arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NN_LAUNCHER_PID"] = String(getpid())
        environment["OPENBLAS_NUM_THREADS"] = environment["OPENBLAS_NUM_THREADS"] ?? "1"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        children.append((label, process))
        readers.enter()
        let handle = pipe.fileHandleForReading
        DispatchQueue.global().async { [self] in
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: 0x0A) {
                    emit(label, String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                    pending.removeSubrange(pending.startIndex...newline)
                }
            }
            if !pending.isEmpty { emit(label, String(decoding: pending, as: UTF8.self)) }
            readers.leave()
        }
    }

    private func emit(_ label: String, _ line: String) {
        outputLock.lock()
        FileHandle.standardOutput.write(Data("[\(label)] \(line)\n".utf8))
        outputLock.unlock()
    }

    /// Waits for the coordinator (the first child), gives the workers a moment to take its shutdown, stops
    /// whatever still runs, and returns the coordinator's exit status.
    func waitForCoordinator() -> Int32 {
        let coordinator = children[0].process
        coordinator.waitUntilExit()
        let grace = Date().addingTimeInterval(5)
        while children.contains(where: { $0.process.isRunning }) && Date() < grace { usleep(50_000) }
        stopAll()
        for child in children { child.process.waitUntilExit() }
        _ = readers.wait(timeout: .now() + 5)
        for child in children.dropFirst() where child.process.terminationStatus != 0 {
            let how = child.process.terminationReason == .uncaughtSignal ? "was stopped by signal" : "exited with status"
            emit("launcher", "\(child.label) \(how) \(child.process.terminationStatus)")
        }
        return coordinator.terminationReason == .uncaughtSignal ? 128 + coordinator.terminationStatus : coordinator.terminationStatus
    }

    /// SIGTERM to every running child, SIGKILL to those still running two seconds later.
    func stopAll() {
        let running = children.filter { $0.process.isRunning }
        for child in running { kill(child.process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(2)
        while running.contains(where: { $0.process.isRunning }) && Date() < deadline { usleep(20_000) }
        for child in running where child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
    }
}
