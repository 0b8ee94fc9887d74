import NNProtocol

/// libFuzzer entry point: every input, read as frames (`FuzzInput`), must decode or throw, never trap. Build
/// with `swift build --sanitize fuzzer --product nn-fuzz-codec --scratch-path .build-fuzz`; `nn-fuzz-seeds`
/// writes the starting corpus.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCodec(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let frames = FuzzInput.frames(Array(UnsafeBufferPointer(start: data, count: size)))
    if let message = try? WireCodec.decode(frames) {
        // Whatever decodes must encode to bytes that decode and encode to the same bytes (compared as bytes:
        // a NaN in a float frame is not equal to itself).
        let encoded = WireCodec.encode(message)
        guard let again = try? WireCodec.decode(encoded) else { preconditionFailure("an encoded message does not decode") }
        precondition(WireCodec.encode(again).map(\.wireBytes) == encoded.map(\.wireBytes), "round trip changed a message")
    }
    return 0
}
