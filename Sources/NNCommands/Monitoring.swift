import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus

/// `--metrics-port`: the process's metrics in the Prometheus text format at GET /metrics, from a Hummingbird
/// server on its own threads beside the run.
struct MonitoringOptions: ParsableArguments {
    @Option(help: "Serve Prometheus metrics at http://ADDRESS:PORT/metrics (round, epoch, workers, samples/s, step time split, bytes, rejected messages, memory).")
    var metricsPort: Int?

    @Option(help: "Address for --metrics-port (default loopback; 0.0.0.0 for a scraper on another host).")
    var metricsAddress: String = "127.0.0.1"

    func validate() throws {
        if let metricsPort, !(1...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be 1…65535") }
    }

    /// Starts the server when asked for; a port that cannot be bound ends the process with the reason.
    func start(logger: Logger) {
        guard let metricsPort else { return }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let resident = Gauge(label: "nn_resident_memory_bytes")
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            resident.record(residentBytes())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        var serverLogger = logger
        serverLogger.logLevel = .warning
        let app = Application(router: router, configuration: .init(address: .hostname(metricsAddress, port: metricsPort)), logger: serverLogger)
        let address = "\(metricsAddress):\(metricsPort)"
        logger.info("serving Prometheus metrics at http://\(address)/metrics")
        Task.detached {
            do {
                // The run handles SIGTERM and SIGINT itself; the server ends with the process.
                try await app.runService(gracefulShutdownSignals: [])
            } catch {
                logger.critical("cannot serve metrics at \(address): \(error)")
                Foundation.exit(1)
            }
        }
    }
}

/// The resident set size now, from /proc/self/statm (0 where there is none).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
          let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}
