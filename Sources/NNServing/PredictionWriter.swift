/// A prediction's JSON answer, written directly: numbers in their shortest exact form.
///
/// `{"predictions": [{"class": 7, "top": [{"class": 7, "probability": 0.998}, …], "probabilities": [ten numbers],
/// "logits": [ten numbers]}, …]}`, one entry per instance in order; with `inputs`, also the 784 values the picture
/// was laid out as (`"input"`), which the draw page shows.
enum PredictionWriter {
    static func json(logits: [Float], count: Int, model: ServedModel, top: Int, inputs: [Float]?) -> [UInt8] {
        let classes = model.spec.classes
        var out = "{\"predictions\":["
        out.reserveCapacity(count * (classes * 40 + 200))
        for row in 0..<count {
            let z = Array(logits[(row * classes)..<((row + 1) * classes)])
            let p = model.spec.loss.probabilities(z)
            let ranked = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }.prefix(top)
            if row > 0 { out += "," }
            out += "{\"class\":\(ranked.first!),\"top\":["
            out += ranked.map { "{\"class\":\($0),\"probability\":\(p[$0])}" }.joined(separator: ",")
            out += "],\"probabilities\":[\(list(p))],\"logits\":[\(list(z))]"
            if let inputs { out += ",\"input\":[\(list(inputs))]" }
            out += "}"
        }
        out += "]}\n"
        return Array(out.utf8)
    }

    private static func list(_ values: [Float]) -> String { values.map { "\($0)" }.joined(separator: ",") }
}
