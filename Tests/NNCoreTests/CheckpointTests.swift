import Foundation
import NNCore
import Testing

@Suite struct CheckpointTests {
    func temporaryPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nn-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    @Test func roundTripKeepsEveryBit() throws {
        let spec = try ModelSpec(widths: [5, 4, 3], activation: .tanh, batchNorm: true, dropout: 0.1, residualBlocks: 1, loss: .binaryCrossEntropy)
        let network = Network(spec: spec, seed: 9)
        for i in 0..<network.state.count { network.state[i] = Float(i) * 0.5 }
        let path = temporaryPath("round.safetensors")
        try Checkpoint(network: network, metadata: ["note": "x"]).save(to: path)
        let loaded = try Checkpoint.load(from: path)
        #expect(loaded.network.spec == spec)
        #expect(loaded.metadata == ["note": "x"])
        #expect(loaded.network.parameters.array.map(\.bitPattern) == network.parameters.array.map(\.bitPattern))
        #expect(loaded.network.state.array == network.state.array)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp-\(getpid())"))
    }

    @Test func fileLayoutFollowsTheFormat() throws {
        let network = Network(spec: try ModelSpec(widths: [3, 2]), seed: 1)
        let bytes = try SafeTensors(tensors: [SafeTensors.Tensor(name: "w", shape: [2, 3], values: network.parameters.array.prefix(6).map { $0 })],
                                    metadata: ["k": "v"]).encoded()
        let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8
        #expect(bytes[2..<8].allSatisfy { $0 == 0 })
        #expect((8 + headerLength) % 8 == 0)
        #expect(bytes.count == 8 + headerLength + 24)
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as! [String: Any]
        #expect((header["w"] as! [String: Any])["data_offsets"] as! [Int] == [0, 24])
        #expect((header["__metadata__"] as! [String: String]) == ["k": "v"])
    }

    @Test func corruptFilesAreClearErrors() throws {
        let network = Network(spec: try ModelSpec(widths: [3, 2]), seed: 1)
        let path = temporaryPath("good.safetensors")
        try Checkpoint(network: network).save(to: path)
        let good = try AtomicFile.read(path)

        func expectError(_ bytes: [UInt8], mentioning words: String) throws {
            let bad = temporaryPath("bad.safetensors")
            try AtomicFile.write(bytes, to: bad)
            do {
                _ = try Checkpoint.load(from: bad)
                Issue.record("loaded a bad checkpoint (\(words))")
            } catch let error as SafeTensorsError {
                #expect(error.description.contains(words), "\(error.description)")
                #expect(error.description.contains(bad))
            }
        }
        try expectError([1, 2, 3], mentioning: "too short")
        try expectError(Array(good.prefix(good.count - 4)), mentioning: "outside")  // truncated data
        try expectError(Array(good.prefix(40)), mentioning: "does not fit")                     // truncated header
        var garbage = good
        garbage[10] = 0xFF
        try expectError(garbage, mentioning: "JSON")
        try expectError(good + [0, 0, 0, 0], mentioning: "no tensor describes")
        let foreign = try SafeTensors(tensors: [.init(name: "weight", shape: [2], values: [1, 2])], metadata: [:]).encoded()
        try expectError(foreign, mentioning: "not an nn checkpoint")

        // A checkpoint whose model spec disagrees with its tensors.
        let file = try SafeTensors(decoding: good)
        var other = file
        other.metadata["model"] = String(decoding: try JSONEncoder.sorted.encode(try ModelSpec(widths: [4, 2])), as: UTF8.self)
        try expectError(try other.encoded(), mentioning: "shape")
        var nan = file
        nan.tensors[0].values[0] = .nan
        try expectError(try nan.encoded(), mentioning: "NaN")
        var f16 = String(decoding: good, as: UTF8.self)
        f16 = f16.replacingOccurrences(of: "\"F32\"", with: "\"F16\"")
        try expectError(Array(f16.utf8), mentioning: "F16")

        // Sizes that would overflow or allocate without bound are errors before anything is allocated: a shape
        // of 2⁶¹ floats in a 24-byte section, metadata asking for 12 layers of width 65,536, and 10⁹ residual blocks.
        let header = Array(#"{"w":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,24]}}"#.utf8)
        let length = UInt64(header.count)
        try expectError((0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) } + header + Array(repeating: 0, count: 24),
                        mentioning: "does not match")
        func spec(_ json: String) throws -> [UInt8] {
            var wide = file
            wide.metadata["model"] = json
            return try wide.encoded()
        }
        let fields = #""activation":"relu","batchNorm":false,"dropout":0,"loss":"cross-entropy""#
        let wide = "[784" + String(repeating: ",65536", count: 12) + ",10]"
        try expectError(try spec(#"{\#(fields),"residualBlocks":0,"widths":\#(wide)}"#), mentioning: "the limit is 67108864")
        try expectError(try spec(#"{\#(fields),"residualBlocks":1000000000,"widths":[784,64,10]}"#), mentioning: "at most 1024")
    }
}
