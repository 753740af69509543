import Foundation
import Logging
import SluiceKafka
import SluiceShards
@testable import SluiceTrain
import Testing

@Suite("Event-driven retraining")
struct RetrainTests {
    /// Shards whose samples carry a language and a quality score, like the pipeline's.
    static func writeShards(
        _ count: Int, perShard: Int, language: String, score: Double, first: Int, in directory: URL
    ) throws -> [ShardAnnouncement] {
        var configuration = ShardWriterConfiguration()
        configuration.maximumSamples = perShard
        let writer = ShardWriter(directory: directory, configuration: configuration)
        var sealed: [SealedShard] = []
        for index in first..<(first + count * perShard) {
            let text = language == "zh"
                ? "文档\(index)：河流、桥梁和守护它们的人们的一段普通文字。每天都有新的记录进入系统。"
                : "Document \(index): a line of ordinary prose about rivers, bridges and the people who keep them."
            let json = "{\"id\":\"\(index)\",\"lang\":\"\(language)\",\"quality_score\":\(score)}"
            let sample = ShardSample(key: String(format: "%08d", index), text: Array(text.utf8), json: Array(json.utf8))
            if let shard = try writer.add(sample, position: "t+\(String(format: "%010d", index + 1))", mtime: 0, now: 0) {
                sealed.append(shard)
            }
        }
        if let shard = try writer.seal(now: 0) { sealed.append(shard) }
        return sealed.map { ShardAnnouncement(name: $0.name, path: $0.fileName, sha256: $0.sha256, samples: $0.samples.count) }
    }

    static func profile(language: String, score: Double, samples: Int, tokens: Int) -> DataProfile {
        var profile = DataProfile()
        for _ in 0..<samples { profile.add(score: score, language: language, tokens: tokens / samples) }
        return profile
    }

    static func announcement(_ name: String) -> ShardAnnouncement { ShardAnnouncement(name: name, path: name, sha256: "", samples: 1) }

    @Test func policiesFireWithTheirReasons() {
        var policy = RetrainPolicy()
        policy.minNewTokens = 10_000
        policy.maxIntervalSeconds = 3600
        policy.psiThreshold = 0.2
        policy.minDriftSamples = 50
        var decider = RetrainDecider(policy: policy, now: 0)
        // Under every threshold: nothing.
        #expect(decider.observe(Self.announcement("a"), profile: Self.profile(language: "en", score: 0.9, samples: 60, tokens: 6000), offset: 0, now: 10) == nil)
        // Tokens reach the threshold.
        let first = decider.observe(Self.announcement("b"), profile: Self.profile(language: "en", score: 0.9, samples: 60, tokens: 6000), offset: 1, now: 20)
        #expect(first?.id == "retrain-2" && first?.reasons == ["new_tokens: 12000 ≥ 10000"])
        #expect(first?.shards.map(\.name) == ["a", "b"] && first?.fromOffset == 0 && first?.toOffset == 2)
        // A repeated announcement adds nothing; the interval fires with little new data.
        #expect(decider.observe(Self.announcement("c"), profile: Self.profile(language: "en", score: 0.85, samples: 10, tokens: 100), offset: 2, now: 30) == nil)
        let second = decider.check(now: 20 + 3600)
        #expect(second?.reasons.first?.hasPrefix("interval:") == true && second?.shards.map(\.name) == ["c"])
        // Drift: new data in another language and quality band.
        let drift = decider.observe(Self.announcement("d"), profile: Self.profile(language: "zh", score: 0.3, samples: 60, tokens: 600), offset: 3, now: 4000)
        #expect(drift?.reasons.contains { $0.hasPrefix("drift: language PSI") } == true)
        #expect(drift?.reasons.contains { $0.hasPrefix("drift: quality-score PSI") } == true)
        #expect((drift?.psiLanguage ?? 0) > 1)
        // The same distribution does not drift.
        #expect(DataProfile.psi(["en": 100, "zh": 20], ["en": 50, "zh": 10]) < 1e-9)
        #expect(decider.requests == 3)
    }

