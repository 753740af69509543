import Foundation
import SluiceKafka
import SluiceShards
import SluiceTrain
import Testing

@Suite("Shard stream loader")
struct ShardStreamLoaderTests {
    /// Writes `shards` shards of `perShard` distinct documents; returns their announcements in order.
    static func writeShards(_ shards: Int, perShard: Int, in directory: URL) throws -> [ShardAnnouncement] {
        var configuration = ShardWriterConfiguration()
        configuration.maximumSamples = perShard
        let writer = ShardWriter(directory: directory, configuration: configuration)
        var sealed: [SealedShard] = []
        for index in 0..<(shards * perShard) {
            let text = Array("Document \(index): a line of ordinary prose about rivers, bridges and the people who keep them.".utf8)
            let sample = ShardSample(key: String(format: "%08d", index), text: text, json: Array("{\"id\":\"\(index)\"}".utf8))
            if let shard = try writer.add(sample, position: "t+\(String(format: "%010d", index + 1))", mtime: 0, now: 0) {
                sealed.append(shard)
            }
        }
        if let shard = try writer.seal(now: 0) { sealed.append(shard) }
        let index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
        try index.registerDataset(name: "test", input: nil, config: nil, now: Date())
        for shard in sealed { try index.record(shard, dataset: "test") }
        return sealed.map { ShardAnnouncement(name: $0.name, path: $0.fileName, sha256: $0.sha256, samples: $0.samples.count) }
    }

    /// The shards-topic event for an announcement (the fields the loader reads).
    static func event(_ announcement: ShardAnnouncement) -> String {
        "{\"shard\":\"\(announcement.name)\",\"path\":\"\(announcement.path)\",\"samples\":\(announcement.samples),\"sha256\":\"\(announcement.sha256)\"}"
    }

    /// An embedded broker with the topics, and a client configuration for it.
    static func broker(topics: [String]) throws -> (EmbeddedBroker, KafkaConfiguration) {
        let broker = try EmbeddedBroker()
        for topic in topics { try broker.createTopic(topic, partitions: 1) }
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = broker.bootstrapServers
        return (broker, kafka)
    }

    /// Sends `events` to `topic`, in order, each acknowledged.
    static func publish(_ events: [String], to topic: String, kafka: KafkaConfiguration) async throws {
        let producer = try KafkaProducer(configuration: kafka)
        for event in events { try await producer.send(ProducerMessage(topic: topic, value: Array(event.utf8))) }
        await producer.shutdown()
    }

    static func temporaryDirectory() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-loader-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Every batch a loader yields when offered all announcements, then finished.
    static func run(_ configuration: LoaderConfiguration, _ announcements: [ShardAnnouncement], in directory: URL) -> [TrainingBatch] {
        var loader = ShardStreamLoader(configuration: configuration, baseDirectory: directory)
        var batches: [TrainingBatch] = []
        for announcement in announcements {
            loader.offer(announcement)
            while let batch = loader.nextBatch() { batches.append(batch) }
        }
        loader.finish()
        while let batch = loader.nextBatch() { batches.append(batch) }
        return batches
    }

    func configuration(rank: Int = 0, world: Int = 1, seed: UInt64 = 7) -> LoaderConfiguration {
        var configuration = LoaderConfiguration()
        configuration.rank = rank
        configuration.worldSize = world
        configuration.seed = seed
        configuration.shuffleBuffer = 40
        configuration.contextLength = 64
        configuration.batchSize = 4
        return configuration
    }

