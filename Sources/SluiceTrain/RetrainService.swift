public import Foundation
public import SluiceKafka
public import Logging

/// One model version in the registry (`<output>/models/registry.jsonl`), accepted or rejected.
public struct ModelVersion: Sendable, Equatable, Codable {
    public var version: Int
    public var status: String
    public var request: String
    public var reasons: [String]
    /// The checkpoint directory (model, optimizer moments, state) of this version.
    public var checkpoint: String
    public var model: String
    public var validationLoss: Float
    public var previousValidationLoss: Float?
    public var validationWindows: Int
    public var steps: Int
    public var tokens: Int
    public var firstShard: String?
    public var lastShard: String?
    public var shards: Int
    public var replayShards: Int
    public var createdAt: String

    public var validationPerplexity: Double { exp(Double(validationLoss)) }

    enum CodingKeys: String, CodingKey {
        case version, status, request, reasons, checkpoint, model, validationLoss = "validation_loss"
        case previousValidationLoss = "previous_validation_loss", validationWindows = "validation_windows", steps, tokens
        case firstShard = "first_shard", lastShard = "last_shard", shards, replayShards = "replay_shards", createdAt = "created_at"
    }
}

/// The models directory: versions `v000001/…`, `registry.jsonl` (every candidate, accepted or rejected) and
/// `history.json` (every shard trained on, for replay).
public struct ModelRegistry: Sendable {
    public let directory: URL
    public private(set) var versions: [ModelVersion] = []
    public private(set) var history: [ShardAnnouncement] = []

    public init(directory: URL) throws(TrainError) {
        self.directory = directory
        do { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw TrainError("cannot create \(directory.path): \(error.localizedDescription)")
        }
        if let text = try? String(contentsOf: directory.appendingPathComponent("registry.jsonl"), encoding: .utf8) {
            for line in text.split(separator: "\n") where !line.isEmpty {
                guard let version = try? JSONDecoder().decode(ModelVersion.self, from: Data(line.utf8)) else {
                    throw TrainError("\(directory.path)/registry.jsonl has a line that is not a model version")
                }
                versions.append(version)
            }
        }
        if let data = try? Data(contentsOf: directory.appendingPathComponent("history.json")) {
            history = (try? JSONDecoder().decode([ShardAnnouncement].self, from: data)) ?? []
        }
    }

    /// The newest accepted version.
    public var current: ModelVersion? { versions.last { $0.status == "accepted" } }
    public var nextVersion: Int { (versions.map(\.version).max() ?? 0) + 1 }
    public func decided(_ request: String) -> ModelVersion? { versions.first { $0.request == request } }

    mutating func append(_ version: ModelVersion, trained shards: [ShardAnnouncement]) throws(TrainError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let line = try? encoder.encode(version) else { throw TrainError("cannot encode a model version") }
        var known = Set(history.map(\.name))
        for shard in shards where known.insert(shard.name).inserted { history.append(shard) }
        guard let historyData = try? encoder.encode(history) else { throw TrainError("cannot encode the shard history") }
        try Durable.writeAtomically(historyData, to: directory.appendingPathComponent("history.json"))
        let url = directory.appendingPathComponent("registry.jsonl")
        var existing = (try? Data(contentsOf: url)) ?? Data()
        existing.append(line)
        existing.append(0x0A)
        try Durable.writeAtomically(existing, to: url)
        versions.append(version)
    }
}

/// The trainer as a service: takes ``RetrainRequest``s from the train topic, continues the current model on the
/// request's new shards mixed with a replay sample of older ones, validates the candidate and the current model on
/// the same held-out windows, and publishes the candidate on the models topic only when validation loss does not
/// regress; otherwise the registry records it as rejected. A request is committed after its outcome is recorded,
/// and one already in the registry is not trained again.
public final class RetrainService: @unchecked Sendable {
    // @unchecked: one task runs the service; `stopFlag` is a lock-guarded flag.
    public struct Settings: Sendable {
        public var kafka: KafkaConfiguration
        public var trainTopic = "sluice.train"
        public var modelsTopic = "sluice.models"
        public var group = "sluice-trainer"
        public var shardsRoot: URL?
        /// Where versions and the registry live.
        public var output: URL
        /// Model, optimizer and loader settings; `steps` caps the steps of one round.
        public var training: TrainingConfiguration
        /// Older shards replayed per new shard (0.25: one old shard for every four new).
        public var replayFraction = 0.25
        /// A candidate is accepted when its validation loss ≤ the current model's × (1 + tolerance).
        public var regressionTolerance: Float = 0
        public var exitAtEnd = false
        public init(kafka: KafkaConfiguration, output: URL, training: TrainingConfiguration) {
            self.kafka = kafka
            self.output = output
            self.training = training
        }
    }

