import ArgumentParser
import NNData

public struct DataCommand: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(commandName: "data", abstract: "Get data sets.", subcommands: [Fetch.self])

    public struct Fetch: AsyncParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Download a data set from its public mirrors, or copy it from a folder, verifying every file's SHA-256.")

        @Option(help: "Data set: \(DatasetKind.allCases.map(\.rawValue).joined(separator: ", ")).")
        var dataset: DatasetKind = .mnist

        @Option(help: "Destination folder (default: the data set's default folder).", completion: .directory)
        var to: String?

        @Option(help: "Take the files from this local folder instead of downloading them.", completion: .directory)
        var from: String?

        @OptionGroup var global: GlobalOptions

        public func run() async throws {
            let logger = try global.start("nn.data")
            let target = to ?? dataset.defaultDirectory()
            let fetcher = DatasetFetcher(kind: dataset, log: { logger.info("\($0)") })
            if let from {
                try fetcher.copy(from: from, to: target)
            } else {
                try await fetcher.download(to: target)
            }
            print("\(dataset.rawValue) is in \(target), every file verified")
        }
    }
}
