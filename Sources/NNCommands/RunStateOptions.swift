import ArgumentParser
import NNCluster

/// Where a run keeps the state it can be resumed from.
struct RunStateOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Keep the run's state in this folder, so that --resume can continue it after a crash, a kill or a preemption.", valueName: "folder"),
            completion: .directory)
    var runDir: String?

    @Option(help: "Write the state every N steps (synchronous SGD, default 100), rounds (federated, default 1) or epochs (nn train, default 1); also at the end of each epoch and when stopped by SIGTERM or SIGINT.")
    var checkpointEvery: Int?

    @Option(help: ArgumentHelp("Continue the run whose state is in this folder; give the same settings as the first time.", valueName: "folder"),
            completion: .directory)
    var resume: String?

    func validate() throws {
        if let checkpointEvery, checkpointEvery < 1 { throw ValidationError("--checkpoint-every must be at least 1") }
        if checkpointEvery != nil, runDir == nil, resume == nil { throw ValidationError("--checkpoint-every needs --run-dir (or --resume)") }
        if let runDir, let resume, runDir != resume { throw ValidationError("--resume continues in its own folder; drop --run-dir or give the same folder") }
    }

    /// The settings, with `defaultEvery` when --checkpoint-every is not given; nil without a run folder.
    func settings(defaultEvery: Int) -> RunStateSettings? {
        guard let directory = resume ?? runDir else { return nil }
        return RunStateSettings(directory: directory, every: checkpointEvery ?? defaultEvery, resume: resume != nil)
    }
}
