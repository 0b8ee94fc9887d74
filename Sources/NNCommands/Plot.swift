import ArgumentParser
import Foundation
import NNCore

/// `nn plot`: test accuracy curves of federated runs (their JSONL logs) as one SVG figure, against rounds and
/// against bytes moved, with a legend and the target accuracy as a dashed line.
public struct Plot: ParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Draw test accuracy against rounds, bytes moved and (private runs) ε from federated runs' --metrics logs, as SVG.")

    @Argument(help: "Per-round logs (JSONL) written by nn simulate, nn coordinator or nn launch with --metrics.")
    var runs: [String]

    @Option(name: .shortAndLong, help: "The SVG file to write.")
    var output: String

    @Option(help: "Legend labels, one per run, joined by commas (default: the file names).")
    var labels: String?

    @Option(help: "Lowest test accuracy on the y axis, e.g. 0.9 (default: the lowest in the runs).")
    var yMin: Double?

    @Option(help: "Target accuracy line (default: the runs' target).")
    var target: Double?

    public func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("give at least one run log") }
        if let labels, labels.split(separator: ",", omittingEmptySubsequences: false).count != runs.count {
            throw ValidationError("--labels has \(labels.split(separator: ",").count) labels for \(runs.count) runs")
        }
        if let yMin, !(0..<1).contains(yMin) { throw ValidationError("--y-min must be in [0, 1)") }
    }

    struct Curve {
        var label: String
        var rounds: [Double] = []
        var bytes: [Double] = []
        var accuracy: [Double] = []
        /// ε so far in each round of a differentially private run; NaN where the log has none (or it is infinite).
        var epsilon: [Double] = []
        var target: Double?
    }

    static func readCurve(_ path: String, label: String) throws -> Curve {
        let text: String
        do { text = String(decoding: try AtomicFile.read(path), as: UTF8.self) } catch {
            throw ValidationError("cannot read \(path): \(error)")
        }
        var curve = Curve(label: label)
        for (n, line) in text.split(separator: "\n").enumerated() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw ValidationError("\(path):\(n + 1): not a JSON object")
            }
            if let target = object["target_accuracy"] as? Double { curve.target = target }
            guard let round = object["round"] as? Int else { continue }
            guard let bytes = object["bytes_total"] as? Int else {
                throw ValidationError("\(path):\(n + 1): a round without bytes_total; is this a federated run's log?")
            }
            // A round the run did not evaluate (the experiment's evaluateEvery) has no point to draw.
            guard let accuracy = object["test_accuracy"] as? Double else { continue }
            curve.rounds.append(Double(round)); curve.accuracy.append(accuracy); curve.bytes.append(Double(bytes) / 1e6)
            curve.epsilon.append((object["epsilon"] as? Double) ?? .nan)
        }
        guard !curve.rounds.isEmpty else { throw ValidationError("\(path) holds no rounds") }
        return curve
    }

    public func run() throws {
        let names = labels.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
            ?? runs.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent }
        let curves = try zip(runs, names).map { try Self.readCurve($0, label: $1) }
        let svg = Figure(curves: curves, yMin: yMin, target: target ?? curves.compactMap(\.target).first).svg()
        try AtomicFile.write(svg, to: output)
        print("wrote \(output): \(curves.count) run\(curves.count == 1 ? "" : "s")")
    }
}

/// Panels of test accuracy against rounds, against megabytes moved and, when a run is differentially private,
/// against ε spent; a legend; plain SVG.
struct Figure {
    let curves: [Plot.Curve]
    let yMin: Double?
    let target: Double?

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    let panelWidth = 420.0, panelHeight = 300.0, margin = (left: 60.0, right: 20.0, top: 30.0, bottom: 50.0)

