import Foundation
import NNCore
import TestSupport
import Testing

/// A coordinator (or `nn train`) killed outright and resumed ends with exactly the model of an uninterrupted run.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ResumeCommandTests {
    let coordinatorPath = NNProcess.path("nn-coordinator")
    let workerPath = NNProcess.path("nn-worker")

    func parameters(_ path: String) throws -> [Float] { try Checkpoint.load(from: path).network.parameters.array }

    /// Runs a coordinator with `arguments` and `workers` workers to the end; with `kill`, writes the state every
    /// `every` rounds, kills the coordinator with SIGKILL `delay` seconds after the first state was written, and
    /// resumes it with the same arguments while the same workers wait for it. Returns the coordinator's output.
    @discardableResult
    func coordinate(_ arguments: [String], workers: Int, dir: String, name: String, kill: Bool = false, every: Int = 20, delay: Double = 0.3) throws -> String {
        let port = freePort()
        let common = ["--bind", "tcp://127.0.0.1:\(port)", "--workers", "\(workers)", "--heartbeat", "0.1", "--timeout", "1",
                      "--out", "\(dir)/\(name).safetensors", "--metrics", "\(dir)/\(name).jsonl"] + arguments
        let first = try Child(coordinatorPath, common + (kill ? ["--run-dir", "\(dir)/\(name)-run", "--checkpoint-every", "\(every)"] : []),
                              log: "\(dir)/\(name)-1.log")
        let children = try (0..<workers).map { i in
            try Child(workerPath, ["--connect", "tcp://127.0.0.1:\(port)", "--name", "\(name)-w\(i)"], log: "\(dir)/\(name)-w\(i).log")
        }
        var output = ""
        if kill {
            #expect(waitUntil(seconds: 120) { FileManager.default.fileExists(atPath: "\(dir)/\(name)-run/state.safetensors") }, "\(first.output)")
            Thread.sleep(forTimeInterval: delay)
            first.kill(SIGKILL)
            #expect(first.wait(seconds: 10))
            #expect(!first.output.contains("wrote \(dir)/\(name).safetensors"), "the run ended before it was killed")
            let second = try Child(coordinatorPath, common + ["--resume", "\(dir)/\(name)-run", "--checkpoint-every", "\(every)"], log: "\(dir)/\(name)-2.log")
            #expect(second.wait(seconds: 180) && second.status == 0, "\(second.output)")
            output = second.output
            #expect(output.contains("resuming"), "\(output)")
        } else {
            #expect(first.wait(seconds: 180) && first.status == 0, "\(first.output)")
            output = first.output
        }
        for w in children { #expect(w.wait(seconds: 10) && w.status == 0, "\(w.output)") }
        return output
    }

    /// Synchronous SGD with Adam, a cosine schedule and dropout, killed in the middle of its second epoch; through
    /// the coordinator, and in a ring (whose workers, waiting for the resumed coordinator, start a new generation
    /// from its run state; two members sum in either order to the same bits).
    @Test(arguments: ["server", "ring"])
    func syncResumeIsExact(topology: String) throws {
        let dir = temporaryDirectory()
        let run = ["--model", "784-64-10", "--dropout", "0.1", "--batch", "32", "--epochs", "3", "--optimizer", "adam", "--schedule", "cosine", "--seed", "5",
                   "--topology", topology]
        try coordinate(run, workers: 2, dir: dir, name: "whole")
        let output = try coordinate(run, workers: 2, dir: dir, name: "resumed", kill: true, delay: 2)
        #expect(output.contains("resuming \(dir)/resumed-run after step"), "\(output)")
        #expect(try parameters("\(dir)/whole.safetensors") == parameters("\(dir)/resumed.safetensors"))
        // The metrics file holds every epoch once, as an uninterrupted run's does.
        let lines = try String(contentsOfFile: "\(dir)/resumed.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3 && lines.map { $0.contains("\"epoch\":\(lines.firstIndex(of: $0)! + 1)") } == [true, true, true], "\(lines)")
    }

    /// FedAvgM and FedAdam (server optimizers with state), killed after some rounds.
    @Test(arguments: [#"{"kind": "fedavgm", "serverLearningRate": 1, "serverMomentum": 0.9}"#,
                      #"{"kind": "fedadam", "serverLearningRate": 0.01, "beta1": 0.9, "beta2": 0.99, "tau": 0.001}"#])
    func federatedResumeIsExact(strategy: String) throws {
        let dir = temporaryDirectory()
        try AtomicFile.write("""
            {"name": "resume", "model": "784-32-10", "partition": {"kind": "iid"}, "clients": 20, "fraction": 0.2,
             "localEpochs": 1, "localBatch": 20, "learningRate": 0.05, "rounds": 24, "seed": 4, "strategy": \(strategy)}
            """, to: "\(dir)/experiment.json")
        let run = ["--config", "\(dir)/experiment.json"]
        try coordinate(run, workers: 2, dir: dir, name: "whole")
        let output = try coordinate(run, workers: 2, dir: dir, name: "resumed", kill: true, every: 3, delay: 0.5)
        #expect(output.contains("after round"), "\(output)")
        #expect(try parameters("\(dir)/whole.safetensors") == parameters("\(dir)/resumed.safetensors"))
    }

    /// `nn train --resume` after SIGKILL, on two batch threads; and a resume with other settings (a seed, the
    /// batch threads) is refused, naming them.
    @Test func trainResumeIsExact() throws {
        let dir = temporaryDirectory()
        let run = ["train", "--model", "784-64-10", "--dropout", "0.1", "--epochs", "4", "--optimizer", "adam", "--schedule", "cosine", "--seed", "6",
                   "--batch-threads", "2"]
        let whole = try NNProcess.run(run + ["--out", "\(dir)/whole.safetensors"])
        #expect(whole.status == 0, "\(whole.stderr)")
        let first = try Child(NNProcess.executable, run + ["--out", "\(dir)/resumed.safetensors", "--run-dir", "\(dir)/run", "--metrics", "\(dir)/m.jsonl"],
                              log: "\(dir)/first.log")
        #expect(waitUntil(seconds: 120) { ((try? String(contentsOfFile: "\(dir)/m.jsonl", encoding: .utf8)) ?? "").split(separator: "\n").count >= 2 })
        first.kill(SIGKILL)
        #expect(first.wait(seconds: 10))
        let other = try NNProcess.run(run.map { $0 == "6" ? "7" : $0 } + ["--resume", "\(dir)/run"])
        #expect(other.status != 0 && other.stderr.contains("seed: 6 → 7"), "\(other.stderr)")
        let unthreaded = try NNProcess.run(Array(run.dropLast(2)) + ["--resume", "\(dir)/run"])
        #expect(unthreaded.status != 0 && unthreaded.stderr.contains("batchThreads: 2 → unset"), "\(unthreaded.stderr)")
        let resumed = try NNProcess.run(run + ["--out", "\(dir)/resumed.safetensors", "--resume", "\(dir)/run", "--metrics", "\(dir)/m.jsonl"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try parameters("\(dir)/whole.safetensors") == parameters("\(dir)/resumed.safetensors"))
        let lines = try String(contentsOfFile: "\(dir)/m.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4, "\(lines)")
    }

    /// SIGTERM to the coordinator: it writes its state, tells the workers, and exits 0; `--resume` with new
    /// workers finishes the run with the model of an uninterrupted one.
    @Test func sigtermThenResume() throws {
        let dir = temporaryDirectory()
        let run = ["--model", "784-32-10", "--batch", "32", "--epochs", "2", "--optimizer", "adam", "--seed", "8"]
        try coordinate(run, workers: 1, dir: dir, name: "whole")
        let port = freePort()
        let common = ["--bind", "tcp://127.0.0.1:\(port)", "--workers", "1", "--heartbeat", "0.1", "--timeout", "1",
                      "--out", "\(dir)/resumed.safetensors", "--run-dir", "\(dir)/run", "--checkpoint-every", "1000"] + run
        let first = try Child(coordinatorPath, common, log: "\(dir)/first.log")
        let worker = try Child(workerPath, ["--connect", "tcp://127.0.0.1:\(port)", "--name", "a"], log: "\(dir)/a.log")
        #expect(waitUntil(seconds: 60) { first.output.contains("registered as #0") })
        Thread.sleep(forTimeInterval: 0.5)
        first.kill(SIGTERM)
        #expect(first.wait(seconds: 10) && first.status == 0, "\(first.output)")
        #expect(worker.wait(seconds: 10) && worker.status == 0, "\(worker.output)")
        let second = try Child(coordinatorPath, common.map { $0 == "--run-dir" ? "--resume" : $0 }, log: "\(dir)/second.log")
        let next = try Child(workerPath, ["--connect", "tcp://127.0.0.1:\(port)", "--name", "b"], log: "\(dir)/b.log")
        #expect(second.wait(seconds: 120) && second.status == 0, "\(second.output)")
        #expect(next.wait(seconds: 10) && next.status == 0, "\(next.output)")
        #expect(second.output.contains("resuming"), "\(second.output)")
        #expect(try parameters("\(dir)/whole.safetensors") == parameters("\(dir)/resumed.safetensors"))
    }
}
