import Foundation
import Logging
import SluiceKafka
import Testing

/// Runs `body` with a fresh in-process embedded broker on 127.0.0.1 and always shuts it down.
func withEmbeddedBroker<T>(
    brokers: Int = 1, _ body: (EmbeddedBroker) async throws -> T
) async throws -> T {
    let broker = try EmbeddedBroker(brokers: brokers)
    defer { broker.shutdown() }
    return try await body(broker)
}

/// A unique name per test so that suites can run in parallel on one broker.
func uniqueName(_ prefix: String) -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// Client settings that keep the embedded broker responsive in tests.
func testConfiguration(_ broker: EmbeddedBroker, group: String? = nil) -> KafkaConfiguration {
    var configuration = KafkaConfiguration()
    configuration.bootstrapServers = broker.bootstrapServers
    configuration.groupID = group
    configuration.applyLowLatencyDefaults()
    return configuration
}

/// A logger that drops everything (librdkafka's reconnect noise during fault tests included).
let quietLogger = Logger(label: "sluice.test") { _ in SwiftLogNoOpLogHandler() }

/// Consumes events until `until` returns true or `timeout` passes; returns the records seen.
func collect(
    _ consumer: KafkaConsumer, timeout: Duration = .seconds(30), store: Bool = false,
    until done: @escaping @Sendable ([KafkaRecord]) -> Bool
) async throws -> [KafkaRecord] {
    try await withThrowingTaskGroup(of: [KafkaRecord]?.self) { group in
        group.addTask {
            var records: [KafkaRecord] = []
            for try await event in consumer.events {
                if case .record(let record) = event {
                    records.append(record)
                    if store { try consumer.store(record) }
                    if done(records) { return records }
                }
            }
            return records
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let records = first else {
            Issue.record("timed out after \(timeout)")
            return []
        }
        return records
    }
}
