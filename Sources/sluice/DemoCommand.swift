import ArgumentParser
import Foundation
import Logging
import SluiceConnectors
import SluiceKafka
import SluicePipeline
import SluiceShards
import SluiceTrain

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the demo on the embedded broker: topics, connectors, a consumer group, the pipeline, a trainer, a report.",
        discussion: """
            Starts the embedded broker in this process, creates the topics declared in --topics, runs the \
            connectors of --connectors (the generator: English and Chinese records with duplicates, personal data, \
            junk and undecodable records; and file connectors over the sample directory: JSON Lines, CSV, text and \
            HTML), reads the raw topics back in a consumer group that commits what it read, and checks that every \
            record arrived exactly once. Then the streaming pipeline curates the raw topics into shards (--output, \
            default a new temporary directory) and stops at their end, and a trainer follows sluice.shards and \
            trains a small model on the announced shards for 200 steps.
            """)

    @Option(name: .long, help: ArgumentHelp("Where the pipeline writes shards and the index (default: a new temporary directory).", valueName: "dir"))
    var output: String?

    @Option(name: .long, help: ArgumentHelp("Directory of topic declarations.", valueName: "dir"))
    var topics: String = "topics"

    @Option(name: .long, help: ArgumentHelp("Directory of connector files (generator.yaml and the file-*.yaml samples are used).", valueName: "dir"))
    var connectors: String = "connectors"

    @Option(name: .long, help: "How many records the generator connector writes.")
    var records: Int = 300

    @Option(name: .long, help: "Seed of the generator.")
    var seed: UInt64 = 42

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    func validate() throws {
        // The connectors run before the pipeline here, so everything must fit the embedded broker's 5 MiB per
        // partition of raw.web (6 partitions) at once.
        guard (1...20_000).contains(records) else { throw ValidationError("--records must be from 1 to 20000") }
    }

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level '\(logLevel)'") }
        let logger = makeLogger(level: level)
        let clock = ContinuousClock()

        let broker = try EmbeddedBroker(logger: logger)
        defer { broker.shutdown() }
        Terminal.out("1. Embedded broker (librdkafka mock cluster) listening on \(broker.bootstrapServers)")

        let declarations = try TopicCatalog.load(directory: URL(fileURLWithPath: topics))
        let outcomes = try TopicProvisioner.apply(declarations, broker: broker)
        Terminal.out("2. Created \(outcomes.count) topics from \(topics)/:")
        for outcome in outcomes { Terminal.out("     \(outcome.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(outcome.partitions) partitions") }

        var configuration = KafkaConfiguration()
        configuration.bootstrapServers = broker.bootstrapServers
        configuration.applyLowLatencyDefaults()
        let state = NSTemporaryDirectory() + "sluice-demo-state-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let environment = ProcessInfo.processInfo.environment.merging(
            ["SLUICE_STATE": state, "SLUICE_SAMPLES": connectors + "/samples"]) { $1 }
        var runners: [ConnectorRunner] = []
        for name in ["generator", "file-jsonl", "file-csv", "file-text", "file-html"] {
            var connector: ConnectorConfiguration
            do {
                connector = try ConnectorConfiguration.load(path: "\(connectors)/\(name).yaml", environment: environment)
            } catch {
                throw CommandError("\(error)")
            }
            if connector.type == .generator {
                connector.count = records
                connector.rate = nil
                connector.seed = seed
            }
            connector.follow = false
            // The pipeline runs after the connectors here; nothing would ever be committed to wait for.
            connector.backpressure = nil
            connector.kafka = configuration.merging(connector.kafka)
            connector.kafka.bootstrapServers = broker.bootstrapServers
            runners.append(try ConnectorRunner(configuration: connector, kafka: connector.kafka, logger: logger))
        }
        let produceStart = clock.now
        var produced: [String: Int] = [:]
        var sent = 0
        for runner in runners {
            let progress = try await runner.run(once: true)
            produced[runner.configuration.topic, default: 0] += progress.records
            sent += progress.records
            let what = runner.configuration.type == .generator ? "generator" : "\(runner.configuration.format.rawValue) files"
            Terminal.out("     connector \(runner.configuration.name.padding(toLength: 12, withPad: " ", startingAt: 0)) (\(what)) → \(runner.configuration.topic): \(progress.records) records, \(progress.dlq) bad lines to sluice.dlq")
        }
        let produceTime = clock.now - produceStart
        Terminal.out("3. Connectors (sluice connect --once) wrote \(sent) records in \(format(produceTime)), every one acknowledged before its position was checkpointed:")
        for (topic, count) in produced.sorted(by: { $0.key < $1.key }) { Terminal.out("     \(topic.padding(toLength: 16, withPad: " ", startingAt: 0)) \(count)") }
        let records = sent

        var consumerConfiguration = configuration
        consumerConfiguration.groupID = "sluice-demo"
        let consumer = try KafkaConsumer(configuration: consumerConfiguration, logger: logger)
        try consumer.subscribe(["^raw\\..*"])
        let consumeStart = clock.now
        var received: [TopicPartition: (count: Int, last: Int64)] = [:]
        var receivedKeys: [String: Int] = [:]
        var total = 0
        var firstAssignment: Duration?
        var example: KafkaRecord?
        consume: for try await event in consumer.events {
            switch event {
            case .assigned(let partitions):
                firstAssignment = firstAssignment ?? (clock.now - consumeStart)
                Terminal.out("4. Consumer group 'sluice-demo' joined after \(format(clock.now - consumeStart)); assigned \(partitions.count) partitions")
            case .record(let record):
                received[record.topicPartition, default: (0, -1)].count += 1
                received[record.topicPartition]!.last = record.offset
                receivedKeys[String(decoding: record.key ?? [], as: UTF8.self), default: 0] += 1
                example = example ?? record
                try consumer.store(record)
                total += 1
                if total == records { break consume }
            case .error(let error):
                Terminal.err("   consumer: \(error)")
            default:
                break
            }
        }
        try await consumer.commit()
        let committed = try await consumer.committed(Array(received.keys))
        let consumeTime = clock.now - consumeStart
        await consumer.close()

        Terminal.out("5. Read \(total) records in \(format(consumeTime)) (the embedded broker waits ~3 s before a new group's first assignment), committed:")
        for (partition, stats) in received.sorted(by: { ($0.key.topic, $0.key.partition) < ($1.key.topic, $1.key.partition) }) {
            let offset = (committed[partition] ?? nil).map(String.init) ?? "none"
            Terminal.out("     \(partition.description.padding(toLength: 16, withPad: " ", startingAt: 0)) \(String(stats.count).padding(toLength: 4, withPad: " ", startingAt: 0)) records, committed offset \(offset)")
        }
        if let example, let value = example.value,
            let object = try? JSONSerialization.jsonObject(with: Data(value)) as? [String: Any]
        {
            let text = (object["text"] as? String).map { String($0.prefix(60)) } ?? ""
            Terminal.out("   example: \(example.topic)[\(example.partition)]@\(example.offset) id=\(object["id"] ?? "?") text=\"\(text)…\"")
        }

        let duplicates = receivedKeys.values.filter { $0 > 1 }.count
        let missing = records - total
        let committedTotal = received.keys.reduce(Int64(0)) { $0 + ((committed[$1] ?? nil) ?? 0) }
        if missing == 0 && duplicates == 0 && committedTotal == Int64(records) {
            Terminal.out("6. OK: all \(records) records arrived once, and the committed offsets cover all \(committedTotal).")
        } else {
            Terminal.out("6. FAILED: \(missing) missing, \(duplicates) duplicated, committed offsets sum to \(committedTotal) of \(records).")
            throw ExitCode.failure
        }

        let directory = URL(fileURLWithPath: output ?? NSTemporaryDirectory() + "sluice-demo-\(UUID().uuidString.prefix(8))")
        var settings = PipelineConfiguration()
        settings.kafka = configuration
        settings.kafka.groupID = "sluice-demo-pipeline"
        settings.topics = ["^raw\\..*"]
        settings.outputDirectory = directory
        settings.dataset = "demo"
        settings.exitAtEnd = true
        let pipeline = try StreamingPipeline(configuration: settings, kafka: settings.kafka, logger: logger)
        let summary = try await pipeline.run()
        let shards = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path).shards()
        Terminal.out(
            "7. Streaming pipeline (sluice pipeline) curated the raw topics into \(directory.path): \(summary.kept) kept, "
                + "\(summary.rejected) dropped (\(summary.deadLettered) to the DLQ), \(shards.count) shards sealed, indexed, "
                + "announced on sluice.shards and committed:")
        for shard in shards {
            Terminal.out("     \(shard.fileName.padding(toLength: 34, withPad: " ", startingAt: 0)) \(shard.samples) samples, \(shard.storedBytes) bytes")
        }
        guard summary.records == records, summary.kept + summary.rejected == records, summary.kept > 0 else {
            Terminal.out("8. FAILED: the pipeline accounted for \(summary.kept + summary.rejected) of \(records) records")
            throw ExitCode.failure
        }
        Terminal.out("8. OK: every record is in exactly one shard or in the audit. Try: sluice shards ls \(directory.path)")

        // A trainer is one more consumer: it follows sluice.shards and trains on the announced shards.
        var training = TrainingConfiguration()
        training.model = GPTConfiguration(contextLength: 64, layers: 2, channels: 64, heads: 2)
        training.loader.contextLength = 64
        training.loader.batchSize = 8
        training.loader.shuffleBuffer = 64
        training.loader.holdout = 20
        training.steps = 200
        training.schedule = LearningRateSchedule(maxRate: 3e-3, minRate: 3e-4, warmupSteps: 5, totalSteps: 200)
        training.validationWindows = 16
        let trainer = Trainer(configuration: training)
        let modelDirectory = directory.appendingPathComponent("model")
        let run = TrainingRun(
            trainer: trainer, data: .stream(settings.kafka, topic: "sluice.shards", baseDirectory: directory, exitAtEnd: true),
            output: modelDirectory) { _ in }
        let trained = try await run.run()
        let fell = (trained.firstLoss ?? 0) > (trained.loss ?? .infinity)
        Terminal.out(String(
            format: "9. %@: the trainer followed sluice.shards: %d steps on %@ shards, loss %.2f → %.2f%@; checkpoint in %@",
            fell ? "OK" : "FAILED", trained.steps, String(trainer.progress.loader.seen.count), trained.firstLoss ?? .nan,
            trained.loss ?? .nan, trained.validationLoss.map { String(format: " (validation %.2f)", $0) } ?? "",
            trained.checkpoint ?? "-"))
        guard fell else { throw ExitCode.failure }
    }

    private func format(_ duration: Duration) -> String {
        String(format: "%.2f s", Double(duration.milliseconds) / 1000)
    }
}