    public let settings: Settings
    private let logger: Logger
    private let stopFlag = StopFlag()
    public private(set) var registry: ModelRegistry

    public init(settings: Settings, logger: Logger) throws(TrainError) {
        self.settings = settings
        self.logger = logger
        registry = try ModelRegistry(directory: settings.output.appendingPathComponent("models"))
    }

    public func requestStop() { stopFlag.set() }

    /// Serves requests until stopped (with `exitAtEnd`: until the train topic is drained). Returns the versions
    /// decided in this run.
    @discardableResult
    public func run() async throws -> [ModelVersion] {
        var kafka = settings.kafka
        kafka["group.id"] = settings.group
        kafka["enable.auto.commit"] = "false"
        kafka.setDefault("fetch.wait.max.ms", "100")
        let consumer = try KafkaConsumer(configuration: kafka, logger: logger)
        var producerConfiguration = settings.kafka
        producerConfiguration.properties.removeValue(forKey: "group.id")
        producerConfiguration.setDefault("enable.idempotence", "true")
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        let partitions = try await consumer.partitions(of: settings.trainTopic)
        let topicPartitions = partitions.map { TopicPartition(topic: settings.trainTopic, partition: $0) }
        let committed = try await consumer.committed(topicPartitions)
        var positions: [Int32: Int64] = [:]
        for partition in topicPartitions { positions[partition.partition] = (committed[partition] ?? nil) ?? 0 }
        try await consumer.assign(topicPartitions.map { TopicPartitionOffset(topic: $0.topic, partition: $0.partition, offset: positions[$0.partition]!) })
        var records = consumer.records.makeAsyncIterator()
        var decided: [ModelVersion] = []
        while !stopFlag.isSet {
            var drained = true
            for partition in topicPartitions where positions[partition.partition]! < (try await consumer.watermarks(of: partition).high) {
                drained = false
            }
            if drained {
                if settings.exitAtEnd { break }
                try await Task.sleep(nanoseconds: 500_000_000)
                continue
            }
            guard let record = try await records.next() else { break }
            if let value = record.valueBytes, let request = try? JSONDecoder().decode(RetrainRequest.self, from: Data(value)) {
                if let version = try await handle(request, producer: producer) { decided.append(version) }
            } else {
                logger.warning("skipping a train-topic event at \(record.partition)/\(record.offset) that is not a retrain request")
            }
            positions[record.partition] = record.offset + 1
            try await consumer.commit([TopicPartitionOffset(topic: record.topic, partition: record.partition, offset: record.offset + 1)])
        }
        await producer.shutdown()
        await consumer.close()
        return decided
    }

