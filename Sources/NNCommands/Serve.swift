import ArgumentParser
import NNServing

public struct Serve: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Serve a checkpoint over HTTP: predictions from JSON or images, a draw-a-digit page, metrics.",
        discussion: """
            POST /v1/predict: JSON {"instances": [[784 values in 0…1 or 0…255], …]} (up to 1024), or a PNG or PGM image \
            (any size; laid out like an MNIST digit); answers the top classes and every probability per instance.
            GET /v1/model, GET /healthz, GET /metrics (Prometheus), GET / (draw a digit).
            The checkpoint is loaded again when its file changes or on SIGHUP; SIGTERM finishes requests in flight, then exits.
            """)

    @Option(help: "Checkpoint to serve (safetensors).", completion: .file(extensions: ["safetensors"]))
    var model: String

    @Option(help: "HOST:PORT to listen on (port 0: any free port, logged).")
    var bind: String = "127.0.0.1:8080"

    @Option(help: "Largest request body in bytes.")
    var bodyLimit: Int = 8 << 20

    @OptionGroup var global: GlobalOptions

    var address: (host: String, port: Int)? {
        guard let colon = bind.lastIndex(of: ":"), let port = Int(bind[bind.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        let host = String(bind[..<colon])
        return host.isEmpty ? nil : (host, port)
    }

    public func validate() throws {
        guard address != nil else { throw ValidationError("--bind takes HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080; got '\(bind)'") }
        guard bodyLimit >= 1024 else { throw ValidationError("--body-limit must be at least 1024 bytes") }
    }

    public func run() async throws {
        let logger = try global.start("nn.serve")
        let store = try ModelStore(path: model, logger: logger)
        let render = MonitoringOptions.bootstrapPrometheus()
        let (host, port) = address!
        try await InferenceServer(store: store, settings: .init(host: host, port: port, bodyLimit: bodyLimit), logger: logger, metrics: render).run()
    }
}
