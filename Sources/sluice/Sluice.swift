import ArgumentParser
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
            TrainCommand.self, RetrainCommand.self, ServeCommand.self, QuantizeCommand.self, LineageCommand.self, DeleteCommand.self, ControlCommand.self, DatasetCommand.self, ReplayCommand.self, QualityCommand.self, ReviewCommand.self, BackupCommand.self, RestoreCommand.self,
        ])
}