    @Test func batchesAreDeterministicShuffledAndPackedWithSeparators() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let announcements = try Self.writeShards(6, perShard: 25, in: directory)
        let first = Self.run(configuration(), announcements, in: directory)
        let second = Self.run(configuration(), announcements, in: directory)
        #expect(!first.isEmpty)
        #expect(first == second, "same seed, same batches")
        #expect(Self.run(configuration(seed: 8), announcements, in: directory) != first, "another seed, another order")
        for batch in first {
            #expect(batch.inputs.count == 4 * 64 && batch.targets.count == 4 * 64)
            // Targets are the inputs shifted by one token.
            for row in 0..<4 {
                let inputs = batch.inputs[(row * 64)..<(row * 64 + 64)]
                let targets = batch.targets[(row * 64)..<(row * 64 + 64)]
                #expect(Array(inputs.dropFirst()) == Array(targets.dropLast()))
            }
        }
        // The packed stream holds whole documents separated by NUL, each document once, in a shuffled order.
        // Consecutive windows tile the stream, so the inputs of all batches in order are the stream itself.
        let all: [UInt8] = first.flatMap(\.inputs)
        let text = String(decoding: all.map { $0 == 0 ? UInt8(ascii: "\n") : $0 }, as: UTF8.self)
        let numbers = text.split(separator: "\n").compactMap { line -> Int? in
            guard line.hasPrefix("Document "), let colon = line.firstIndex(of: ":") else { return nil }
            return Int(line[line.index(line.startIndex, offsetBy: 9)..<colon])
        }
        #expect(Set(numbers).count == numbers.count, "no document twice")
        #expect(numbers != numbers.sorted(), "shuffled")
    }

    @Test func everyShardGoesToExactlyOneRank() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let announcements = try Self.writeShards(7, perShard: 10, in: directory)
        var owners: [String: [Int]] = [:]
        for rank in 0..<3 {
            var loader = ShardStreamLoader(configuration: configuration(rank: rank, world: 3), baseDirectory: directory)
            for announcement in announcements + announcements.prefix(2) {
                if case .assigned(let name) = loader.offer(announcement) { owners[name, default: []].append(rank) }
            }
        }
        #expect(owners.count == 7)
        #expect(owners.values.allSatisfy { $0.count == 1 }, "each shard once, repeats ignored: \(owners)")
        #expect(owners[announcements[4].name] == [1], "the distinct announcement index decides: 4 mod 3")
    }

    @Test func aRestoredLoaderYieldsExactlyTheSameBatches() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let announcements = try Self.writeShards(8, perShard: 20, in: directory)
        let expected = Self.run(configuration(), announcements, in: directory)
        for stop in [1, 5, expected.count / 2, expected.count - 2] {
            var loader = ShardStreamLoader(configuration: configuration(), baseDirectory: directory)
            var batches: [TrainingBatch] = []
            var next = 0
            while batches.count < stop {
                if let batch = loader.nextBatch() { batches.append(batch); continue }
                if next == announcements.count {
                    loader.finish()
                    continue
                }
                loader.offer(announcements[next])
                next += 1
            }
            // Save the state as a checkpoint would (JSON), and continue in a fresh loader.
            let saved = try JSONEncoder().encode(loader.state)
            let state = try JSONDecoder().decode(LoaderState.self, from: saved)
            #expect(state.offered == next)
            var restored = ShardStreamLoader(configuration: configuration(), baseDirectory: directory, state: state)
            for announcement in announcements[state.offered...] {
                restored.offer(announcement)
                while let batch = restored.nextBatch() { batches.append(batch) }
            }
            restored.finish()
            while let batch = restored.nextBatch() { batches.append(batch) }
            #expect(restored.state.batches == expected.count)
            #expect(batches == expected, "resumed after \(stop) batches")
        }
    }

    @Test func aCorruptShardIsSkippedWithAnEvent() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let announcements = try Self.writeShards(3, perShard: 10, in: directory)
        let victim = directory.appendingPathComponent(announcements[1].path)
        var bytes = try Data(contentsOf: victim)
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: victim)
        var loader = ShardStreamLoader(configuration: configuration(), baseDirectory: directory)
        for announcement in announcements { loader.offer(announcement) }
        loader.finish()
        var batches = 0
        while loader.nextBatch() != nil { batches += 1 }
        #expect(batches > 0)
        let events = loader.takeEvents()
        #expect(events.count == 1)
        if case .skipped(let name, let reason) = events.first {
            #expect(name == announcements[1].name)
            #expect(reason.contains("SHA-256"))
        } else {
            Issue.record("expected a skipped event, got \(events)")
        }
        #expect(loader.state.skipped == [announcements[1].name])
    }

    @Test func followsTheShardsTopicAsTheDirectoryWouldRead() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let announcements = try Self.writeShards(5, perShard: 16, in: directory)
        #expect(try ShardAnnouncement.directory(directory) == announcements)
        let expected = Self.run(configuration(), announcements, in: directory)

        let broker = try EmbeddedBroker()
        defer { broker.shutdown() }
        try broker.createTopic("sluice.shards", partitions: 1)
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = broker.bootstrapServers
        let producer = try KafkaProducer(configuration: kafka)
        // The events the pipeline publishes, plus a re-announcement and one event that is not an announcement.
        var events = announcements.map { announcement in
            "{\"dataset\":\"test\",\"shard\":\"\(announcement.name)\",\"path\":\"\(directory.appendingPathComponent(announcement.path).path)\",\"samples\":\(announcement.samples),\"sha256\":\"\(announcement.sha256)\",\"sealed_at\":\"2026-01-01T00:00:00Z\"}"
        }
        events.insert(events[1], at: 3)
        events.insert("not an announcement", at: 2)
        for event in events {
            try await producer.send(ProducerMessage(topic: "sluice.shards", value: Array(event.utf8)))
        }
        await producer.shutdown()

        let feed = try await ShardAnnouncementFeed(configuration: kafka, from: 0)
        let end = try await feed.end()
        var loader = ShardStreamLoader(configuration: configuration())
        var batches: [TrainingBatch] = []
        while loader.state.nextOffset ?? 0 < end, let (offset, result) = try await feed.next() {
            switch result {
            case .success(let announcement): loader.offer(announcement, offset: offset)
            case .failure(let error): loader.skipEvent(at: offset, reason: error.reason)
            }
            while let batch = loader.nextBatch() { batches.append(batch) }
        }
        await feed.close()
        loader.finish()
        while let batch = loader.nextBatch() { batches.append(batch) }
        let firstDifference = zip(batches, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(batches.count == expected.count && firstDifference == nil,
            "the topic, a repeat and a bad event included, gives the directory's batches: \(batches.count) vs \(expected.count), first difference at \(String(describing: firstDifference))")
        #expect(loader.state.nextOffset == Int64(events.count))
        #expect(loader.takeEvents().count == 1)
    }
}
