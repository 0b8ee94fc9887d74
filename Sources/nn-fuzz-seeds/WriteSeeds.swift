import Foundation
import NNProtocol

/// Writes the frame decoder's fuzzing corpus, one file per example message, into the folder given.
@main
struct WriteSeeds {
    static func main() throws {
        guard CommandLine.arguments.count == 2 else {
            FileHandle.standardError.write(Data("usage: nn-fuzz-seeds DIR\n".utf8))
            exit(2)
        }
        for seed in FuzzInput.seeds {
            try Data(seed.input).write(to: URL(fileURLWithPath: CommandLine.arguments[1]).appendingPathComponent(seed.name))
        }
    }
}
