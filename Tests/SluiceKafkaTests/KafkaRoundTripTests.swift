import Foundation
import SluiceKafka
import Testing

@Suite("KafkaProducer and KafkaConsumer", .timeLimit(.minutes(2)))
struct KafkaRoundTripTests {
    @Test func tenThousandRecordsRoundTripWithKeysAndHeaders() async throws {
        try await withEmbeddedBroker { broker in
            let topic = uniqueName("roundtrip")
            try broker.createTopic(topic, partitions: 4)
            let producer = try KafkaProducer(configuration: testConfiguration(broker), logger: quietLogger)
            // One awaited send first: the first produce to a topic can wait for a metadata refresh.
            let first = try await producer.send(
                ProducerMessage(topic: topic, key: Array("k0".utf8), value: Array("v0".utf8),
                                headers: [KafkaHeader(name: "n", string: "0"), KafkaHeader(name: "empty", value: nil)]))
            #expect(first.offset >= 0)
            for index in 1..<10_000 {
                try await producer.enqueueWhenCapacity(
                    ProducerMessage(
                        topic: topic, key: Array("k\(index)".utf8), value: Array("v\(index)".utf8),
                        headers: [KafkaHeader(name: "n", string: "\(index)"), KafkaHeader(name: "empty", value: nil)]))
            }
            try await producer.flush()
            #expect(producer.statistics.delivered == 10_000)
            #expect(producer.statistics.failed == 0)
            await producer.shutdown()

            let consumer = try KafkaConsumer(
                configuration: testConfiguration(broker, group: uniqueName("g")), logger: quietLogger)
            try consumer.subscribe([topic])
            let records = try await collect(consumer) { $0.count >= 10_000 }
            await consumer.close()

            #expect(records.count == 10_000)
            var seen = Set<Int>()
            for record in records {
                let key = String(decoding: record.key ?? [], as: UTF8.self)
                let value = String(decoding: record.value ?? [], as: UTF8.self)
                let index = Int(key.dropFirst())!
                #expect(value == "v\(index)")
                #expect(record.header("n").map { String(decoding: $0, as: UTF8.self) } == "\(index)")
                #expect(record.headers.contains(KafkaHeader(name: "empty", value: nil)))
                #expect(record.timestamp != nil)
                seen.insert(index)
            }
            #expect(seen.count == 10_000)
            // Same key, same partition: per-key order is the production order.
            var lastOffset: [Int32: Int64] = [:]
            for record in records {
                #expect(record.offset > lastOffset[record.partition, default: -1])
                lastOffset[record.partition] = record.offset
            }
        }
    }

    @Test func sendReportsPartitionAndOffset() async throws {
        try await withEmbeddedBroker { broker in
            let topic = uniqueName("offsets")
            try broker.createTopic(topic, partitions: 2)
            let producer = try KafkaProducer(configuration: testConfiguration(broker), logger: quietLogger)
            let a = try await producer.send(ProducerMessage(topic: topic, partition: 1, value: Array("a".utf8)))
            let b = try await producer.send(ProducerMessage(topic: topic, partition: 1, value: Array("b".utf8)))
            let tombstone = try await producer.send(ProducerMessage(topic: topic, partition: 0, key: [1], value: nil))
            #expect(a.partition == 1 && a.offset == 0)
            #expect(b.partition == 1 && b.offset == 1)
            #expect(tombstone.partition == 0 && tombstone.offset == 0)
            await producer.shutdown()

            let consumer = try KafkaConsumer(configuration: testConfiguration(broker), logger: quietLogger)
            try await consumer.assign([TopicPartitionOffset(topic: topic, partition: 0, offset: KafkaOffset.beginning)])
            let records = try await collect(consumer) { $0.count >= 1 }
            #expect(records.first?.value == nil)
            #expect(records.first?.key == [1])
            let marks = try await consumer.watermarks(of: TopicPartition(topic: topic, partition: 1))
            #expect(marks.low == 0 && marks.high == 2)
            await consumer.close()
        }
    }
}
