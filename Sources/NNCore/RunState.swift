import Foundation

/// State that a run keeps between its rounds, and writes into a run state to be resumed.
public protocol Resumable: AnyObject {
    func save(into state: inout RunState)
    func restore(from state: RunState) throws
}

/// Everything a run needs to go on exactly where it stopped, as one safetensors file: named float vectors
/// (parameters, batch-norm state, optimizer moments) and named text values (counters, settings, history as
/// JSON). Written atomically (temporary file, fsync, rename), so a kill at any moment leaves the previous state
/// or the new one.
public struct RunState {
    public static let format = "nn-run-state/1"
    /// The file in a run directory.
    public static let fileName = "state.safetensors"

    public var vectors: [String: [Float]] = [:]
    public var values: [String: String] = [:]

    public init() {}

    public func save(in directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try AtomicFile.write(try encoded(), to: "\(directory)/\(Self.fileName)")
    }

    public static func load(from directory: String) throws -> RunState {
        let path = "\(directory)/\(fileName)"
        guard FileManager.default.fileExists(atPath: path) else { throw FileError("\(directory) holds no run state (\(fileName)): nothing to resume") }
        do { return try RunState(decoding: try AtomicFile.read(path)) } catch { throw FileError("\(path): \(error)") }
    }

    /// As a safetensors file: the file in a run directory, and a ring worker's starting replica.
    public func encoded() throws -> [UInt8] {
        var metadata = values
        metadata["format"] = Self.format
        let tensors = vectors.keys.sorted().map { SafeTensors.Tensor(name: $0, shape: [vectors[$0]!.count], values: vectors[$0]!) }
        return try SafeTensors(tensors: tensors, metadata: metadata).encoded()
    }

    public init(decoding bytes: [UInt8]) throws {
        let file = try SafeTensors(decoding: bytes)
        guard file.metadata["format"] == Self.format else { throw FileError("not an nn run state (format \(Self.format))") }
        values = file.metadata.filter { $0.key != "format" }
        for tensor in file.tensors { vectors[tensor.name] = tensor.values }
    }

    /// The value under `key`; throws naming the file's missing entry.
    public func value(_ key: String) throws -> String {
        guard let value = values[key] else { throw FileError("the run state has no '\(key)'") }
        return value
    }

    public func vector(_ key: String, count: Int) throws -> [Float] {
        guard let vector = vectors[key] else { throw FileError("the run state has no vector '\(key)'") }
        guard vector.count == count else { throw FileError("the run state's '\(key)' has \(vector.count) values, the run needs \(count)") }
        return vector
    }

    public func integer(_ key: String) throws -> Int {
        guard let n = Int(try value(key)) else { throw FileError("the run state's '\(key)' is not a number") }
        return n
    }

    /// A Codable value stored as JSON.
    public mutating func set<T: Encodable>(_ key: String, json value: T) throws {
        values[key] = String(decoding: try JSONEncoder.sorted.encode(value), as: UTF8.self)
    }

    public func json<T: Decodable>(_ key: String, as type: T.Type) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(try value(key).utf8)) } catch let error as FileError { throw error } catch {
            throw FileError("the run state's '\(key)' cannot be read: \(error)")
        }
    }

    /// Network parameters and batch-norm state under `prefix`.
    public mutating func set(_ network: Network, as prefix: String) {
        vectors["\(prefix).parameters"] = network.parameters.array
        vectors["\(prefix).state"] = network.state.array
    }

    public func restore(_ network: Network, from prefix: String) throws {
        network.load(parameters: try vector("\(prefix).parameters", count: network.parameterCount),
                     state: try vector("\(prefix).state", count: network.state.count))
    }

    /// The keys whose values differ between two settings dictionaries, as "key: was → now" lines.
    public static func differences(saved: [String: String], current: [String: String]) -> [String] {
        Set(saved.keys).union(current.keys).sorted().compactMap { key in
            saved[key] == current[key] ? nil : "\(key): \(saved[key] ?? "unset") → \(current[key] ?? "unset")"
        }
    }
}
