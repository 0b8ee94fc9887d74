import Foundation
@testable import NNTensorBoard
import TestSupport
import Testing

@Suite struct EventFileTests {
    /// The standard check values of CRC-32C, and TFRecord's mask of one.
    @Test func crc32c() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        let crc = CRC32C.checksum([UInt8]())
        #expect(CRC32C.masked([UInt8]()) == ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
    }

    /// Every record of a written file has a length and data whose masked CRCs check, and the events decode:
    /// first the file version, then the scalars and the histogram as written.
    @Test func recordsRoundTrip() throws {
        let dir = temporaryDirectory()
        let file = try EventFile(directory: dir)
        try file.scalars([("loss", 0.25), ("accuracy", 0.875)], step: 3)
        let values: [Float] = [-1, 0, 0.5, 2]
        try values.withUnsafeBufferPointer { try file.histogram("weights/0.weight", values: $0, step: 3, buckets: 4) }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file.path)))
        var events: [Tensorboard_Event] = []
        var at = 0
        func u32(_ i: Int) -> UInt32 { bytes[i..<(i + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        while at < bytes.count {
            let lengthBytes = Array(bytes[at..<(at + 8)])
            let length = Int(lengthBytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            #expect(u32(at + 8) == CRC32C.masked(lengthBytes))
            let data = Array(bytes[(at + 12)..<(at + 12 + length)])
            #expect(u32(at + 12 + length) == CRC32C.masked(data))
            events.append(try Tensorboard_Event(serializedBytes: data))
            at += 16 + length
        }
        #expect(events.count == 3)
        #expect(events[0].fileVersion == "brain.Event:2")
        #expect(events[1].step == 3 && events[1].summary.value.map(\.tag) == ["loss", "accuracy"])
        #expect(events[1].summary.value.map(\.simpleValue) == [0.25, 0.875])
        let histogram = events[2].summary.value[0].histo
        #expect(histogram.num == 4 && histogram.min == -1 && histogram.max == 2 && histogram.sum == 1.5 && histogram.sumSquares == 5.25)
        #expect(histogram.bucketLimit == [-0.25, 0.5, 1.25, 2] && histogram.bucket == [1, 1, 1, 1])
    }
}
