import Foundation
import NNCore
import NNData
import TestSupport
import Testing

/// A child process whose output goes to a file, so a test can read it at any time.
final class Child {
    let process = Process()
    let log: String

    init(_ executable: String, _ arguments: [String], log: String) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)!
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Waits up to `seconds` for the exit; true if it exited.
    func wait(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return !process.isRunning
    }

    /// The exit status; nil while it runs (reading a running process's status would trap).
    var status: Int32? { process.isRunning ? nil : process.terminationStatus }
    /// Exited, with a non-zero status.
    var failed: Bool { status.map { $0 != 0 } ?? false }

    func kill(_ signal: Int32 = SIGKILL) { Glibc.kill(process.processIdentifier, signal) }

    deinit { if process.isRunning { kill() } }
}

/// A loopback port nothing listens on now.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() && Date() < deadline { usleep(20_000) }
    return condition()
}

struct MissingMetrics: Error {}

func lastAccuracy(_ metrics: String) throws -> Double {
    let lines = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n")
    guard let line = lines.last, let last = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
          let accuracy = last["test_accuracy"] as? Double else { throw MissingMetrics() }
    return accuracy
}

/// Real processes on loopback: the coordinator, workers, failures.
@Suite(.serialized) struct ClusterCommandTests {
    let coordinatorPath = NNProcess.path("nn-coordinator")
    let workerPath = NNProcess.path("nn-worker")

    func coordinator(port: Int, workers: Int, dir: String, name: String, extra: [String] = []) throws -> Child {
        try Child(coordinatorPath, ["--bind", "tcp://127.0.0.1:\(port)", "--workers", "\(workers)", "--model", "784-64-10",
                                    "--batch", "32", "--epochs", "3", "--seed", "2", "--heartbeat", "0.1", "--timeout", "1",
                                    "--metrics", "\(dir)/\(name).jsonl", "--out", "\(dir)/\(name).safetensors"] + extra,
                  log: "\(dir)/\(name)-coordinator.log")
    }

    func worker(port: Int, dir: String, name: String, extra: [String] = []) throws -> Child {
        try Child(workerPath, ["--connect", "tcp://127.0.0.1:\(port)", "--name", name] + extra, log: "\(dir)/\(name).log")
    }

