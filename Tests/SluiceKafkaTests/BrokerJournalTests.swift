import Foundation
import SluiceKafka
import Testing

/// The broker journal carries topics and records from one embedded broker to the next, at the same offsets.
@Suite("broker journal", .timeLimit(.minutes(2)))
struct BrokerJournalTests {
    @Test func recordsKeysAndHeadersReplayAtTheirOffsetsInAFreshBroker() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let topic = uniqueName("journal")
        let binary: [UInt8] = [0x00, 0xFF, 0x80, 0x0A]

        // First broker: 3 partitions, records with text, binary and absent keys, values and headers.
        try await withEmbeddedBroker { broker in
            try broker.createTopic(topic, partitions: 3)
            let journal = try BrokerJournal(directory: directory, logger: quietLogger)
            try journal.register([topic: 3])
            let configuration = testConfiguration(broker)
            let follower = Task { try await journal.follow(configuration: configuration) }
            let producer = try KafkaProducer(configuration: configuration, logger: quietLogger)
            for i in 0..<300 {
                let value: [UInt8]? = i % 50 == 7 ? nil : (i % 10 == 3 ? binary : Array("record \(i) — 记录".utf8))
                _ = try await producer.send(ProducerMessage(
                    topic: topic, partition: Int32(i % 3), key: i % 4 == 0 ? nil : Array("k\(i)".utf8), value: value,
                    headers: [KafkaHeader(name: "n", string: String(i)), KafkaHeader(name: "bin", value: binary)]))
            }
            await producer.shutdown()
            journal.stop()
            try await follower.value
        }

        // Second broker: the journal restores every record at its offset; a new record continues after them.
        try await withEmbeddedBroker { broker in
            let journal = try BrokerJournal(directory: directory, logger: quietLogger)
            let configuration = testConfiguration(broker)
            let restored = try await journal.restore(into: broker, configuration: configuration)
            #expect(restored.records == 300 && restored.topics == 1)
            let consumer = try KafkaConsumer(configuration: configuration, logger: quietLogger)
            try await consumer.assign((0..<3).map { TopicPartitionOffset(topic: topic, partition: $0, offset: KafkaOffset.beginning) })
            let records = try await collect(consumer) { $0.count >= 300 }
            await consumer.close()
            #expect(records.count == 300)
            for record in records {
                let n = Int(String(decoding: record.headers.first { $0.name == "n" }?.value ?? [], as: UTF8.self))!
                #expect(Int32(n % 3) == record.partition && Int64(n / 3) == record.offset, "record \(n) at \(record.partition)@\(record.offset)")
                #expect(record.keyBytes.map(Array.init) == (n % 4 == 0 ? nil : Array("k\(n)".utf8)))
                let expected: [UInt8]? = n % 50 == 7 ? nil : (n % 10 == 3 ? binary : Array("record \(n) — 记录".utf8))
                #expect(record.valueBytes.map(Array.init) == expected, "value of record \(n)")
                #expect(record.headers.first { $0.name == "bin" }?.value == binary)
            }
            let producer = try KafkaProducer(configuration: configuration, logger: quietLogger)
            let report = try await producer.send(ProducerMessage(topic: topic, partition: 0, value: Array("next".utf8)))
            #expect(report.offset == 100)
            await producer.shutdown()
        }

        // A damaged journal line is refused with its place.
        let file = directory.appendingPathComponent("\(topic)/1.jsonl")
        var text = try String(contentsOf: file, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"offset\":5,", with: "\"offset\":\"five\",")
        try text.write(to: file, atomically: true, encoding: .utf8)
        try await withEmbeddedBroker { broker in
            let journal = try BrokerJournal(directory: directory, logger: quietLogger)
            await #expect(throws: KafkaError.self) { _ = try await journal.restore(into: broker, configuration: testConfiguration(broker)) }
        }
    }

    @Test func aLineCutShortByAKillIsDroppedBeforeFollowingAppends() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let topic = uniqueName("cut")
        try await withEmbeddedBroker { broker in
            try broker.createTopic(topic, partitions: 1)
            let journal = try BrokerJournal(directory: directory, logger: quietLogger)
            try journal.register([topic: 1])
            let configuration = testConfiguration(broker)
            let producer = try KafkaProducer(configuration: configuration, logger: quietLogger)
            _ = try await producer.send(ProducerMessage(topic: topic, partition: 0, value: Array("one".utf8)))
            var follower = Task { try await journal.follow(configuration: configuration) }
            try await Task.sleep(for: .milliseconds(500))
            journal.stop()
            try await follower.value
            // A killed process left half a record behind.
            let file = directory.appendingPathComponent("\(topic)/0.jsonl")
            let handle = try FileHandle(forWritingTo: file)
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(#"{"topic":"x","partition":0,"off"#.utf8))
            try handle.close()
            let again = try BrokerJournal(directory: directory, logger: quietLogger)
            _ = try await producer.send(ProducerMessage(topic: topic, partition: 0, value: Array("two".utf8)))
            await producer.shutdown()
            follower = Task { try await again.follow(configuration: configuration) }
            try await Task.sleep(for: .milliseconds(500))
            again.stop()
            try await follower.value
            let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 2 && lines[1].hasPrefix("{\"topic\":\"\(topic)\"") && lines[1].contains(#""offset":1"#), "\(lines)")
        }
        try await withEmbeddedBroker { broker in
            let restored = try await BrokerJournal(directory: directory, logger: quietLogger).restore(into: broker, configuration: testConfiguration(broker))
            #expect(restored.records == 2)
        }
    }
}