    func svg() -> String {
        let legendHeight = Double(curves.count) * 18 + 10
        var panels: [(title: String, label: String, x: KeyPath<Plot.Curve, [Double]>)] = [
            ("test accuracy against rounds", "round", \.rounds), ("test accuracy against bytes moved", "MB moved", \.bytes),
        ]
        if curves.contains(where: { $0.epsilon.contains(where: \.isFinite) }) {
            panels.append(("test accuracy against privacy spent", "ε (at the run's δ)", \.epsilon))
        }
        let width = Double(panels.count) * (panelWidth + margin.left + margin.right)
        let height = panelHeight + margin.top + margin.bottom + legendHeight
        let low = yMin ?? max(0, (curves.flatMap(\.accuracy).min() ?? 0) - 0.01)
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>

            """
        for (i, p) in panels.enumerated() {
            out += panel(x0: margin.left + Double(i) * (panelWidth + margin.left + margin.right), title: p.title, xLabel: p.label, x: p.x, low: low)
        }
        for (i, curve) in curves.enumerated() {
            let y = panelHeight + margin.top + margin.bottom + 8 + Double(i) * 18
            out += "<line x1=\"\(margin.left)\" y1=\"\(y)\" x2=\"\(margin.left + 24)\" y2=\"\(y)\" stroke=\"\(color(i))\" stroke-width=\"2\"/>"
            out += "<text x=\"\(margin.left + 30)\" y=\"\(y + 4)\">\(escape(curve.label))</text>\n"
        }
        return out + "</svg>\n"
    }

    private func color(_ i: Int) -> String { Self.colors[i % Self.colors.count] }

    private func panel(x0: Double, title: String, xLabel: String, x: KeyPath<Plot.Curve, [Double]>, low: Double) -> String {
        let xMax = curves.map { $0[keyPath: x].filter(\.isFinite).max() ?? 1 }.max() ?? 1
        let xTicks = Self.ticks(0, xMax)
        let xHigh = max(xTicks.last ?? xMax, xMax)
        let yTicks = Self.ticks(low, 1).filter { $0 >= low - 1e-9 && $0 <= 1 + 1e-9 }
        func px(_ v: Double) -> Double { x0 + v / xHigh * panelWidth }
        func py(_ v: Double) -> Double { margin.top + (1 - (min(max(v, low), 1) - low) / (1 - low)) * panelHeight }
        var s = "<text x=\"\(x0 + panelWidth / 2)\" y=\"\(margin.top - 10)\" text-anchor=\"middle\" font-weight=\"bold\">\(title)</text>\n"
        s += "<rect x=\"\(x0)\" y=\"\(margin.top)\" width=\"\(panelWidth)\" height=\"\(panelHeight)\" fill=\"none\" stroke=\"#444\"/>\n"
        for t in yTicks {
            s += "<line x1=\"\(x0)\" y1=\"\(py(t))\" x2=\"\(x0 + panelWidth)\" y2=\"\(py(t))\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(x0 - 6)\" y=\"\(py(t) + 4)\" text-anchor=\"end\">\(Self.label(t * 100))%</text>\n"
        }
        for t in xTicks {
            s += "<line x1=\"\(px(t))\" y1=\"\(margin.top)\" x2=\"\(px(t))\" y2=\"\(margin.top + panelHeight)\" stroke=\"#eee\"/>"
            s += "<text x=\"\(px(t))\" y=\"\(margin.top + panelHeight + 16)\" text-anchor=\"middle\">\(Self.label(t))</text>\n"
        }
        s += "<text x=\"\(x0 + panelWidth / 2)\" y=\"\(margin.top + panelHeight + 36)\" text-anchor=\"middle\">\(xLabel)</text>\n"
        if let target, target > low {
            s += "<line x1=\"\(x0)\" y1=\"\(py(target))\" x2=\"\(x0 + panelWidth)\" y2=\"\(py(target))\" stroke=\"#000\" stroke-dasharray=\"5,4\"/>"
            // Above the line, or below it when the line runs near the top of the panel.
            let labelY = py(target) - margin.top < 16 ? py(target) + 14 : py(target) - 4
            s += "<text x=\"\(x0 + panelWidth - 4)\" y=\"\(labelY)\" text-anchor=\"end\">target \(Self.label(target * 100))%</text>\n"
        }
        for (i, curve) in curves.enumerated() {
            let points = zip(curve[keyPath: x], curve.accuracy).filter { $0.0.isFinite }
                .map { String(format: "%.1f,%.1f", px($0), py($1)) }.joined(separator: " ")
            guard !points.isEmpty else { continue }
            s += "<polyline fill=\"none\" stroke=\"\(color(i))\" stroke-width=\"1.5\" points=\"\(points)\"/>\n"
        }
        return s
    }

    /// About five round-numbered ticks from `low` to `high`.
    static func ticks(_ low: Double, _ high: Double) -> [Double] {
        let span = max(high - low, 1e-9)
        let raw = span / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw }!
        var ticks: [Double] = []
        var t = (low / step).rounded(.up) * step
        while t <= high + step * 0.999 {
            ticks.append(t)
            t += step
        }
        return ticks
    }

    static func label(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(format: "%g", (v * 100).rounded() / 100)
    }

    private func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
