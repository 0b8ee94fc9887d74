/// The unknown-key check of experiment files: a misspelt key must be an error, not a default left in place.
enum StrictKeys {
    private struct AnyKey: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    /// Throws when the object `decoder` reads has a key that `Keys` does not list.
    static func check<Keys: CodingKey & CaseIterable>(_ decoder: Decoder, _: Keys.Type, in what: String) throws {
        let allowed = Keys.allCases.map(\.stringValue)
        guard let container = try? decoder.container(keyedBy: AnyKey.self) else { return }  // not an object: decoding says so
        if let key = container.allKeys.first(where: { !allowed.contains($0.stringValue) }) {
            throw ExperimentError("unknown key '\(key.stringValue)' in \(what); known keys: \(allowed.joined(separator: ", "))")
        }
    }
}
