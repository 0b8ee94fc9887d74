import NNServing

/// libFuzzer entry point: every input, read as a prediction request's body (JSON instances) and as an uploaded
/// picture laid out for the model, must be answered or refused, never trap or allocate without bound. Build with
/// `swift build --sanitize fuzzer --product nn-fuzz-request --scratch-path .build-fuzz`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    _ = try? InstancesReader.read(bytes, width: 4)
    if let image = try? InkImage(decoding: Array(bytes)) { _ = try? DigitLayout.mnistInput(image) }
    return 0
}
