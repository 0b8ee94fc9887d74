import Dispatch
import Foundation
import NNCluster

/// The signal sources, kept alive for the life of the process.
nonisolated(unsafe) private var signalSources: [DispatchSourceSignal] = []

/// Turns SIGTERM (what schedulers send) and SIGINT into a stop request, so a run ends as if it were done
/// (workers told, checkpoint written, exit 0) instead of being killed.
func stopRequestOnSignals() -> StopRequest {
    let stop = StopRequest()
    for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler { stop.request("received \(name)") }
        source.resume()
        signalSources.append(source)
    }
    return stop
}