    @Test func controllerAndServiceRetrainAcceptAndReject() async throws {
        let directory = ShardStreamLoaderTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let english = try Self.writeShards(4, perShard: 40, language: "en", score: 0.9, first: 0, in: directory)
        let chinese = try Self.writeShards(2, perShard: 40, language: "zh", score: 0.4, first: 1000, in: directory)
        let broker = try EmbeddedBroker()
        defer { broker.shutdown() }
        for topic in ["sluice.shards", "sluice.train", "sluice.models"] { try broker.createTopic(topic, partitions: 1) }
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = broker.bootstrapServers
        let producer = try KafkaProducer(configuration: kafka)
        func announce(_ shards: [ShardAnnouncement]) async throws {
            for shard in shards {
                let event = "{\"shard\":\"\(shard.name)\",\"path\":\"\(shard.path)\",\"samples\":\(shard.samples),\"sha256\":\"\(shard.sha256)\"}"
                try await producer.send(ProducerMessage(topic: "sluice.shards", value: Array(event.utf8)))
            }
        }
        var logger = Logger(label: "test")
        logger.logLevel = .error

        // The controller: a request per ~2 English shards of tokens, and drift when Chinese arrives.
        var settings = RetrainController.Settings(kafka: kafka, stateFile: directory.appendingPathComponent("state/controller.json"))
        settings.shardsRoot = directory
        settings.exitAtEnd = true
        settings.policy.minNewTokens = try english.prefix(2).reduce(0) {
            $0 + (try DataProfile.of(shard: directory.appendingPathComponent($1.path), sha256: $1.sha256).tokens)
        }
        settings.policy.maxIntervalSeconds = nil
        settings.policy.minDriftSamples = 30
        try await announce(english)
        let firstRequests = try await RetrainController(settings: settings, logger: logger).run()
        #expect(firstRequests.count == 2 && firstRequests.allSatisfy { $0.reasons.first?.hasPrefix("new_tokens") == true }, "\(firstRequests.map(\.reasons)) \(english.map(\.samples))")
        // A restarted controller continues from its state: nothing new, nothing repeated.
        #expect(try await RetrainController(settings: settings, logger: logger).run().isEmpty)
        try await announce(chinese)
        let later = try await RetrainController(settings: settings, logger: logger).run()
        // Each Chinese shard drifts from the (mostly English) data covered before it.
        #expect(later.count == 2 && later.allSatisfy { $0.reasons.contains { $0.contains("language PSI") } }, "\(later.map(\.reasons))")

        // The service: the first request makes the first model; the others must not regress.
        var training = TrainerTests.configuration(steps: 15)
        training.checkpointEvery = 1000
        var service = RetrainService.Settings(kafka: kafka, output: directory.appendingPathComponent("trainer"), training: training)
        service.shardsRoot = directory
        service.exitAtEnd = true
        service.regressionTolerance = 0.5
        let decided = try await RetrainService(settings: service, logger: logger).run()
        #expect(decided.count == 4)
        #expect(decided.first?.status == "accepted" && decided.first?.previousValidationLoss == nil)
        for version in decided.dropFirst() {
            #expect(version.previousValidationLoss != nil)
            #expect(version.status == (version.validationLoss <= version.previousValidationLoss! * 1.5 ? "accepted" : "rejected"))
        }
        #expect(decided[1].replayShards == 1 && decided[2].replayShards >= 1, "older shards are replayed")
        // Restarted, the service finds nothing to do: requests were committed after their outcome was recorded.
        #expect(try await RetrainService(settings: service, logger: logger).run().isEmpty)

        // A candidate that does not beat the current model by 90% is rejected, recorded, and not announced.
        let strict = RetrainRequest(
            id: "retrain-strict", reasons: ["test"], newTokens: 20_000, newSamples: 80, shards: chinese, fromOffset: 0, toOffset: 0,
            psiQuality: nil, psiLanguage: nil, createdAt: "2026-11-23T00:00:00Z")
        service.regressionTolerance = -0.9
        let rejecting = try RetrainService(settings: service, logger: logger)
        let rejected = try await rejecting.handle(strict, producer: producer)
        #expect(rejected?.status == "rejected")
        #expect(rejecting.registry.versions.last?.request == "retrain-strict")
        #expect(try await rejecting.handle(strict, producer: producer) == nil, "a decided request is not trained twice")

        // Only accepted versions are on the models topic, each naming a loadable model.
        await producer.shutdown()
        let consumer = try KafkaConsumer(configuration: kafka)
        try await consumer.assign([TopicPartitionOffset(topic: "sluice.models", partition: 0, offset: 0)])
        let end = try await consumer.watermarks(of: TopicPartition(topic: "sluice.models", partition: 0)).high
        let accepted = decided.filter { $0.status == "accepted" }
        #expect(end == Int64(accepted.count))
        var iterator = consumer.records.makeAsyncIterator()
        for expected in accepted {
            let record = try #require(try await iterator.next())
            let event = try JSONDecoder().decode(ModelVersion.self, from: Data(record.valueBytes ?? []))
            #expect(event == expected)
            _ = try GPT.load(URL(fileURLWithPath: event.model))
        }
        await consumer.close()
    }
}

