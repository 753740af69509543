import ArgumentParser
import Foundation
import Logging
import SluiceKafka
import SluicePipeline

struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay", abstract: "Re-inject dead-lettered or rejected records after a fix.",
        discussion: """
            --from-dlq reads the dead-letter topic (original bytes, position and reason in headers); --from-rejected \
            reads the audit events of sluice.rejected and fetches each original record from its raw topic (while \
            retention still holds it). Records are filtered by --reason, --stage and record time (--since/--until), \
            then produced to their original topic (or --to) with their original key and headers and a \
            sluice.replay-of header naming the original position.

            The pipeline curates a replayed record under its original position: its sample key and fallback id are \
            the original's, so a record that already reached a shard is dropped as a resend, and replaying the same \
            records twice keeps each once. Dead-lettered records that were truncated (sluice.truncated) cannot be \
            replayed faithfully and are counted, not sent. Prints a JSON summary.

            Example, after raising decode.max_bytes:
              sluice replay --bootstrap localhost:9092 --from-dlq --reason oversize
            """)

    @Flag(help: "Replay records of the dead-letter topic.") var fromDLQ = false
    @Flag(help: "Replay records named by audit events of the rejected topic.") var fromRejected = false
    @Option(help: "The dead-letter topic.") var dlqTopic = "sluice.dlq"
    @Option(help: "The rejected-records topic.") var rejectedTopic = "sluice.rejected"
    @Option(help: "Only records dropped for this reason (repeatable).") var reason: [String] = []
    @Option(help: "Only records dropped by this stage (repeatable).") var stage: [String] = []
    @Option(help: ArgumentHelp("Only records dead-lettered or rejected at or after this time (RFC 3339).", valueName: "time")) var since: String?
    @Option(help: ArgumentHelp("Only records dead-lettered or rejected before this time (RFC 3339).", valueName: "time")) var until: String?
    @Option(help: ArgumentHelp("Produce to this topic instead of each record's original topic.", valueName: "topic")) var to: String?
    @Flag(help: "Count what would be replayed; send nothing.") var dryRun = false
    @OptionGroup var kafka: KafkaOptions

    func validate() throws {
        guard fromDLQ != fromRejected else { throw ValidationError("give one of --from-dlq or --from-rejected") }
        for (name, value) in [("--since", since), ("--until", until)] {
            if let value, Self.milliseconds(value) == nil { throw ValidationError("\(name) must be an RFC 3339 time, e.g. 2026-11-23T06:00:00Z (got '\(value)')") }
        }
    }

    static func milliseconds(_ text: String) -> Int64? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
        return nil
    }

    struct Summary {
        var read = 0, matched = 0, replayed = 0, truncated = 0, missing = 0
        var json: String {
            "{\"read\":\(read),\"matched\":\(matched),\"replayed\":\(replayed),\"truncated\":\(truncated),\"missing\":\(missing)}"
        }
    }

    func run() async throws {
        let logger = try kafka.bootstrapLogging()
        let configuration = try kafka.kafkaConfiguration()
        let window = (since.flatMap(Self.milliseconds) ?? .min, until.flatMap(Self.milliseconds) ?? .max)
        func inWindow(_ record: KafkaRecord) -> Bool {
            guard let time = record.timestamp?.milliseconds else { return true }
            return time >= window.0 && time < window.1
        }
        var summary = Summary()
        var outgoing: [ProducerMessage] = []
        if fromDLQ {
            for record in try await Self.readAll(topic: dlqTopic, configuration: configuration, logger: logger) {
                summary.read += 1
                func header(_ name: String) -> String? {
                    record.headers.last { $0.name == name }?.value.map { String(decoding: $0, as: UTF8.self) }
                }
                guard let topic = header("sluice.source.topic"), let partition = header("sluice.source.partition").flatMap(Int32.init),
                    let offset = header("sluice.source.offset").flatMap(Int64.init)
                else { continue }
                guard reason.isEmpty || reason.contains(header("sluice.reason") ?? ""), stage.isEmpty || stage.contains(header("sluice.stage") ?? ""),
                    inWindow(record)
                else { continue }
                summary.matched += 1
                if header("sluice.truncated") != nil {
                    summary.truncated += 1
                    continue
                }
                var headers = record.headers.filter { !$0.name.hasPrefix("sluice.") }
                headers.append(KafkaHeader(name: ReplayHeader.name, string: ReplayHeader.value(topic: topic, partition: partition, offset: offset)))
                outgoing.append(ProducerMessage(
                    topic: to ?? topic, key: record.keyBytes.map(Array.init), value: record.valueBytes.map(Array.init), headers: headers))
            }
        } else {
            var wanted: [TopicPartition: Set<Int64>] = [:]
            for record in try await Self.readAll(topic: rejectedTopic, configuration: configuration, logger: logger) {
                summary.read += 1
                guard let value = record.valueBytes,
                    let event = (try? JSONSerialization.jsonObject(with: Data(value))) as? [String: Any],
                    let topic = event["topic"] as? String, let partition = (event["partition"] as? NSNumber)?.int32Value,
                    let offset = (event["offset"] as? NSNumber)?.int64Value
                else { continue }
                guard reason.isEmpty || reason.contains(event["reason"] as? String ?? ""),
                    stage.isEmpty || stage.contains(event["stage"] as? String ?? ""), inWindow(record)
                else { continue }
                summary.matched += 1
                wanted[TopicPartition(topic: topic, partition: partition), default: []].insert(offset)
            }
            for (partition, offsets) in wanted.sorted(by: { "\($0.key)" < "\($1.key)" }) {
                let found = try await Self.fetch(partition, offsets: offsets, configuration: configuration, logger: logger)
                summary.missing += offsets.count - found.count
                for record in found {
                    var headers = record.headers.filter { !$0.name.hasPrefix("sluice.") }
                    headers.append(KafkaHeader(
                        name: ReplayHeader.name, string: ReplayHeader.value(topic: record.topic, partition: record.partition, offset: record.offset)))
                    outgoing.append(ProducerMessage(
                        topic: to ?? record.topic, key: record.keyBytes.map(Array.init), value: record.valueBytes.map(Array.init), headers: headers))
                }
            }
        }
        if !dryRun && !outgoing.isEmpty {
            let producer = try KafkaProducer(configuration: configuration, logger: logger)
            try await producer.send(batch: outgoing)
            await producer.shutdown(flushTimeout: .seconds(10))
            summary.replayed = outgoing.count
        }
        Terminal.out(summary.json)
    }

    /// Every record of a topic, from its beginning to the end it had when reading started.
    static func readAll(topic: String, configuration: KafkaConfiguration, logger: Logger) async throws -> [KafkaRecord] {
        let consumer = try reader(configuration, logger: logger)
        defer { Task { await consumer.close() } }
        let partitions: [Int32]
        do { partitions = try await consumer.partitions(of: topic) } catch { throw CommandError("cannot read \(topic): \(error)") }
        var ends: [TopicPartition: Int64] = [:]
        for partition in partitions {
            let position = TopicPartition(topic: topic, partition: partition)
            let marks = try await consumer.watermarks(of: position)
            if marks.high > marks.low { ends[position] = marks.high }
        }
        guard !ends.isEmpty else { return [] }
        try await consumer.assign(ends.keys.map { TopicPartitionOffset(topic: topic, partition: $0.partition, offset: KafkaOffset.beginning) })
        return try await collect(consumer, until: ends) { _ in true }
    }

    /// The records at `offsets` of one partition (those retention still holds).
    static func fetch(_ partition: TopicPartition, offsets: Set<Int64>, configuration: KafkaConfiguration, logger: Logger) async throws -> [KafkaRecord] {
        guard let first = offsets.min(), let last = offsets.max() else { return [] }
        let consumer = try reader(configuration, logger: logger)
        defer { Task { await consumer.close() } }
        let marks = try await consumer.watermarks(of: partition)
        let end = min(marks.high, last + 1)
        guard end > max(first, marks.low) else { return [] }
        try await consumer.assign([TopicPartitionOffset(topic: partition.topic, partition: partition.partition, offset: max(first, marks.low))])
        return try await collect(consumer, until: [partition: end]) { offsets.contains($0.offset) }
    }

    /// A group-less consumer that reports each partition's end.
    private static func reader(_ configuration: KafkaConfiguration, logger: Logger) throws -> KafkaConsumer {
        var settings = configuration
        settings["enable.partition.eof"] = "true"
        settings.setDefault("fetch.wait.max.ms", "100")
        return try KafkaConsumer(configuration: settings, logger: logger)
    }

    private static func collect(
        _ consumer: KafkaConsumer, until ends: [TopicPartition: Int64], keep: (KafkaRecord) -> Bool
    ) async throws -> [KafkaRecord] {
        var remaining = Set(ends.keys)
        var records: [KafkaRecord] = []
        var iterator = consumer.events.makeAsyncIterator()
        while !remaining.isEmpty, let event = try await iterator.next() {
            switch event {
            case .record(let record):
                if let end = ends[record.topicPartition], record.offset < end, keep(record) { records.append(record) }
                if let end = ends[record.topicPartition], record.offset + 1 >= end { remaining.remove(record.topicPartition) }
            case .partitionEOF(let position):
                remaining.remove(position.topicPartition)
            case .error(let error):
                if error.code == .unknownTopic { throw error }
            default:
                break
            }
        }
        return records
    }
}
