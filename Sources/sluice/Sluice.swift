import ArgumentParser
import Foundation
import SluicePipeline

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Sluice: a Kafka-fed curation platform for language-model training data.",
        discussion: """
            Records stream from sources into raw Kafka topics; Sluice cleans them, redacts personal data, drops \
            near-duplicates and low-quality text, and writes WebDataset-style shards with a SQLite index.

            Without a Kafka cluster, `sluice broker` runs an embedded broker (librdkafka's mock cluster, in memory) \
            that the other commands reach with --bootstrap.
            """,
        version: PipelineVersion.binary,
        subcommands: [
            BrokerCommand.self, TopicsCommand.self, ProduceCommand.self, ConsumeCommand.self, DemoCommand.self,
            EvalCommand.self, CurateCommand.self, PipelineCommand.self, ConnectCommand.self, ShardsCommand.self,
            TrainCommand.self, RetrainCommand.self, ServeCommand.self, QuantizeCommand.self, LineageCommand.self, DeleteCommand.self, ControlCommand.self, DatasetCommand.self, ReplayCommand.self, QualityCommand.self, ReviewCommand.self, BackupCommand.self, RestoreCommand.self, ReferenceCommand.self,
        ])

    static func main() async {
        // A part of `sluice demo` stops (SIGTERM, so it checkpoints) when the demo that started it is gone, even
        // when the demo was killed and could not stop it.
        if let text = ProcessInfo.processInfo.environment["SLUICE_PARENT_PID"], let parent = Int32(text) {
            // Its own process group: Ctrl-C in the demo's terminal reaches the demo only, which then stops the
            // parts one by one in order (a second signal would make a part exit at once).
            _ = setpgid(0, 0)
            let watchdog = Thread {
                while getppid() == parent { Thread.sleep(forTimeInterval: 1) }
                kill(getpid(), SIGTERM)
                Thread.sleep(forTimeInterval: 30)
                Foundation.exit(143)
            }
            watchdog.start()
        }
        do {
            var command = try parseAsRoot()
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
