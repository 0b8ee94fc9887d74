import Foundation
import NNCore
import TestSupport
import Testing

/// Federated runs through the real commands and processes.
@Suite(.serialized) struct FederatedCommandTests {
    /// A small experiment file in `dir`.
    func experiment(_ dir: String, rounds: Int = 3, extra: String = "") throws -> String {
        let path = dir + "/small.json"
        try AtomicFile.write("""
            {"name": "small", "model": "784-64-10", "partition": {"kind": "shards"}, "clients": 10, "fraction": 0.4,
             "localEpochs": 1, "localBatch": 50, "learningRate": 0.1, "rounds": \(rounds), "targetAccuracy": 0.5, "seed": 2\(extra)}
            """, to: path)
        return path
    }

    func parameters(_ path: String) throws -> [Float] { try Checkpoint.load(from: path).network.parameters.array }

    /// `nn simulate` and `nn launch` (a coordinator and two worker processes over ZeroMQ) train the same model.
    @Test func simulateEqualsLaunch() throws {
        let dir = temporaryDirectory()
        let config = try experiment(dir)
        let simulated = try NNProcess.run(["simulate", "--config", config, "--out", dir + "/sim.safetensors", "--metrics", dir + "/sim.jsonl"])
        #expect(simulated.status == 0, "\(simulated.stderr)")
        #expect(simulated.stdout.contains("round 3/3  clients 4/4"), "\(simulated.stdout)")
        let launched = try NNProcess.run(["launch", "--workers", "2", "--config", config, "--out", dir + "/launch.safetensors",
                                          "--metrics", dir + "/launch.jsonl"])
        #expect(launched.status == 0, "\(launched.stdout)\(launched.stderr)")
        #expect(launched.stdout.contains("hosting clients 0…4") && launched.stdout.contains("hosting clients 5…9"), "\(launched.stdout)")
        let a = try parameters(dir + "/sim.safetensors"), b = try parameters(dir + "/launch.safetensors")
        #expect(a == b, "largest difference \(zip(a, b).map { abs($0 - $1) }.max() ?? 0)")
        // Both logs end with the summary, in the same rounds.
        for log in ["sim", "launch"] {
            let lines = try String(contentsOfFile: "\(dir)/\(log).jsonl", encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 4)
            #expect(lines.last?.contains("\"summary\":true") ?? false)
        }
    }

