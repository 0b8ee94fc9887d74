/// A prediction's JSON answer, written directly: numbers in their shortest exact form.
///
/// `{"predictions": [{"class": 7, "top": [{"class": 7, "probability": 0.998}, …], "probabilities": [ten numbers],
/// "logits": [ten numbers]}, …]}`, one entry per instance in order; with `inputs`, also the 784 values the picture
/// was laid out as (`"input"`), which the draw page shows.
enum PredictionWriter {
    static func json(logits: [Float], count: Int, model: ServedModel, top: Int, inputs: [Float]?) -> [UInt8] {
        let classes = model.spec.classes
        var out: [UInt8] = []
        out.reserveCapacity(count * (classes * 30 + 120) + (inputs?.count ?? 0) * 12)
        out.append(contentsOf: #"{"predictions":["#.utf8)
        for row in 0..<count {
            let z = Array(logits[(row * classes)..<((row + 1) * classes)])
            let p = model.spec.loss.probabilities(z)
            let ranked = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }.prefix(top)
            if row > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"class":\#(ranked.first!),"top":["#.utf8)
            for (k, c) in ranked.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: #"{"class":\#(c),"probability":"#.utf8)
                out.append(contentsOf: p[c].description.utf8)
                out.append(UInt8(ascii: "}"))
            }
            out.append(contentsOf: #"],"probabilities":"#.utf8)
            append(p, to: &out)
            out.append(contentsOf: #","logits":"#.utf8)
            append(z, to: &out)
            if let inputs {
                out.append(contentsOf: #","input":"#.utf8)
                append(inputs, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: "]}\n".utf8)
        return out
    }

    private static func append(_ values: [Float], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (i, v) in values.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: v.description.utf8)
        }
        out.append(UInt8(ascii: "]"))
    }
}
