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
        let render = Self.bootstrapPrometheus()
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: render())))
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

extension MonitoringOptions {
    /// Makes Prometheus the process's metrics backend; returns what renders its text format, resident memory included.
    /// Latency histograms are in buckets from 50 µs to 10 s: a prediction takes well under a millisecond.
    static func bootstrapPrometheus() -> @Sendable () -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10].map { .microseconds(Int64($0 * 1e6)) }
        factory.valueHistogramBuckets["nn_serve_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
        MetricsSystem.bootstrap(factory)
        let resident = Gauge(label: "nn_resident_memory_bytes")
        return {
            resident.record(residentBytes())
            return registry.emitToBuffer()
        }
    }
}

/// The resident set size now, from /proc/self/statm (0 where there is none).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
          let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}
