import Foundation
import SwiftProtobuf

// GENERATING: tensorboard.pb.swift is committed. After changing tensorboard.proto, build swift-protobuf's
// protoc-gen-swift (same version as Package.swift names) and run, in this folder:
//   protoc --plugin=protoc-gen-swift=PATH/protoc-gen-swift --swift_out=. --swift_opt=Visibility=Internal tensorboard.proto

/// A TensorBoard event file (`events.out.tfevents.TIME.HOST` in a log folder): TFRecord framing (length, its
/// masked CRC-32C, the serialized `Event`, its masked CRC-32C) of protobuf events. Each record is flushed as it is
/// written, so that TensorBoard shows a run while it goes on; a record cut short by a crash is skipped by readers.
public final class EventFile {
    public let path: String
    private let handle: FileHandle

    /// Creates the file in `directory` (made if missing) and writes the file-version event TensorBoard expects first.
    public init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let now = Date().timeIntervalSince1970
        path = "\(directory)/events.out.tfevents.\(Int(now)).\(ProcessInfo.processInfo.hostName).\(getpid())"
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        self.handle = handle
        var first = Tensorboard_Event()
        first.wallTime = now
        first.fileVersion = "brain.Event:2"
        try write(first)
    }

    deinit { try? handle.close() }

    /// Scalars under their tags at `step`, as one event.
    public func scalars(_ values: [(tag: String, value: Double)], step: Int) throws {
        var summary = Tensorboard_Summary()
        summary.value = values.map { tag, value in
            var v = Tensorboard_Summary.Value()
            v.tag = tag
            v.simpleValue = Float(value)
            return v
        }
        try write(summary: summary, step: step)
    }

    /// A histogram of `values` under `tag` at `step`: `buckets` equal-width buckets between their minimum and maximum.
    public func histogram(_ tag: String, values: UnsafeBufferPointer<Float>, step: Int, buckets: Int = 30) throws {
        guard let low = values.min(), let high = values.max() else { return }
        var histogram = Tensorboard_HistogramProto()
        histogram.min = Double(low)
        histogram.max = Double(high)
        histogram.num = Double(values.count)
        var counts = [Double](repeating: 0, count: buckets)
        let width = (Double(high) - Double(low)) / Double(buckets)
        for x in values {
            histogram.sum += Double(x)
            histogram.sumSquares += Double(x) * Double(x)
            counts[width > 0 ? min(Int((Double(x) - Double(low)) / width), buckets - 1) : 0] += 1
        }
        histogram.bucketLimit = (1...buckets).map { Double(low) + width * Double($0) }
        histogram.bucket = counts
        var value = Tensorboard_Summary.Value()
        value.tag = tag
        value.histo = histogram
        var summary = Tensorboard_Summary()
        summary.value = [value]
        try write(summary: summary, step: step)
    }

    private func write(summary: Tensorboard_Summary, step: Int) throws {
        var event = Tensorboard_Event()
        event.wallTime = Date().timeIntervalSince1970
        event.step = Int64(step)
        event.summary = summary
        try write(event)
    }

    private func write(_ event: Tensorboard_Event) throws {
        let data: [UInt8] = try event.serializedBytes()
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian, Array.init)
        var record = length
        record += withUnsafeBytes(of: CRC32C.masked(length).littleEndian, Array.init)
        record += data
        record += withUnsafeBytes(of: CRC32C.masked(data).littleEndian, Array.init)
        try handle.write(contentsOf: record)
    }
}
