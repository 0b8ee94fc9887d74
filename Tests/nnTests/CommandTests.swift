import Foundation
import NNCore
import NNData
import TestSupport
import Testing

/// Runs the built `nn` executable, which sits beside the test bundle.
struct NNProcess {
    static func path(_ name: String) -> String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path
    }
    static let executable = path("nn")

    static func run(_ arguments: [String], environment: [String: String] = [:], executable: String = executable) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Drain both pipes while the process runs, so a chatty child cannot block on a full pipe.
        let outData = Locked(Data()), errData = Locked(Data())
        let group = DispatchGroup()
        for (pipe, box) in [(out, outData), (err, errData)] {
            group.enter()
            DispatchQueue.global().async { box.set(pipe.fileHandleForReading.readDataToEndOfFile()); group.leave() }
        }
        process.waitUntilExit()
        group.wait()
        return (process.terminationStatus, String(decoding: outData.get(), as: UTF8.self), String(decoding: errData.get(), as: UTF8.self))
    }
}

@Suite(.serialized) struct CommandTests {
    /// Every bad input gives a message that says what is wrong and a non-zero exit, never a crash (exit ≥ 128).
    func expectFailure(_ arguments: [String], mentioning words: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try NNProcess.run(arguments)
        #expect(result.status != 0 && result.status < 128, "exit \(result.status)", sourceLocation: sourceLocation)
        for w in words { #expect(result.stderr.contains(w), "stderr: \(result.stderr)", sourceLocation: sourceLocation) }
    }

    @Test func badFlagsAndSpecs() throws {
        try expectFailure(["train", "--model", "784-abc-10"], mentioning: ["unknown model spec '784-abc-10'"])
        try expectFailure(["train", "--no-such-flag"], mentioning: ["Unknown option '--no-such-flag'"])
        try expectFailure(["train", "--optimizer", "rmsprop"], mentioning: ["rmsprop"])
        try expectFailure(["train", "--lr=-1"], mentioning: ["--lr must be a positive number"])
        try expectFailure(["train", "--model", "100-10"], mentioning: ["takes 100 inputs", "784 pixels"])
        try expectFailure(["train", "--model", "784-12"], mentioning: ["12 outputs", "10 classes"])
        try expectFailure(["predict", "--model", "x.safetensors"], mentioning: ["give test-set indices"])
    }

    /// OpenBLAS falls back to generic kernels on a CPU newer than it knows; `nn` then starts again with kernels the
    /// CPU runs (this test process did not: it shows OpenBLAS's own choice), and kernels the user names stand.
    @Test func blasKernelsFitTheCPU() throws {
        func kernels(_ environment: [String: String] = [:]) throws -> String {
            let result = try NNProcess.run(["bench", "--rounds", "1", "--seconds", "0.01"], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            let header = result.stdout.split(separator: "\n").first.map(String.init) ?? ""
            return header.components(separatedBy: "OpenBLAS kernels ").last ?? ""
        }
        let chosen = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil ? BLAS.betterKernels ?? BLAS.kernels : BLAS.kernels
        #expect(try kernels() == chosen)
        #expect(try kernels(["OPENBLAS_CORETYPE": "Prescott"]) == "Prescott")
    }

    @Test func badDataFolders() throws {
        let dir = temporaryDirectory()
        try expectFailure(["train", "--data", dir], mentioning: ["missing", "nn data fetch"])
        let source = DatasetKind.mnist.defaultDirectory()
        for file in DatasetKind.mnist.files {
            try FileManager.default.copyItem(atPath: DatasetKind.mnist.locate(file, in: source)!, toPath: dir + "/" + file.name + ".gz")
        }
        // Truncate the test labels: the error names the file.
        let path = dir + "/t10k-labels-idx1-ubyte.gz"
        let bytes = try AtomicFile.read(path)
        try AtomicFile.write(Gzip.isCompressed(bytes) ? Array(bytes.prefix(bytes.count - 100)) : Array(bytes.prefix(100)), to: path)
        try expectFailure(["eval", "--model", "none.safetensors", "--data", dir], mentioning: ["none.safetensors"])
        try expectFailure(["train", "--data", dir], mentioning: [path])
        try expectFailure(["data", "fetch", "--from", dir, "--to", temporaryDirectory("fetchTarget")], mentioning: [path])
    }

    @Test func badCheckpoints() throws {
        let dir = temporaryDirectory()
        try AtomicFile.write(Array("this is not a checkpoint at all".utf8), to: dir + "/junk.safetensors")
        try expectFailure(["eval", "--model", dir + "/junk.safetensors"], mentioning: ["junk.safetensors", "not a safetensors file"])
        try expectFailure(["predict", "--model", dir + "/missing.safetensors", "--index", "0"], mentioning: ["missing.safetensors"])
        try expectFailure(["export", "--model", dir + "/junk.safetensors", "-o", dir + "/junk.onnx"], mentioning: ["junk.safetensors"])
        #expect(!FileManager.default.fileExists(atPath: dir + "/junk.onnx"))
        try expectFailure(["export", "--model", dir + "/junk.safetensors", "--format", "tflite", "-o", "x"], mentioning: ["tflite"])
        try expectFailure(["serve", "--model", dir + "/junk.safetensors"], mentioning: ["junk.safetensors", "not a safetensors file"])
        try expectFailure(["serve", "--model", dir + "/junk.safetensors", "--bind", "8080"], mentioning: ["--bind takes HOST:PORT"])
        try expectFailure(["serve", "--model", dir + "/junk.safetensors", "--bind", "127.0.0.1:70000"], mentioning: ["--bind takes HOST:PORT"])
    }

    /// Train, evaluate and predict end to end; the same seed gives a byte-identical checkpoint.
    @Test func trainEvalPredict() throws {
        let dir = temporaryDirectory()
        let train = ["train", "--model", "784-32-10", "--epochs", "1", "--batch", "128", "--seed", "5", "--dropout", "0.1"]
        let first = try NNProcess.run(train + ["--out", dir + "/a.safetensors", "--metrics", dir + "/a.jsonl"])
        #expect(first.status == 0, "\(first.stderr)")
        let second = try NNProcess.run(train + ["--out", dir + "/b.safetensors"])
        #expect(second.status == 0)
        let a = try AtomicFile.read(dir + "/a.safetensors"), b = try AtomicFile.read(dir + "/b.safetensors")
        #expect(a == b, "same seed, same flags: checkpoints differ")
        let other = try NNProcess.run(["train", "--model", "784-32-10", "--epochs", "1", "--batch", "128", "--seed", "6", "--dropout", "0.1", "--out", dir + "/c.safetensors"])
        #expect(other.status == 0)
        #expect(try AtomicFile.read(dir + "/c.safetensors") != a)

        #expect(first.stdout.contains("confusion matrix") && first.stdout.contains("macro avg"))
        let lines = try String(contentsOfFile: dir + "/a.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1)
        let metrics = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        let accuracy = metrics["test_accuracy"] as! Double
        #expect(accuracy > 0.9)

        let eval = try NNProcess.run(["eval", "--model", dir + "/a.safetensors"])
        #expect(eval.status == 0)
        #expect(eval.stdout.contains(String(format: "test accuracy %.2f%%", accuracy * 100)), "\(eval.stdout)")

        let predict = try NNProcess.run(["predict", "--model", dir + "/a.safetensors", "--index", "0", "1", "--json"])
        #expect(predict.status == 0)
        let rows = predict.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(rows.map { $0["label"] as! Int } == [7, 2])
        #expect(rows.map { $0["predicted"] as! Int } == [7, 2])

        // A PGM written from test image 0 is classified like the index.
        let test = try DatasetKind.mnist.load(from: DatasetKind.mnist.defaultDirectory()).test
        try AtomicFile.write(Array("P5\n28 28\n255\n".utf8) + Array(test.images[0..<784]), to: dir + "/seven.pgm")
        let image = try NNProcess.run(["predict", "--model", dir + "/a.safetensors", dir + "/seven.pgm", "--json"])
        let row = try JSONSerialization.jsonObject(with: Data(image.stdout.utf8)) as! [String: Any]
        #expect(row["logits"] as! [Double] == rows[0]["logits"] as! [Double])
        try AtomicFile.write(Array("P5\n27 28\n255\n".utf8) + Array(test.images[0..<756]), to: dir + "/small.pgm")
        try expectFailure(["predict", "--model", dir + "/a.safetensors", dir + "/small.pgm"], mentioning: ["27×28", "784"])
    }
}
