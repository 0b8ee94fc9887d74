import FuzzSeeds
import Foundation

/// Writes a fuzz target's starting corpus (`codec`, `checkpoint`, `experiment` or `request`), one file per seed, into a folder.
@main
struct WriteSeeds {
    static func main() throws {
        let arguments = CommandLine.arguments
        guard arguments.count == 3, let target = FuzzSeeds.Target(rawValue: arguments[1]) else {
            FileHandle.standardError.write(Data("usage: nn-fuzz-seeds codec|checkpoint|experiment|request DIR\n".utf8))
            exit(2)
        }
        for seed in try FuzzSeeds.seeds(target) {
            try Data(seed.bytes).write(to: URL(fileURLWithPath: arguments[2]).appendingPathComponent(seed.name))
        }
    }
}
