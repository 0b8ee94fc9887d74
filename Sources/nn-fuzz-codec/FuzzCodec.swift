import NNProtocol

/// libFuzzer entry point: every input, split into frames, must decode or throw, never trap. Build with
/// `swift build --sanitize fuzzer --product nn-fuzz-codec --scratch-path .build-fuzz`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCodec(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    // The first byte chooses how many frames (1 to 3) the rest is cut into, at bytes 2 and 3.
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = bytes.first else { return 0 }
    let body = Array(bytes.dropFirst())
    let count = Int(first % 3) + 1
    var frames: [Frame] = []
    var cuts = [0]
    if count > 1, body.count >= 2 { cuts.append(min(Int(body[0]), body.count)) }
    if count > 2, body.count >= 2 { cuts.append(min(cuts.last! + Int(body[1]), body.count)) }
    cuts.append(body.count)
    for (a, b) in zip(cuts, cuts.dropFirst()) { frames.append(.bytes(Array(body[a..<max(a, b)]))) }
    if let message = try? WireCodec.decode(frames) {
        // Whatever decodes must encode to bytes that decode and encode to the same bytes (compared as bytes:
        // a NaN in a float frame is not equal to itself).
        let encoded = WireCodec.encode(message)
        guard let again = try? WireCodec.decode(encoded) else { preconditionFailure("an encoded message does not decode") }
        precondition(wireBytes(WireCodec.encode(again)) == wireBytes(encoded), "round trip changed a message")
    }
    return 0
}

func wireBytes(_ frames: [Frame]) -> [[UInt8]] {
    frames.map { frame in
        switch frame {
        case .bytes(let b): return b
        case .floats(let f): return f.withUnsafeBytes { Array($0) }
        }
    }
}
