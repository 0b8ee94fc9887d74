import Foundation
import TestSupport
import Testing

/// Output that a pipe, a file or a log collector sees as it is written.
@Suite(.serialized, .timeLimit(.minutes(2))) struct StreamingTests {
    /// `nn train … | cat`: each epoch line reaches the pipe when its epoch ends, long before the process does.
    @Test func epochLinesStreamThroughAPipe() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: NNProcess.executable)
        process.arguments = ["train", "--model", "784-32-10", "--epochs", "3"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        let arrivals = Locked<[(line: String, at: Date)]>([])
        let reader = DispatchGroup()
        reader.enter()
        try process.run()
        DispatchQueue.global().async {
            var pending = Data()
            while case let chunk = out.fileHandleForReading.availableData, !chunk.isEmpty {
                pending.append(chunk)
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    arrivals.update { $0.append((line, Date())) }
                    pending.removeSubrange(pending.startIndex...newline)
                }
            }
            reader.leave()
        }
        process.waitUntilExit()
        let exited = Date()
        reader.wait()
        #expect(process.terminationStatus == 0)
        let epochs = arrivals.get().filter { $0.line.hasPrefix("epoch ") }
        #expect(epochs.count == 3, "\(arrivals.get().map(\.line))")
        guard epochs.count == 3 else { return }
        // Block buffering would deliver all three together at the exit.
        #expect(exited.timeIntervalSince(epochs[0].at) > 0.2, "epoch 1 arrived \(exited.timeIntervalSince(epochs[0].at)) s before the exit")
        #expect(epochs[1].at.timeIntervalSince(epochs[0].at) > 0.1, "epochs 1 and 2 arrived together")
    }

    /// `--log-format json`: every log line is one JSON object with time, level, label and message.
    @Test func jsonLogLines() throws {
        let result = try NNProcess.run(["train", "--model", "784-16-10", "--epochs", "1", "--log-format", "json"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stderr.split(separator: "\n").filter { !$0.hasPrefix("\r") && !$0.isEmpty }
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["message"] is String && object?["level"] as? String != nil && object?["time"] is String, "\(line)")
        }
        #expect(result.stderr.contains("\"label\":\"nn.train\""), "\(result.stderr)")
    }
}
