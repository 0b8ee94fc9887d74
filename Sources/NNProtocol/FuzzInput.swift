/// How a fuzz target reads one input as a message's frames: byte 0 picks the frame count (its value mod 4,
/// plus 1), the next count − 1 bytes are the lengths of all frames but the last (each cut to what is left),
/// and the rest is the last frame. `seeds` writes the codec's own examples in this layout.
public enum FuzzInput {
    public static func frames(_ input: [UInt8]) -> [Frame] {
        guard let first = input.first else { return [] }
        let count = Int(first % 4) + 1
        let lengths = input.dropFirst().prefix(count - 1).map(Int.init)
        var offset = 1 + lengths.count
        var frames: [Frame] = []
        for length in lengths {
            let end = min(offset + length, input.count)
            frames.append(.bytes(Array(input[offset..<end])))
            offset = end
        }
        frames.append(.bytes(Array(input[min(offset, input.count)...])))
        return frames
    }

    /// The input that `frames` reads back as these frames; nil when a frame but the last is over 255 bytes.
    public static func input(_ frames: [[UInt8]]) -> [UInt8]? {
        guard let last = frames.last, (1...4).contains(frames.count), frames.dropLast().allSatisfy({ $0.count <= 255 }) else { return nil }
        return [UInt8(frames.count - 1)] + frames.dropLast().map { UInt8($0.count) } + frames.dropLast().flatMap { $0 } + last
    }

    /// Every example message, encoded and laid out as a fuzz input, named by its type and position.
    public static var seeds: [(name: String, input: [UInt8])] {
        Message.examples.enumerated().map { i, message in
            let frames = WireCodec.encode(message).map(\.wireBytes)
            guard let input = input(frames) else { preconditionFailure("example \(i) has a frame over 255 bytes") }
            return ("\(i)-\(message.type)", input)
        }
    }
}