    /// A worker killed with SIGKILL after the first epoch: the others finish the run, as well as undisturbed. In a
    /// ring the lost worker's peers wait for its chunks until the coordinator finds it gone and restarts the step
    /// in a ring of the two others.
    @Test(arguments: ["server", "ring"])
    func workerKilledMidRun(topology: String) throws {
        let dir = temporaryDirectory()
        // Undisturbed.
        let port = freePort()
        let quiet = try coordinator(port: port, workers: 3, dir: dir, name: "quiet", extra: ["--topology", topology])
        let quietWorkers = try (0..<3).map { try worker(port: port, dir: dir, name: "quiet-\($0)") }
        #expect(quiet.wait(seconds: 300), "undisturbed run did not finish")
        #expect(quiet.status == 0, "\(quiet.output)")
        for w in quietWorkers { #expect(w.wait(seconds: 10) && w.status == 0) }

        // The same run with worker 1 killed once the first epoch is done.
        let port2 = freePort()
        let run = try coordinator(port: port2, workers: 3, dir: dir, name: "killed", extra: ["--topology", topology])
        let workers = try (0..<3).map { try worker(port: port2, dir: dir, name: "killed-\($0)") }
        #expect(waitUntil(seconds: 300) { FileManager.default.fileExists(atPath: "\(dir)/killed.jsonl") })
        workers[1].kill(SIGKILL)
        #expect(run.wait(seconds: 300), "run with a killed worker did not finish")
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("lost worker killed-1"), "\(run.output)")
        for w in [workers[0], workers[2]] { #expect(w.wait(seconds: 10) && w.status == 0) }
        let undisturbed = try lastAccuracy("\(dir)/quiet.jsonl"), disturbed = try lastAccuracy("\(dir)/killed.jsonl")
        #expect(abs(undisturbed - disturbed) <= 0.005, "accuracy \(disturbed) with a killed worker, \(undisturbed) without")
        #expect(disturbed > 0.9)
        let metrics = try String(contentsOfFile: "\(dir)/killed.jsonl", encoding: .utf8)
        #expect(metrics.contains("\"workers\":2"))
    }

    /// SIGTERM to a worker (a scheduler's preemption): it says it leaves and exits 0 within a second; the
    /// coordinator logs a departure, not a failure, and finishes the run with the others.
    @Test func workerSigtermIsACleanDeparture() throws {
        let dir = temporaryDirectory()
        let port = freePort()
        let run = try coordinator(port: port, workers: 2, dir: dir, name: "run")
        let workers = try (0..<2).map { try worker(port: port, dir: dir, name: "w\($0)") }
        #expect(waitUntil(seconds: 120) { FileManager.default.fileExists(atPath: "\(dir)/run.jsonl") })
        workers[1].kill(SIGTERM)
        let sent = Date()
        #expect(workers[1].wait(seconds: 5) && workers[1].status == 0, "\(workers[1].output)")
        #expect(Date().timeIntervalSince(sent) < 1.5, "took \(Date().timeIntervalSince(sent)) s")
        #expect(workers[1].output.contains("leaving: received SIGTERM"), "\(workers[1].output)")
        #expect(run.wait(seconds: 120) && run.status == 0, "\(run.output)")
        #expect(workers[0].wait(seconds: 10) && workers[0].status == 0, "\(workers[0].output)")
        #expect(run.output.contains("worker w1 (w1#") && run.output.contains("left (w1 is leaving: received SIGTERM)"), "\(run.output)")
        #expect(!run.output.contains("lost worker"), "\(run.output)")
    }

    @Test func coordinatorKilledWorkersExit() throws {
        let dir = temporaryDirectory()
        let port = freePort()
        let run = try coordinator(port: port, workers: 2, dir: dir, name: "run")
        let workers = try (0..<2).map { try worker(port: port, dir: dir, name: "w\($0)", extra: ["--reconnect-timeout", "2"]) }
        #expect(waitUntil(seconds: 300) { FileManager.default.fileExists(atPath: "\(dir)/run.jsonl") })
        run.kill(SIGKILL)
        let killed = Date()
        for w in workers {
            // Silent for the timeout (1 s), then asking to join again for the reconnect timeout (2 s).
            #expect(w.wait(seconds: 10) && w.failed, "worker still running 10 s after the coordinator died")
            #expect(w.output.contains("the coordinator has been silent"), "\(w.output)")
        }
        // Without waiting out the 5 s linger for the hellos it queued to the dead coordinator.
        #expect(Date().timeIntervalSince(killed) < 6.5, "the workers exited \(Date().timeIntervalSince(killed)) s after the coordinator died")
    }

    @Test func unreachableCoordinatorAndRefusedWorker() throws {
        let dir = temporaryDirectory()
        let port = freePort()
        let alone = try worker(port: port, dir: dir, name: "alone", extra: ["--registration-timeout", "1"])
        #expect(alone.wait(seconds: 10))
        #expect(alone.failed)
        #expect(alone.output.contains("no answer from the coordinator"), "\(alone.output)")

        // A worker whose training labels differ from the coordinator's is refused.
        let other = dir + "/other-data"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        let source = DatasetKind.mnist.defaultDirectory()
        for file in DatasetKind.mnist.files {
            try FileManager.default.copyItem(atPath: DatasetKind.mnist.locate(file, in: source)!,
                                             toPath: other + "/" + URL(fileURLWithPath: DatasetKind.mnist.locate(file, in: source)!).lastPathComponent)
        }
        let labelsPath = DatasetKind.mnist.locate(DatasetKind.mnist.trainLabels, in: other)!
        var labels = try AtomicFile.read(labelsPath)
        if Gzip.isCompressed(labels) { labels = try Gzip.decompress(labels) }
        labels.swapAt(8, 9)
        try FileManager.default.removeItem(atPath: labelsPath)
        try AtomicFile.write(labels, to: other + "/" + DatasetKind.mnist.trainLabels.name)

        let port2 = freePort()
        let run = try coordinator(port: port2, workers: 1, dir: dir, name: "run", extra: ["--registration-timeout", "5"])
        let refused = try worker(port: port2, dir: dir, name: "refused", extra: ["--data", other])
        #expect(refused.wait(seconds: 30))
        #expect(refused.failed)
        #expect(refused.output.contains("refused this worker") && refused.output.contains("data differs"), "\(refused.output)")
        #expect(run.wait(seconds: 30))
        #expect(run.failed)
        #expect(run.output.contains("only 0 of 1 workers registered"), "\(run.output)")
    }

    @Test func launchRunsAndStopsEverything() throws {
        let dir = temporaryDirectory()
        let ok = try NNProcess.run(["launch", "--workers", "2", "--model", "784-32-10", "--epochs", "1", "--batch", "64",
                                    "--metrics", dir + "/m.jsonl"])
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
        #expect(ok.stdout.contains("[coordinator] epoch 1/1") && ok.stdout.contains("[worker 1]"), "\(ok.stdout)")
        #expect(try lastAccuracy(dir + "/m.jsonl") > 0.85)

        let bad = try NNProcess.run(["launch", "--workers", "2", "--optimizer", "nope"])
        #expect(bad.status != 0 && bad.stderr.contains("nope"))
        for cpus in ["3-1", "0,0", "x", ""] {
            let refused = try NNProcess.run(["worker", "--connect", "tcp://127.0.0.1:1", "--cpus", cpus])
            #expect(refused.status != 0 && refused.stderr.contains("--cpus"), "--cpus \(cpus): \(refused.stderr)")
        }

        // Killed outright mid-run: the children follow through the parent-death signal.
        let port = freePort()
        let launcher = try Child(NNProcess.executable, ["launch", "--workers", "2", "--port", "\(port)", "--epochs", "50",
                                                       "--metrics", dir + "/long.jsonl"], log: dir + "/launch.log")
        #expect(waitUntil(seconds: 120) { FileManager.default.fileExists(atPath: dir + "/long.jsonl") })
        let children = try NNProcess.run(["-P", "\(launcher.process.processIdentifier)"], executable: "/usr/bin/pgrep").stdout
            .split(separator: "\n").compactMap { Int32($0) }
        #expect(children.count == 3, "children: \(children)")
        // Each worker runs on CPUs of its own (the machine has at least two); the coordinator on any.
        func allowed(_ pid: Int32) -> String {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            return status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }.map { String($0.split(separator: "\t").last ?? "") } ?? ""
        }
        func isWorker(_ pid: Int32) -> Bool {
            let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            return command.split(separator: "\u{0}").dropFirst().first == "worker"
        }
        let workerCPUs = children.filter(isWorker).map(allowed)
        let anyCPU = allowed(launcher.process.processIdentifier)
        if ProcessInfo.processInfo.activeProcessorCount >= 2 {
            #expect(workerCPUs.count == 2 && Set(workerCPUs).count == 2 && !workerCPUs.contains(anyCPU), "workers on \(workerCPUs), the launcher on \(anyCPU)")
            #expect(children.filter { !isWorker($0) }.map(allowed) == [anyCPU])
        }
        launcher.kill(SIGKILL)
        #expect(waitUntil(seconds: 10) { children.allSatisfy { Glibc.kill($0, 0) != 0 } }, "orphans left: \(children)")
    }

    /// One worker process cutting its steps among two threads trains, bit for bit, the model of two worker
    /// processes (batch norm and dropout included), and so does `nn train` on two batch threads.
    @Test func batchThreadsEqualWorkers() throws {
        let dir = temporaryDirectory()
        let model = ["--model", "784-32-10", "--batch-norm", "--dropout", "0.1", "--epochs", "1", "--optimizer", "adam"]
        func parameters(_ name: String) throws -> [Float] { try Checkpoint.load(from: "\(dir)/\(name).safetensors").network.parameters.array }
        for (name, arguments) in [("workers", ["launch", "--workers", "2", "--batch", "32"]),
                                  ("threads", ["launch", "--workers", "1", "--batch-threads", "2", "--batch", "64"]),
                                  ("train", ["train", "--batch-threads", "2", "--batch", "64"])] {
            let run = try NNProcess.run(arguments + model + ["--out", "\(dir)/\(name).safetensors"])
            #expect(run.status == 0, "\(name): \(run.stderr)")
        }
        let workers = try parameters("workers")
        #expect(try parameters("threads") == workers)
        #expect(try parameters("train") == workers)
    }
}
