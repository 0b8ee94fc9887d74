import Metrics

/// A run's numbers as swift-metrics series, for a Prometheus endpoint (`--metrics-port`); without a bootstrapped
/// backend every call is a no-op.
struct CoordinatorMetrics {
    private let round = Gauge(label: "nn_round")
    private let workersLive = Gauge(label: "nn_workers_live")
    private let workersLost = Counter(label: "nn_workers_lost_total")
    private let samplesPerSecond = Gauge(label: "nn_samples_per_second")
    private let stepSeconds = ["total", "compute", "communication", "aggregation"].map { Gauge(label: "nn_round_seconds", dimensions: [("part", $0)]) }
    private let bytesSent = Counter(label: "nn_bytes_sent_total")
    private let bytesReceived = Counter(label: "nn_bytes_received_total")
    private let rejected = Counter(label: "nn_rejected_messages_total")
    private let missed = Counter(label: "nn_results_missed_total")

    /// After round `report.round` (from 0): its figures; `newlyRejected` the messages rejected since the last.
    func record(_ report: RoundReport, newlyRejected: Int) {
        round.record(report.round + 1)
        workersLive.record(report.workers)
        samplesPerSecond.record(report.seconds > 0 ? Double(report.result.samples) / report.seconds : 0)
        for (gauge, value) in zip(stepSeconds, [report.seconds, report.result.computeSeconds, report.communicationSeconds, report.aggregationSeconds]) {
            gauge.record(value)
        }
        bytesSent.increment(by: Int64(report.bytesSent))
        bytesReceived.increment(by: Int64(report.bytesReceived))
        rejected.increment(by: Int64(newlyRejected))
        missed.increment(by: Int64(report.missed.count))
    }

    func lostWorker() { workersLost.increment() }
}