@Suite("Model follower for the perplexity filter")
struct ModelFollowerTests {
    @Test func loadsTheNewestModelThenEachNewOne() async throws {
        let directory = ShardStreamLoaderTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker()
        defer { broker.shutdown() }
        try broker.createTopic("sluice.models", partitions: 1)
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = broker.bootstrapServers
        let producer = try KafkaProducer(configuration: kafka)
        let configuration = GPTConfiguration(contextLength: 16, layers: 1, channels: 16, heads: 2)
        func publish(_ version: Int, loss: Float, path: String? = nil) async throws {
            let file = directory.appendingPathComponent("v\(version).safetensors")
            if path == nil { try GPT(configuration: configuration, seed: UInt64(version)).save(to: file) }
            let event = ModelVersion(
                version: version, status: "accepted", request: "r\(version)", reasons: [], checkpoint: directory.path,
                model: path ?? file.path, validationLoss: loss, previousValidationLoss: nil, validationWindows: 1, steps: 1, tokens: 1,
                firstShard: nil, lastShard: nil, shards: 1, replayShards: 0, createdAt: "")
            try await producer.send(ProducerMessage(topic: "sluice.models", value: Array(try JSONEncoder().encode(event))))
        }
        try await publish(1, loss: 2)
        try await publish(2, loss: 1.5)
        let slot = ModelSlot()
        let follower = ModelFollower()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        await follower.start(kafka: kafka, topic: "sluice.models", slot: slot, logger: logger)
        defer { follower.stop() }
        // start returns with the newest model on the topic already in the slot.
        #expect(slot.current.version == 1 && slot.current.model?.name.hasSuffix("v2.safetensors") == true)
        func waitFor(_ version: Int) async throws -> ScoringModel? {
            for _ in 0..<100 {
                if slot.current.version >= version { return slot.current.model }
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            return nil
        }
        // The newest model on the topic, not every old one.
        let first = try #require(try await waitFor(1))
        #expect(first.name.hasSuffix("v2.safetensors") && abs(first.referencePerplexity - exp(1.5)) < 1e-6)
        // A model that cannot be loaded is skipped; the next good one replaces the current.
        try await publish(3, loss: 1.0, path: directory.appendingPathComponent("missing.safetensors").path)
        try await publish(4, loss: 0.5)
        let latest = try #require(try await waitFor(2))
        #expect(latest.name.hasSuffix("v4.safetensors") && slot.current.version == 2)
        var scorer = PerplexityScorer(configuration: PerplexityConfiguration(), slot: slot)
        if case .unscored = scorer.judge(Array("Some text to score.".utf8)) { Issue.record("a loaded model scores text") }
        await producer.shutdown()
    }
}
