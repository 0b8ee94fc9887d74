/// Counts of (true class, predicted class) pairs, and the metrics derived from them.
public struct ConfusionMatrix: Equatable, Codable, Sendable {
    public let classes: Int
    /// Row-major: `counts[truth * classes + predicted]`.
    public private(set) var counts: [Int]

    public init(classes: Int) {
        self.classes = classes
        counts = Array(repeating: 0, count: classes * classes)
    }

    private enum CodingKeys: String, CodingKey { case classes, counts }

    /// Checks that the counts fill a classes × classes matrix of non-negative numbers.
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        classes = try container.decode(Int.self, forKey: .classes)
        counts = try container.decode([Int].self, forKey: .counts)
        guard (1...65536).contains(classes), counts.count == classes * classes, counts.allSatisfy({ $0 >= 0 }) else {
            throw DecodingError.dataCorruptedError(forKey: .counts, in: container, debugDescription: "not a \(classes) × \(classes) matrix of counts")
        }
    }

    public mutating func add(truth: Int, predicted: Int) { counts[truth * classes + predicted] += 1 }

    /// Adds the counts of another matrix over the same classes.
    public mutating func add(_ other: ConfusionMatrix) {
        precondition(other.classes == classes)
        for i in counts.indices { counts[i] += other.counts[i] }
    }

    public subscript(truth: Int, predicted: Int) -> Int { counts[truth * classes + predicted] }

    public var total: Int { counts.reduce(0, +) }
    public var correct: Int { (0..<classes).reduce(0) { $0 + self[$1, $1] } }
    public var accuracy: Double { total == 0 ? 0 : Double(correct) / Double(total) }

    /// Of the samples predicted as `c`, the fraction that are `c` (0 when none was predicted).
    public func precision(_ c: Int) -> Double {
        let predicted = (0..<classes).reduce(0) { $0 + self[$1, c] }
        return predicted == 0 ? 0 : Double(self[c, c]) / Double(predicted)
    }

    /// Of the samples of class `c`, the fraction predicted as `c`.
    public func recall(_ c: Int) -> Double {
        let actual = (0..<classes).reduce(0) { $0 + self[c, $1] }
        return actual == 0 ? 0 : Double(self[c, c]) / Double(actual)
    }

    public func f1(_ c: Int) -> Double {
        let p = precision(c), r = recall(c)
        return p + r == 0 ? 0 : 2 * p * r / (p + r)
    }

    public func support(_ c: Int) -> Int { (0..<classes).reduce(0) { $0 + self[c, $1] } }

    /// Per-class precision, recall, F1 and support, their macro averages, and the matrix itself.
    public func report(classNames: [String]? = nil) -> String {
        let names = classNames ?? (0..<classes).map(String.init)
        let nameWidth = max(names.map(\.count).max() ?? 1, 9)
        func pad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(w - s.count, 0)) + s }
        func pct(_ x: Double) -> String { String(format: "%.2f", x * 100) }
        var lines = [pad("class", nameWidth) + pad("precision", 11) + pad("recall", 9) + pad("f1", 9) + pad("support", 9)]
        for c in 0..<classes {
            lines.append(pad(names[c], nameWidth) + pad(pct(precision(c)), 11) + pad(pct(recall(c)), 9) + pad(pct(f1(c)), 9) + pad("\(support(c))", 9))
        }
        let k = Double(classes)
        let macro = (0..<classes).map { (precision($0), recall($0), f1($0)) }
            .reduce((0.0, 0.0, 0.0)) { ($0.0 + $1.0 / k, $0.1 + $1.1 / k, $0.2 + $1.2 / k) }
        lines.append(pad("macro avg", nameWidth) + pad(pct(macro.0), 11) + pad(pct(macro.1), 9) + pad(pct(macro.2), 9) + pad("\(total)", 9))
        lines.append("")
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        let cell = max(String(counts.max() ?? 0).count + 1, 5)
        lines.append(pad("", nameWidth) + names.map { pad(String($0.prefix(cell - 1)), cell) }.joined())
        for t in 0..<classes {
            lines.append(pad(names[t], nameWidth) + (0..<classes).map { pad("\(self[t, $0])", cell) }.joined())
        }
        return lines.joined(separator: "\n")
    }
}
