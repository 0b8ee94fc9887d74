import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NNCore

/// Fetches a URL's bytes; a protocol so tests can stand in for the network.
public protocol Downloader: Sendable {
    func download(_ url: URL) async throws -> [UInt8]
}

/// Downloads with URLSession, with a request timeout and an HTTP status check.
public struct URLSessionDownloader: Downloader {
    public var timeout: TimeInterval = 60

    public init(timeout: TimeInterval = 60) { self.timeout = timeout }

    public func download(_ url: URL) async throws -> [UInt8] {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        let session = URLSession(configuration: configuration)
        let data: Data, response: URLResponse
        do {
            (data, response) = try await session.data(from: url)
        } catch let error as URLError {
            // Foundation's description of a network error is a nested dictionary dump; its message is enough.
            throw DataError(error.userInfo[NSLocalizedDescriptionKey] as? String ?? "network error \(error.code.rawValue)")
        }
        if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
            throw DataError("HTTP \(http.statusCode)")
        }
        return Array(data)
    }
}

/// Puts a data set's four files into a folder, each checked against the SHA-256 of its uncompressed content.
public struct DatasetFetcher: Sendable {
    public let kind: DatasetKind
    public var downloader: Downloader
    public var log: @Sendable (String) -> Void

    public init(kind: DatasetKind, downloader: Downloader = URLSessionDownloader(), log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.kind = kind
        self.downloader = downloader
        self.log = log
    }

    /// Checks `bytes` (raw or gzip) against `file`'s checksum.
    public static func verify(_ bytes: [UInt8], as file: DatasetKind.File, source: String) throws {
        let raw: [UInt8]
        do { raw = Gzip.isCompressed(bytes) ? try Gzip.decompress(bytes) : bytes } catch let error as DataError {
            throw DataError("\(source): \(error.description)")
        }
        let digest = SHA256.hex(raw)
        guard digest == file.sha256 else {
            throw DataError("\(source): SHA-256 mismatch for \(file.name): got \(digest), expected \(file.sha256)")
        }
    }

    /// Downloads every file not already present and valid in `directory`, trying each mirror in turn.
    public func download(to directory: String) async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for file in kind.files {
            if try alreadyPresent(file, in: directory) { continue }
            var failures: [String] = []
            var fetched: [UInt8]?
            for mirror in kind.mirrors {
                let url = mirror + file.name + ".gz"
                log("downloading \(url)")
                do {
                    let bytes = try await downloader.download(URL(string: url)!)
                    try DatasetFetcher.verify(bytes, as: file, source: url)
                    fetched = bytes
                    break
                } catch {
                    log("failed: \(url): \(error)")
                    failures.append("\(url): \(error)")
                }
            }
            guard let bytes = fetched else {
                throw DataError("could not fetch \(file.name) from any mirror:\n  " + failures.joined(separator: "\n  "))
            }
            try AtomicFile.write(bytes, to: directory + "/" + file.name + (Gzip.isCompressed(bytes) ? ".gz" : ""))
        }
    }

    /// Copies the files from a local folder (raw or .gz), verifying each.
    public func copy(from source: String, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for file in kind.files {
            guard let path = kind.locate(file, in: source) else {
                throw DataError("\(source) has no \(file.name) (raw or .gz)")
            }
            let bytes = try AtomicFile.read(path)
            try DatasetFetcher.verify(bytes, as: file, source: path)
            let target = directory + "/" + file.name + (Gzip.isCompressed(bytes) ? ".gz" : "")
            if URL(fileURLWithPath: target).standardizedFileURL == URL(fileURLWithPath: path).standardizedFileURL {
                log("verified \(path) in place")
                continue
            }
            try AtomicFile.write(bytes, to: target)
            log("verified \(path) → \(target)")
        }
    }

    private func alreadyPresent(_ file: DatasetKind.File, in directory: String) throws -> Bool {
        guard let path = kind.locate(file, in: directory) else { return false }
        do {
            try DatasetFetcher.verify(try AtomicFile.read(path), as: file, source: path)
            log("\(path) is present and verified")
            return true
        } catch {
            log("\(path) fails verification (\(error)); removing it and fetching it again")
            try FileManager.default.removeItem(atPath: path)
            return false
        }
    }
}