    /// Trains, validates and records one request; nil when the registry already holds its outcome.
    public func handle(_ request: RetrainRequest, producer: KafkaProducer?) async throws -> ModelVersion? {
        if let done = registry.decided(request.id) {
            logger.notice("request \(request.id) was decided before (version \(done.version), \(done.status)); skipping")
            return nil
        }
        guard !request.shards.isEmpty else { throw TrainError("request \(request.id) names no shards") }
        // Replay: a seeded sample of shards trained on before.
        let newNames = Set(request.shards.map(\.name))
        var older = registry.history.filter { !newNames.contains($0.name) }
        var random = GaussianRandom(seed: ShardStreamLoader.nameHash(request.id))
        for index in stride(from: older.count - 1, to: 0, by: -1) {
            older.swapAt(index, Int(random.nextUInt64() % UInt64(index + 1)))
        }
        let replay = Array(older.prefix(Int((Double(request.shards.count) * settings.replayFraction).rounded(.up))))
        let shards = request.shards + replay

        var configuration = settings.training
        let current = registry.current
        let trainer: Trainer
        let windowTokens = configuration.loader.batchSize * configuration.loader.contextLength * configuration.accumulation
        let roundTokens = Int(Double(request.newTokens) * (1 + settings.replayFraction))
        let roundSteps = max(1, min(settings.training.steps, roundTokens / max(1, windowTokens)))
        if let current {
            let saved = try Trainer.readState(URL(fileURLWithPath: current.checkpoint))
            configuration.scheduleStart = saved.progress.step
            configuration.steps = saved.progress.step + roundSteps
            configuration.schedule.totalSteps = roundSteps
            configuration.schedule.warmupSteps = min(configuration.schedule.warmupSteps, max(1, roundSteps / 10))
            trainer = try Trainer(resumingFrom: URL(fileURLWithPath: current.checkpoint), configuration: configuration)
            trainer.progress.loader = LoaderState()  // a new round reads its own shards from the start
            trainer.progress.epoch = 0
        } else {
            configuration.steps = roundSteps
            configuration.schedule.totalSteps = roundSteps
            configuration.schedule.warmupSteps = min(configuration.schedule.warmupSteps, max(1, roundSteps / 10))
            trainer = Trainer(configuration: configuration)
        }
        logger.notice("request \(request.id): \(roundSteps) steps on \(request.shards.count) new and \(replay.count) replayed shards")
        let candidateDirectory = registry.directory.appendingPathComponent(".candidate-\(request.id)")
        try? FileManager.default.removeItem(at: candidateDirectory)
        // The latest progress line also goes to models/status.json, for dashboards and `sluice demo`.
        let statusURL = registry.directory.appendingPathComponent("status.json")
        let requestID = request.id
        let run = TrainingRun(trainer: trainer, data: .shards(shards, baseDirectory: settings.shardsRoot), output: candidateDirectory) { [logger] line in
            logger.info("\(line)")
            let status: [String: Any] = ["request": requestID, "progress": line, "updated": ISO8601DateFormatter().string(from: Date())]
            if let data = try? JSONSerialization.data(withJSONObject: status, options: [.sortedKeys]) { try? data.write(to: statusURL, options: .atomic) }
        }
        _ = try await run.run()

        // The same held-out windows judge both models.
        let windows = ValidationSet.windows(
            of: shards, loader: configuration.loader, baseDirectory: settings.shardsRoot, limit: max(1, configuration.validationWindows))
        guard !windows.isEmpty else { throw TrainError("request \(request.id): no held-out text to validate on (holdout is \(configuration.loader.holdout))") }
        let candidateLoss = ValidationSet.loss(of: trainer.model, on: windows, context: configuration.loader.contextLength)
        var previousLoss: Float?
        if let current {
            let model = try GPT.load(URL(fileURLWithPath: current.model))
            model.threads = configuration.threads
            previousLoss = ValidationSet.loss(of: model, on: windows, context: configuration.loader.contextLength)
        }
        let accepted = previousLoss.map { candidateLoss <= $0 * (1 + settings.regressionTolerance) } ?? true
        let version = registry.nextVersion
        let versionDirectory = registry.directory.appendingPathComponent(String(format: "v%06d", version))
        guard let checkpoint = Trainer.latestCheckpoint(in: candidateDirectory) else { throw TrainError("the candidate of \(request.id) wrote no checkpoint") }
        try? FileManager.default.removeItem(at: versionDirectory)
        try Durable.rename(checkpoint, to: versionDirectory)
        try? FileManager.default.removeItem(at: candidateDirectory)
        let record = ModelVersion(
            version: version, status: accepted ? "accepted" : "rejected", request: request.id, reasons: request.reasons,
            checkpoint: versionDirectory.path, model: versionDirectory.appendingPathComponent("model.safetensors").path,
            validationLoss: candidateLoss, previousValidationLoss: previousLoss, validationWindows: windows.count,
            steps: trainer.progress.step, tokens: trainer.progress.tokens, firstShard: request.shards.first?.name,
            lastShard: request.shards.last?.name, shards: request.shards.count, replayShards: replay.count,
            createdAt: ISO8601DateFormatter().string(from: Date()))
        if accepted, let producer {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            _ = try await producer.send(ProducerMessage(
                topic: settings.modelsTopic, key: Array("v\(version)".utf8), value: Array(try encoder.encode(record))))
        }
        try registry.append(record, trained: request.shards)
        logger.notice("""
            version \(version) \(record.status): validation loss \(String(format: "%.4f", candidateLoss))\
            \(previousLoss.map { String(format: " (current %.4f)", $0) } ?? " (first model)")
            """)
        return record
    }
}
