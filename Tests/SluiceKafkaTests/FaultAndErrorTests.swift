import Foundation
import SluiceKafka
import Testing

/// The first non-fatal error event of a consumer, or `nil` after ten seconds.
func firstError(of consumer: KafkaConsumer) async throws -> KafkaError? {
    try await withThrowingTaskGroup(of: KafkaError?.self) { tasks in
        tasks.addTask {
            for try await event in consumer.events {
                if case .error(let error) = event { return error }
            }
            return nil
        }
        tasks.addTask {
            try await Task.sleep(for: .seconds(10))
            return nil
        }
        defer { tasks.cancelAll() }
        return try await tasks.next() ?? nil
    }
}

@Suite("Faults and typed errors", .timeLimit(.minutes(2)))
struct FaultAndErrorTests {
    @Test func producerAndConsumerRecoverFromABrokerOutageWithoutLoss() async throws {
        try await withEmbeddedBroker { broker in
            let topic = uniqueName("outage")
            let group = uniqueName("g")
            let total = 3_000
            try broker.createTopic(topic, partitions: 3)
            let producer = try KafkaProducer(configuration: testConfiguration(broker), logger: quietLogger)
            let consumer = try KafkaConsumer(configuration: testConfiguration(broker, group: group), logger: quietLogger)
            try consumer.subscribe([topic])
            let seen = SeenNumbers()

            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask {
                    for try await event in consumer.events {
                        if case .record(let record) = event {
                            seen.insert(number(record))
                            if seen.count >= total { return }
                        }
                    }
                }
                tasks.addTask {
                    try await producer.send(ProducerMessage(topic: topic, partition: 0, value: Array("0".utf8)))
                    for index in 1..<total {
                        if index == 1_000 {
                            // Mid-stream: every broker goes away for three seconds.
                            try broker.setBrokerDown(-1)
                            try await Task.sleep(for: .seconds(1))
                        }
                        if index == 2_000 {
                            try await Task.sleep(for: .seconds(2))
                            try broker.setBrokerUp(-1)
                        }
                        try await producer.enqueueWhenCapacity(
                            ProducerMessage(topic: topic, partition: Int32(index % 3), value: Array("\(index)".utf8)))
                    }
                    try await producer.flush(timeout: .seconds(60))
                }
                tasks.addTask {
                    try await Task.sleep(for: .seconds(90))
                    throw CancellationError()
                }
                try await tasks.next()
                try await tasks.next()
                tasks.cancelAll()
            }
            #expect(producer.statistics.failed == 0)
            #expect(producer.statistics.delivered == total)
            #expect(seen.count == total, "every record arrived after the outage")
            await producer.shutdown()
            await consumer.close()
        }
    }

    @Test func injectedProduceErrorsAreRetriedOrReported() async throws {
        try await withEmbeddedBroker { broker in
            let topic = uniqueName("inject")
            try broker.createTopic(topic, partitions: 1)
            let producer = try KafkaProducer(configuration: testConfiguration(broker), logger: quietLogger)
            try await producer.send(ProducerMessage(topic: topic, value: [1]))
            // NOT_LEADER_FOR_PARTITION (6) twice: retried transparently.
            try broker.pushRequestErrors(apiKey: 0, errors: [6, 6])
            let report = try await producer.send(ProducerMessage(topic: topic, value: [2]))
            #expect(report.offset == 1)
            // MESSAGE_TOO_LARGE (10) is not retriable: the send fails with librdkafka's code.
            try broker.pushRequestErrors(apiKey: 0, errors: [10])
            let error = await #expect(throws: KafkaError.self) {
                try await producer.send(ProducerMessage(topic: topic, value: [3]))
            }
            #expect(error?.nativeCode == 10)
            #expect(error?.code == .messageDelivery)
            await producer.shutdown()
        }
    }

    @Test(arguments: [
        ["no.such.property": "1"],
        ["linger.ms": "not-a-number"],
        ["acks": "sometimes"],
    ])
    func invalidPropertiesFailAtCreationWithLibrdkafkasMessage(_ properties: [String: String]) throws {
        var configuration = KafkaConfiguration(properties)
        configuration.bootstrapServers = "127.0.0.1:9"
        let producerError = #expect(throws: KafkaError.self) { _ = try KafkaProducer(configuration: configuration) }
        #expect(producerError?.code == .invalidConfiguration)
        #expect(producerError?.reason.contains(properties.keys.first!) == true)
        configuration.groupID = "g"
        let consumerError = #expect(throws: KafkaError.self) { _ = try KafkaConsumer(configuration: configuration) }
        #expect(consumerError?.code == .invalidConfiguration)
    }

    @Test func missingBootstrapIsAConfigurationError() {
        let error = #expect(throws: KafkaError.self) { _ = try KafkaProducer(configuration: KafkaConfiguration()) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.reason.contains("bootstrap") == true)
    }

    @Test func unknownTopicsGiveTypedErrors() async throws {
        try await withEmbeddedBroker { broker in
            let missing = uniqueName("missing")
            // UNKNOWN_TOPIC_OR_PART (3), as a cluster without auto-creation answers.
            try broker.setTopicError(missing, error: 3)
            var configuration = testConfiguration(broker)
            configuration["topic.metadata.propagation.max.ms"] = "500"
            configuration["message.timeout.ms"] = "5000"
            let producer = try KafkaProducer(configuration: configuration, logger: quietLogger)
            let sendError = await #expect(throws: KafkaError.self) {
                try await producer.send(ProducerMessage(topic: missing, value: [1]))
            }
            #expect(sendError?.code == .unknownTopic)
            await producer.shutdown()

            let consumer = try KafkaConsumer(configuration: testConfiguration(broker, group: uniqueName("g")), logger: quietLogger)
            let partitionsError = await #expect(throws: KafkaError.self) { _ = try await consumer.partitions(of: missing) }
            #expect(partitionsError?.code == .unknownTopic)
            try consumer.subscribe([missing])
            let reported = try await firstError(of: consumer)
            #expect(reported?.code == .unknownTopic)
            await consumer.close()
        }
    }

    @Test func adminCreateTopicsOnTheEmbeddedBrokerExplainsWhatToDo() async throws {
        try await withEmbeddedBroker { broker in
            let admin = try KafkaAdmin(configuration: testConfiguration(broker), logger: quietLogger)
            defer { admin.close() }
            let error = await #expect(throws: KafkaError.self) {
                _ = try await admin.createTopics([TopicSpecification(name: uniqueName("t"), partitions: 3)], timeout: .seconds(2))
            }
            #expect(error?.code == .adminUnsupported)
            #expect(error?.reason.contains("sluice broker --topics") == true)

            let topic = uniqueName("listed")
            #expect(try broker.createTopic(topic, partitions: 5) == .created)
            #expect(try broker.createTopic(topic, partitions: 5) == .alreadyExists)
            let description = try await admin.describeTopic(topic)
            #expect(description.partitions.map(\.id) == [0, 1, 2, 3, 4])
            #expect(try await admin.listTopics().contains { $0.name == topic })
            let missing = await #expect(throws: KafkaError.self) { _ = try await admin.describeTopic(uniqueName("nope")) }
            #expect(missing?.code == .unknownTopic)
        }
    }

    @Test func closedClientsRefuseWork() async throws {
        try await withEmbeddedBroker { broker in
            let producer = try KafkaProducer(configuration: testConfiguration(broker), logger: quietLogger)
            await producer.shutdown()
            await producer.shutdown()
            #expect(throws: KafkaError.self) { try producer.enqueue(ProducerMessage(topic: "t", value: [1])) }
            let consumer = try KafkaConsumer(configuration: testConfiguration(broker, group: uniqueName("g")), logger: quietLogger)
            await consumer.close()
            await consumer.close()
            await #expect(throws: KafkaError.self) { try await consumer.commit() }
            var iterator = consumer.events.makeAsyncIterator()
            #expect(try await iterator.next() == nil)
        }
    }
}
