import NNCore

/// libFuzzer entry point: every input, read as a checkpoint file, must load or throw, never trap or allocate
/// without bound. Build with `swift build --sanitize fuzzer --product nn-fuzz-checkpoint --scratch-path .build-fuzz`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    _ = try? Checkpoint.decode(Array(UnsafeBufferPointer(start: data, count: size)), source: "fuzz input")
    return 0
}
