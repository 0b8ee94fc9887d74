import Foundation

/// A one-line progress bar on standard error, redrawn at most ten times a second, and only on a terminal.
struct ProgressBar {
    let label: String
    let total: Int
    private let start = ContinuousClock.now
    private var lastDraw = ContinuousClock.now - .seconds(1)
    private let enabled = isatty(STDERR_FILENO) == 1

    init(label: String, total: Int) {
        self.label = label
        self.total = total
    }

    mutating func update(done: Int, detail: String) {
        guard enabled else { return }
        let now = ContinuousClock.now
        guard now - lastDraw >= .milliseconds(100) || done == total else { return }
        lastDraw = now
        let fraction = total == 0 ? 1 : Double(done) / Double(total)
        let width = 24
        let filled = Int(fraction * Double(width))
        let elapsed = start.duration(to: now).seconds
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(width - filled - 1, 0))
        let line = "\r\(label) [\(bar)] \(String(format: "%3.0f%%", fraction * 100)) \(detail) \(Format.rate(rate))/s ETA \(Format.seconds(eta))\u{1B}[K"
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Clears the line so that the next output starts clean.
    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
