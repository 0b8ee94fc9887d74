import Foundation
import NNCore
import NNData
import TestSupport
import Testing

/// Serves files from a folder as if they were mirrors; mirrors named in `failing` fail, those in `corrupting`
/// return damaged bytes.
struct FolderDownloader: Downloader {
    let folder: String
    var failing: Set<String> = []
    var corrupting: Set<String> = []
    let requests = Requests()

    final class Requests: @unchecked Sendable {
        private let lock = NSLock()
        private var urls: [String] = []
        func add(_ u: String) { lock.lock(); urls.append(u); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return urls }
    }

    func download(_ url: URL) async throws -> [UInt8] {
        requests.add(url.absoluteString)
        let host = url.host ?? ""
        if failing.contains(host) { throw DataError("connection refused") }
        var bytes = try AtomicFile.read(folder + "/" + url.lastPathComponent)
        if corrupting.contains(host) { bytes[bytes.count / 2] ^= 1 }
        return bytes
    }
}

@Suite struct MNISTTests {
    @Test func loadsTheRealFiles() throws {
        let (train, test) = try DatasetKind.mnist.load(from: try mnistDirectory())
        #expect(train.sampleCount == 60_000 && test.sampleCount == 10_000)
        #expect(train.rows == 28 && train.columns == 28 && train.images.count == 47_040_000)
        // Known first labels of MNIST: 5 0 4 1 9 (training) and 7 2 1 0 4 (test).
        #expect(Array(train.labels.prefix(5)) == [5, 0, 4, 1, 9])
        #expect(Array(test.labels.prefix(5)) == [7, 2, 1, 0, 4])
    }

    @Test func copiesAndVerifiesFromAFolder() throws {
        let source = try mnistDirectory()
        let target = temporaryDirectory()
        try DatasetFetcher(kind: .mnist).copy(from: source, to: target)
        for file in DatasetKind.mnist.files { #expect(DatasetKind.mnist.locate(file, in: target) != nil) }
        #expect(try DatasetKind.mnist.load(from: target).test.sampleCount == 10_000)

        // A file of the right name, format and size but the wrong content: every label 0 turned into 1.
        let swapped = temporaryDirectory()
        for file in DatasetKind.mnist.files {
            try FileManager.default.copyItem(atPath: DatasetKind.mnist.locate(file, in: source)!, toPath: swapped + "/" + file.name + ".gz")
        }
        var labels = try AtomicFile.read(swapped + "/t10k-labels-idx1-ubyte.gz")
        labels = gzip(try Gzip.decompress(labels).map { $0 == 0 ? 1 : $0 })
        try AtomicFile.write(labels, to: swapped + "/t10k-labels-idx1-ubyte.gz")
        expectDataError("SHA-256 mismatch", "t10k-labels-idx1-ubyte", DatasetKind.mnist.testLabels.sha256) {
            try DatasetFetcher(kind: .mnist).copy(from: swapped, to: temporaryDirectory())
        }
    }

    @Test func downloadTriesMirrorsInTurn() async throws {
        let source = try mnistDirectory()
        let hosts = DatasetKind.mnist.mirrors.map { URL(string: $0)!.host! }
        let downloader = FolderDownloader(folder: source, failing: [hosts[0]], corrupting: [hosts[1]])
        let target = temporaryDirectory()
        try await DatasetFetcher(kind: .mnist, downloader: downloader).download(to: target)
        #expect(try DatasetKind.mnist.load(from: target).train.sampleCount == 60_000)
        #expect(downloader.requests.all.count == 12)  // three mirrors for each of the four files

        // Everything already there and valid: no request at all.
        let again = FolderDownloader(folder: source)
        try await DatasetFetcher(kind: .mnist, downloader: again).download(to: target)
        #expect(again.requests.all.isEmpty)

        // Every mirror fails: one error that names each.
        let hopeless = FolderDownloader(folder: source, failing: Set(hosts))
        do {
            try await DatasetFetcher(kind: .mnist, downloader: hopeless).download(to: temporaryDirectory())
            Issue.record("download succeeded with every mirror failing")
        } catch let error as DataError {
            for mirror in DatasetKind.mnist.mirrors { #expect(error.description.contains(mirror)) }
        }
    }
}
