import Foundation
import NNCore
import NNData
import TestSupport
import Testing

/// Failures a real deployment meets, with real processes: each ends in a clear error or a saved model, in bounded time.
@Suite(.serialized, .timeLimit(.minutes(3))) struct HardeningCommandTests {
    let coordinatorPath = NNProcess.path("nn-coordinator")
    let workerPath = NNProcess.path("nn-worker")

    func expectFailure(_ arguments: [String], mentioning words: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let started = Date()
        let result = try NNProcess.run(arguments)
        #expect(result.status != 0 && result.status < 128, "exit \(result.status)", sourceLocation: sourceLocation)
        for w in words { #expect(result.stderr.contains(w), "stderr: \(result.stderr)", sourceLocation: sourceLocation) }
        #expect(Date().timeIntervalSince(started) < 20, "took \(Date().timeIntervalSince(started)) s", sourceLocation: sourceLocation)
    }

    /// `nn-coordinator --workers 2 --epochs 1 --optimizer sgd --lr 1e20` with two workers stops as `nn train` does,
    /// with the checkpoint of the last finite model, instead of passing a non-finite slice around for ever.
    @Test func divergingDistributedRunStops() throws {
        let dir = temporaryDirectory()
        let port = freePort()
        let run = try Child(coordinatorPath, ["--bind", "tcp://127.0.0.1:\(port)", "--workers", "2", "--epochs", "1", "--optimizer", "sgd",
                                              "--lr", "1e20", "--out", "\(dir)/diverged.safetensors"], log: "\(dir)/coordinator.log")
        let workers = try (0..<2).map { i in
            try Child(workerPath, ["--connect", "tcp://127.0.0.1:\(port)", "--name", "w\(i)"], log: "\(dir)/w\(i).log")
        }
        #expect(run.wait(seconds: 60), "the coordinator is still running")
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("training diverged: the loss is"), "\(run.output)")
        _ = try Checkpoint.load(from: "\(dir)/diverged.safetensors")
        for w in workers { #expect(w.wait(seconds: 10) && w.status == 0, "\(w.output)") }
    }

    /// SIGTERM, as a scheduler sends it, ends a coordinator's run as if it were done: workers told, checkpoint
    /// written, exit 0.
    @Test func sigtermSavesTheModel() throws {
        let dir = temporaryDirectory()
        let port = freePort()
        let run = try Child(coordinatorPath, ["--bind", "tcp://127.0.0.1:\(port)", "--workers", "1", "--model", "784-32-10", "--epochs", "100",
                                              "--metrics", "\(dir)/run.jsonl", "--out", "\(dir)/stopped.safetensors"], log: "\(dir)/coordinator.log")
        let worker = try Child(workerPath, ["--connect", "tcp://127.0.0.1:\(port)", "--name", "w"], log: "\(dir)/w.log")
        #expect(waitUntil(seconds: 120) { FileManager.default.fileExists(atPath: "\(dir)/run.jsonl") })
        run.kill(SIGTERM)
        #expect(run.wait(seconds: 20), "the coordinator did not stop")
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("received SIGTERM"), "\(run.output)")
        let saved = try Checkpoint.load(from: "\(dir)/stopped.safetensors")
        #expect((Double(saved.metadata["test_accuracy"] ?? "") ?? 0) > 0.8, "\(saved.metadata)")
        #expect(worker.wait(seconds: 10) && worker.status == 0, "\(worker.output)")
    }

    /// Timing flags beyond what a clock can hold, and experiment values a field cannot hold, are errors that
    /// say which and where.
    /// Batch threads that each run as many OpenBLAS threads as there are cores are warned about, and still train.
    @Test func oversubscribedBatchThreadsAreWarnedAbout() throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let result = try NNProcess.run(["train", "--model", "784-16-10", "--epochs", "1", "--batch-threads", "2", "--threads", String(cores)])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("--batch-threads 2 with --threads \(cores) runs \(2 * cores) threads on \(cores) cores"), "\(result.stderr)")
        // A worker pinned to one CPU has one core, whatever the machine has.
        let pinned = try NNProcess.run(["worker", "--connect", "tcp://127.0.0.1:1", "--registration-timeout", "1", "--cpus", "0", "--batch-threads", "2"])
        #expect(pinned.stderr.contains("--batch-threads 2 with --threads 1 runs 2 threads on 1 core;"), "\(pinned.stderr)")
    }

    @Test func absurdFlagsAndValues() throws {
        try expectFailure(["coordinator", "--workers", "1", "--timeout", "1e300"], mentioning: ["timeout 1e+300 s"])
        try expectFailure(["coordinator", "--workers", "1", "--timeout", "inf"], mentioning: ["timeout inf s"])
        try expectFailure(["coordinator", "--workers", "1", "--registration-timeout", "1e300"], mentioning: ["registration 1e+300 s"])
        try expectFailure(["coordinator", "--workers", "1", "--vectors", "float16"], mentioning: ["float32", "bfloat16"])
        try expectFailure(["coordinator", "--workers", "1", "--vectors", "bfloat16", "--config", "experiments/mnist-2nn-iid.json"],
                          mentioning: ["--vectors bfloat16 is for synchronous SGD"])
        try expectFailure(["coordinator", "--workers", "1", "--topology", "star"], mentioning: ["server", "ring"])
        try expectFailure(["worker", "--connect", "tcp://127.0.0.1:5555", "--ring-port", "70000"], mentioning: ["--ring-port must be 1…65535"])
        try expectFailure(["worker", "--connect", "tcp://127.0.0.1:5555", "--batch-threads", "0"], mentioning: ["--batch-threads must be 1…256"])
        try expectFailure(["train", "--batch-threads", "300"], mentioning: ["--batch-threads must be 1…256"])
        try expectFailure(["train", "--batch-threads", "2", "--batch", "3", "--batch-norm"], mentioning: ["2 rows a thread: --batch 4 or more"])
        try expectFailure(["coordinator", "--workers", "3", "--topology", "ring", "--robust", "median"], mentioning: ["--robust needs each one"])
        try expectFailure(["coordinator", "--workers", "2", "--topology", "ring", "--vectors", "bfloat16"], mentioning: ["float32 chunks"])
        try expectFailure(["coordinator", "--workers", "2", "--topology", "ring", "--config", "experiments/mnist-2nn-iid.json"],
                          mentioning: ["--topology ring is for synchronous SGD"])
        let dir = temporaryDirectory()
        func experiment(_ replace: String, with value: String) throws -> String {
            let json = #"{"name":"x","model":"784-10","partition":{"kind":"iid"},"clients":4,"fraction":1,"localEpochs":1,"localBatch":10,"learningRate":0.1,"rounds":1,"seed":1}"#
            let path = "\(dir)/\(value.filter(\.isLetter))\(value.count).json"
            try json.replacingOccurrences(of: replace, with: value).write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        try expectFailure(["simulate", "--config", try experiment("\"learningRate\":0.1", with: "\"learningRate\":1e39")], mentioning: ["'learningRate' is 1e+39"])
        try expectFailure(["simulate", "--config", try experiment("\"seed\":1", with: "\"seed\":-1")], mentioning: ["'seed' is -1"])
        try expectFailure(["simulate", "--config", try experiment("\"784-10\"", with: "\"784-65536-65536-10\"")], mentioning: ["the limit is 67108864"])
    }

    /// An output that cannot be written is found before training, not after it.
    @Test func unwritableOutputsFailFirst() throws {
        let missing = "/nonexistent-\(getpid())/model.safetensors"
        try expectFailure(["train", "--epochs", "50", "--out", missing], mentioning: [missing])
        try expectFailure(["train", "--epochs", "50", "--metrics", "/nonexistent-\(getpid())/m.jsonl"], mentioning: ["/nonexistent-\(getpid())/m.jsonl"])
        try expectFailure(["coordinator", "--workers", "1", "--out", missing], mentioning: [missing])
        let dir = temporaryDirectory()
        try expectFailure(["train", "--epochs", "50", "--out", dir], mentioning: ["is a folder"])
    }

    /// A worker stopped (SIGSTOP) for longer than the timeout is dropped; continued (SIGCONT), it registers
    /// again and works to the end of the run instead of giving up.
    @Test func stoppedWorkerRejoins() throws {
        let dir = temporaryDirectory()
        let port = freePort()
        let run = try Child(coordinatorPath, ["--bind", "tcp://127.0.0.1:\(port)", "--workers", "2", "--model", "784-64-10", "--batch", "32",
                                              "--epochs", "6", "--heartbeat", "0.1", "--timeout", "1", "--metrics", "\(dir)/run.jsonl"],
                            log: "\(dir)/coordinator.log")
        let workers = try (0..<2).map { i in
            try Child(workerPath, ["--connect", "tcp://127.0.0.1:\(port)", "--name", "w\(i)"], log: "\(dir)/w\(i).log")
        }
        #expect(waitUntil(seconds: 120) { FileManager.default.fileExists(atPath: "\(dir)/run.jsonl") })
        workers[1].kill(SIGSTOP)
        Thread.sleep(forTimeInterval: 2.5)
        workers[1].kill(SIGCONT)
        #expect(run.wait(seconds: 120), "the run did not finish")
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("lost worker w1"), "\(run.output)")
        for w in workers { #expect(w.wait(seconds: 10) && w.status == 0, "\(w.output)") }
        #expect(workers[1].output.contains("registering again"), "\(workers[1].output)")
        let metrics = try String(contentsOfFile: "\(dir)/run.jsonl", encoding: .utf8)
        #expect(metrics.split(separator: "\n").last?.contains("\"workers\":2") ?? false, "\(metrics)")
    }

    /// When the checkpoint cannot be written at the end (its folder went away during training), the model goes to
    /// the temporary folder and the error says where: it is never left only in memory.
    @Test func failedCheckpointWriteKeepsTheModel() throws {
        let dir = temporaryDirectory(), outputs = temporaryDirectory("outputs")
        let run = try Child(NNProcess.executable, ["train", "--model", "784-32-10", "--epochs", "4", "--metrics", "\(dir)/m.jsonl",
                                                   "--out", "\(outputs)/model.safetensors"], log: "\(dir)/train.log")
        #expect(waitUntil(seconds: 60) { FileManager.default.fileExists(atPath: "\(dir)/m.jsonl") })
        try FileManager.default.removeItem(atPath: outputs)
        #expect(run.wait(seconds: 120), "training did not end")
        #expect(run.failed)
        let output = run.output
        guard let range = output.range(of: "the model was written to ") else {
            Issue.record("no fallback reported: \(output)")
            return
        }
        let fallback = String(output[range.upperBound...].prefix { !$0.isWhitespace })
        let saved = try Checkpoint.load(from: fallback)
        #expect(saved.network.spec.widths == [784, 32, 10])
        try? FileManager.default.removeItem(atPath: fallback)
    }
}
