import Foundation
import NNCluster

/// libFuzzer entry point: every input, read as an experiment file, must decode and validate or throw, never
/// trap. What decodes is also planned as a run would (partition sizes, client sampling) on synthetic labels, so
/// sizes and counts that pass validation are exercised too. Build with `swift build --sanitize fuzzer --product
/// nn-fuzz-experiment --scratch-path .build-fuzz`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzExperiment(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard let experiment = try? Experiment.decode(Data(bytes: data, count: size), source: "fuzz input"),
          experiment.clients <= 1000, experiment.model.widths.reduce(0, +) <= 5000 else { return 0 }
    let labels = (0..<2000).map { UInt8($0 % 10) }
    _ = try? experiment.partition.split(labels: labels, classes: 10, clients: experiment.clients, seed: experiment.seed)
    return 0
}