    /// `nn bench --federated` times every mode against a floor it measures after each round: one row a mode, each
    /// with a round time, the floor and their ratio, all positive, and the bytes up where workers send them.
    @Test func federatedBenchTimesEveryMode() throws {
        let dir = temporaryDirectory()
        let result = try NNProcess.run(["bench", "--federated", "--rounds", "2", "--config", try experiment(dir, extra: #", "hostAggregation": true"#)])
        #expect(result.status == 0, "\(result.stderr)")
        let modes = ["simulation, 1 client thread", "simulation, 2 client threads", "evaluating every round", "evaluating every 10 rounds",
                     "2 worker processes over ZeroMQ", "with host aggregation"]
        for mode in modes {
            let row = result.stdout.split(separator: "\n").first { $0.contains(mode) }.map(String.init) ?? ""
            let figures = row.dropFirst(36).split(separator: " ").prefix(4).compactMap { Double($0) }
            #expect(figures.count == 4 && figures.allSatisfy { $0 > 0 && $0.isFinite }, "\(mode): '\(row)'")
            if figures.count == 4 { #expect(abs(figures[0] / figures[2] - figures[3]) < 0.5 * figures[3], "\(mode): '\(row)'") }
            #expect(row.contains("MB up a round") == (mode.contains("ZeroMQ") || mode.contains("host aggregation")), "\(mode): '\(row)'")
        }
    }

    /// With host aggregation, `nn simulate --hosts 2` and `nn launch --workers 2` train the same model, and
    /// `--hosts` without it is refused.
    @Test func hostAggregationSimulateEqualsLaunch() throws {
        let dir = temporaryDirectory()
        let config = try experiment(dir, extra: ", \"hostAggregation\": true")
        let simulated = try NNProcess.run(["simulate", "--config", config, "--hosts", "2", "--out", dir + "/sim.safetensors"])
        #expect(simulated.status == 0, "\(simulated.stderr)")
        #expect(simulated.stdout.contains("round 3/3  clients 4/4"), "\(simulated.stdout)")
        let launched = try NNProcess.run(["launch", "--workers", "2", "--config", config, "--out", dir + "/launch.safetensors"])
        #expect(launched.status == 0, "\(launched.stdout)\(launched.stderr)")
        #expect(launched.stdout.contains("round 3/3  clients 4/4"), "\(launched.stdout)")
        let a = try parameters(dir + "/sim.safetensors"), b = try parameters(dir + "/launch.safetensors")
        #expect(a == b, "largest difference \(zip(a, b).map { abs($0 - $1) }.max() ?? 0)")
        // Ten clients in shares of ⌈10 ÷ 6⌉ = 2 fill five hosts, not six.
        let uneven = try NNProcess.run(["simulate", "--config", config, "--hosts", "6"])
        #expect(uneven.status != 0 && uneven.stderr.contains("6 hosts cannot each take an even share of 10 clients"), "\(uneven.stderr)")
        let plain = try experiment(dir)
        let refused = try NNProcess.run(["simulate", "--config", plain, "--hosts", "2"])
        #expect(refused.status != 0 && refused.stderr.contains("hostAggregation"), "\(refused.stderr)")
    }

    /// `nn sweep` runs every cell with every seed, and its table and CSV say what the runs said; a bad axis is
    /// refused before anything runs.
    @Test func sweepTabulatesItsRuns() throws {
        let dir = temporaryDirectory()
        let config = try experiment(dir, rounds: 4)
        let sweep = try NNProcess.run(["sweep", "--config", config, "--grid", "learningRate=0.05,0.1", "--seeds", "1-2", "--jobs", "2",
                                       "--out", dir + "/lr"])
        #expect(sweep.status == 0, "\(sweep.stderr)")
        let csv = try String(contentsOfFile: dir + "/lr.csv", encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        #expect(csv.first == ["learningRate", "seed", "rounds_to_target", "rounds", "final_accuracy", "best_accuracy", "seconds"])
        #expect(csv.count == 5 && Set(csv.dropFirst().map { "\($0[0]) \($0[1])" }) == ["0.05 1", "0.05 2", "0.1 1", "0.1 2"])
        for row in csv.dropFirst() {
            // Each run's own line says the same final accuracy as its CSV row.
            let percent = String(format: "%.2f%%", 100 * Double(row[4])!)
            #expect(sweep.stdout.contains("learningRate=\(row[0]) seed \(row[1]):") && sweep.stdout.contains("final \(percent) after \(row[3]) rounds"),
                    "\(row) \(sweep.stdout)")
        }
        let table = try String(contentsOfFile: dir + "/lr.md", encoding: .utf8)
        #expect(table.split(separator: "\n").count == 4 && table.contains("| 0.05 |") && table.contains("rounds to 50.00%, seeds 1, 2"), "\(table)")
        #expect(sweep.stdout.contains(table))
        // The same cell through nn simulate gives the same final accuracy.
        let single = try NNProcess.run(["simulate", "--config", config, "--set-lr", "0.1", "--set-seed", "2"])
        let row = csv.first { $0[0] == "0.1" && $0[1] == "2" }!
        #expect(single.stdout.contains("final test accuracy \(String(format: "%.2f%%", 100 * Double(row[4])!))"), "\(single.stdout)")
        let bad = try NNProcess.run(["sweep", "--config", config, "--grid", "learningRat=0.1"])
        #expect(bad.status != 0 && bad.status < 128 && bad.stderr.contains("unknown key 'learningRat'"), "\(bad.stderr)")
    }

    /// A worker process killed mid-run: its clients are left out of the round and reported, the run finishes
    /// with the other worker's clients.
    @Test func workerKilledInFederatedRun() throws {
        let dir = temporaryDirectory()
        let config = try experiment(dir, rounds: 40, extra: ", \"deadlineSeconds\": 2")
        let port = freePort()
        let coordinator = try Child(NNProcess.path("nn-coordinator"),
                                    ["--bind", "tcp://127.0.0.1:\(port)", "--workers", "2", "--config", config, "--heartbeat", "0.1",
                                     "--timeout", "2", "--metrics", dir + "/run.jsonl"], log: dir + "/coordinator.log")
        let workers = try [("0-4", "first"), ("5-9", "second")].map { range, name in
            try Child(NNProcess.path("nn-worker"), ["--connect", "tcp://127.0.0.1:\(port)", "--name", name, "--clients", range],
                      log: "\(dir)/\(name).log")
        }
        #expect(waitUntil(seconds: 120) {
            ((try? String(contentsOfFile: dir + "/run.jsonl", encoding: .utf8)) ?? "").split(separator: "\n").count >= 3
        })
        workers[1].kill(SIGKILL)
        #expect(coordinator.wait(seconds: 120), "run did not finish")
        #expect(coordinator.status == 0, "\(coordinator.output)")
        #expect(coordinator.output.contains("lost worker second"), "\(coordinator.output)")
        #expect(workers[0].wait(seconds: 10) && workers[0].status == 0)
        let rounds = try String(contentsOfFile: dir + "/run.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["round"] != nil }
        #expect(rounds.count == 40)
        let missed = rounds.flatMap { ($0["missed"] as? [Int]) ?? [] }
        #expect(!missed.isEmpty && missed.allSatisfy { (5..<10).contains($0) }, "missed: \(missed)")
        #expect(rounds.suffix(5).allSatisfy { ($0["workers"] as? Int) == 1 && ($0["answered"] as? Int) == 4 })
    }

    @Test func plotDrawsRunsAndRejectsOtherLogs() throws {
        let dir = temporaryDirectory()
        let config = try experiment(dir, rounds: 2)
        for seed in ["2", "3"] {
            let run = try NNProcess.run(["simulate", "--config", config, "--set-seed", seed, "--metrics", "\(dir)/seed\(seed).jsonl"])
            #expect(run.status == 0, "\(run.stderr)")
        }
        let plotted = try NNProcess.run(["plot", dir + "/seed2.jsonl", dir + "/seed3.jsonl", "-o", dir + "/curve.svg", "--labels", "seed 2,seed 3"])
        #expect(plotted.status == 0, "\(plotted.stderr)")
        let svg = try String(contentsOfFile: dir + "/curve.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("seed 2") && svg.contains("seed 3") && svg.contains("MB moved"))
        #expect(svg.components(separatedBy: "<polyline").count == 5)   // two runs in two panels

        try AtomicFile.write("{\"epoch\":1,\"test_accuracy\":0.9}\n", to: dir + "/sync.jsonl")
        let other = try NNProcess.run(["plot", dir + "/sync.jsonl", "-o", dir + "/x.svg"])
        #expect(other.status != 0 && other.stderr.contains("holds no rounds"), "\(other.stderr)")
        try AtomicFile.write("{\"round\":1}\n", to: dir + "/bad.jsonl")
        let bad = try NNProcess.run(["plot", dir + "/bad.jsonl", "-o", dir + "/x.svg"])
        #expect(bad.status != 0 && bad.stderr.contains("federated run"), "\(bad.stderr)")
    }

    @Test func badExperimentsAndConflictingFlagsAreRefused() throws {
        let dir = temporaryDirectory()
        let config = try experiment(dir, extra: ", \"localEpoch\": 3")
        let typo = try NNProcess.run(["simulate", "--config", config])
        #expect(typo.status != 0 && typo.stderr.contains("unknown key 'localEpoch'"), "\(typo.stderr)")
        let good = try experiment(dir)
        let conflict = try NNProcess.run(["launch", "--workers", "2", "--config", good, "--model", "784-10-10"])
        #expect(conflict.status != 0 && conflict.stderr.contains("the experiment fixes the model"), "\(conflict.stderr)")
        // A flag is refused when given, even with its default value, and named.
        let given = try NNProcess.run(["coordinator", "--workers", "1", "--config", good, "--lr", "0.001"])
        #expect(given.status != 0 && given.stderr.contains("drop --lr"), "\(given.stderr)")
        let missing = try NNProcess.run(["simulate", "--config", dir + "/none.json"])
        #expect(missing.status != 0 && missing.stderr.contains("cannot read experiment"), "\(missing.stderr)")
        let both = try NNProcess.run(["worker", "--connect", "tcp://127.0.0.1:1", "--clients", "0-4", "--clients-per-worker", "5"])
        #expect(both.status != 0 && both.stderr.contains("not both"), "\(both.stderr)")
    }
}
