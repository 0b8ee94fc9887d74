import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1

/// What each endpoint answers, and the request metrics: a function from a request to a reply, whatever the
/// transport.
struct Routes: Sendable {
    let store: ModelStore
    let bodyLimit: Int
    let logger: Logger
    let metrics: @Sendable () -> [UInt8]

    static let endpoints: Set<String> = ["/", "/healthz", "/v1/model", "/v1/predict", "/metrics"]

    func answer(_ request: HTTPRequestHead, body: ByteBuffer) -> Reply {
        let (path, query) = Self.split(request.uri)
        switch (request.method, path) {
        case (.GET, "/"), (.HEAD, "/"):
            return Reply(status: .ok, type: "text/html; charset=utf-8", body: DrawPage.bytes)
        case (.GET, "/healthz"):
            return .json(.ok, Array("{\"status\":\"ok\"}\n".utf8))
        case (.GET, "/v1/model"):
            let body = (try? JSONSerialization.data(withJSONObject: store.current.description(), options: [.sortedKeys])) ?? Data()
            return .json(.ok, Array(body) + [0x0A])
        case (.GET, "/metrics"):
            return Reply(status: .ok, type: "text/plain; version=0.0.4; charset=utf-8", body: metrics())
        case (.POST, "/v1/predict"):
            do {
                return try predict(request, query: query, body: body)
            } catch let error as RequestError {
                return .error(HTTPResponseStatus(statusCode: error.status), error.description)
            } catch {
                logger.error("POST /v1/predict: \(error)")
                return .error(.internalServerError, "internal error")
            }
        case (_, let path) where Self.endpoints.contains(path):
            return .error(.methodNotAllowed, "\(request.method) is not answered at \(path)")
        default:
            return .error(.notFound, "no such endpoint: \(path)")
        }
    }

    private func predict(_ request: HTTPRequestHead, query: [String: String], body: ByteBuffer) throws -> Reply {
        let type = request.headers.first(name: "content-type")?.lowercased() ?? ""
        if type.hasPrefix("multipart/") {
            throw RequestError.unsupportedMediaType("multipart uploads are not read: send the image itself as the body (curl --data-binary @digit.png -H 'Content-Type: image/png')")
        }
        let top = try query["top"].map { text -> Int in
            guard let n = Int(text), n >= 1 else { throw RequestError.badRequest("top must be a positive whole number, got '\(text)'") }
            return n
        }
        let model = store.current
        let width = model.spec.inputWidth
        let (inputs, count, fromImage) = try body.withUnsafeReadableBytes { bytes -> ([Float], Int, Bool) in
            guard let first = bytes.first(where: { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }) else {
                throw RequestError.badRequest("the body is empty: send JSON {\"instances\": [[…], …]} or a PNG or PGM image")
            }
            if first == UInt8(ascii: "{") || first == UInt8(ascii: "[") || type.hasPrefix("application/json") {
                let (values, count) = try InstancesReader.read(bytes, width: width)
                return (values, count, false)
            }
            guard width == DigitLayout.field * DigitLayout.field else {
                throw RequestError.badRequest("images are laid out as 28×28 inputs and this model takes \(width) values: send JSON instances")
            }
            return (try DigitLayout.mnistInput(try InkImage(decoding: Array(bytes))), 1, true)
        }
        Recorder(label: "nn_serve_batch_size").record(count)
        let logits = model.logits(inputs, count: count)
        guard logits.allSatisfy(\.isFinite) else { throw RequestError.unprocessable("the model's outputs are not finite for this input") }
        return .json(.ok, PredictionWriter.json(logits: logits, count: count, model: model, top: min(top ?? 3, model.spec.classes),
                                                inputs: fromImage && query["input"] == "true" ? inputs : nil))
    }

    /// Every response counted and timed under its endpoint and status.
    func record(_ request: HTTPRequestHead, status: HTTPResponseStatus, since start: ContinuousClock.Instant) {
        let path = Self.split(request.uri).path
        let endpoint = Self.endpoints.contains(path) ? path : "other"
        let code = String(status.code)
        Counter(label: "nn_serve_requests_total", dimensions: [("endpoint", endpoint), ("status", code)]).increment()
        if status.code >= 400 { Counter(label: "nn_serve_errors_total", dimensions: [("endpoint", endpoint), ("status", code)]).increment() }
        Metrics.Timer(label: "nn_serve_request_seconds", dimensions: [("endpoint", endpoint)]).record(duration: start.duration(to: .now))
    }

    /// The path and the query's parameters (no percent-decoding: the parameters are numbers and words).
    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            query[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return (String(uri[..<mark]), query)
    }
}
