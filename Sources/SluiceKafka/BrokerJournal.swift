public import Foundation
public import Logging
internal import Synchronization

/// A journal that lets the embedded broker's contents outlive its process, so `sluice demo` can stop and later
/// continue where it stopped: every record of the journaled topics, in offset order.
///
/// Layout of the directory:
/// - `partitions.json`: `{"topic": partitions, …}`;
/// - `<topic>/<partition>.jsonl`: one record per line, in the format of ``KafkaRecord/appendJSONLine(to:)``.
///
/// ``restore(into:configuration:)`` creates the topics in a fresh broker and produces every journaled record to the
/// partition it came from, in order, so each lands at its recorded offset (checked). Committed group offsets are
/// not kept: Sluice's consumers do not need them to resume (the pipeline resumes from its index, the retrain
/// service skips requests it decided before). ``follow(configuration:)`` then appends what arrives; ``stop()``
/// drains every partition to its high watermark. Records reach the file as they are consumed (no fsync), so a killed
/// process loses at most what its consumer had not yet written. Record timestamps are not kept: restored records
/// carry the time of the restore.
///
/// Only for the embedded broker: a real Kafka cluster keeps its own data.
public final class BrokerJournal: @unchecked Sendable {
    // @unchecked: `stopping` is guarded by `lock`.
    public let directory: URL
    private let logger: Logger
    private let lock = NSLock()
    private var stopping = false

    /// What ``restore(into:configuration:)`` found and replayed.
    public struct RestoreSummary: Sendable {
        public var topics = 0
        public var records = 0
    }

    public init(directory: URL, logger: Logger = Logger(label: "sluice.kafka.journal")) throws {
        self.directory = directory
        self.logger = logger
        do { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw KafkaError.invalidArgument("cannot create the broker journal \(directory.path): \(error.localizedDescription)")
        }
    }

    /// The journaled topics and their partition counts.
    public func topics() throws -> [String: Int32] {
        let url = directory.appendingPathComponent("partitions.json")
        guard let data = try? Data(contentsOf: url) else { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Int] else {
            throw KafkaError.invalidArgument("\(url.path) is not a JSON object of partition counts")
        }
        return object.mapValues { Int32($0) }
    }

    /// Records `topics` (name → partitions) as journaled; topics already listed keep their entry.
    public func register(_ topics: [String: Int32]) throws {
        let merged = try self.topics().merging(topics) { old, _ in old }
        try write(merged.mapValues { Int($0) }, to: "partitions.json")
    }

    /// Replays the journal into `broker`: topics, then records at their offsets.
    /// - Throws: ``KafkaError`` when a record cannot be produced or lands at another offset than recorded.
    public func restore(into broker: EmbeddedBroker, configuration: KafkaConfiguration) async throws -> RestoreSummary {
        var summary = RestoreSummary()
        let topics = try self.topics()
        for (topic, partitions) in topics.sorted(by: { $0.key < $1.key }) {
            try broker.createTopic(topic, partitions: partitions)
            summary.topics += 1
        }
        var producerConfiguration = configuration
        producerConfiguration.bootstrapServers = broker.bootstrapServers
        producerConfiguration["max.in.flight.requests.per.connection"] = "1"
        producerConfiguration["linger.ms"] = "5"
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        defer { Task { await producer.shutdown() } }
        let admin = try KafkaAdmin(configuration: producerConfiguration, logger: logger)
        defer { admin.close() }
        // Every record in one batch, enqueued in order by one thread, one request in flight per connection so a
        // retry cannot reorder; the offsets are checked below.
        var batch: [ProducerMessage] = []
        var ends: [(TopicPartition, Int64)] = []
        for (topic, partitions) in topics.sorted(by: { $0.key < $1.key }) {
            for partition in 0..<partitions {
                let records = try readPartition(topic: topic, partition: partition)
                guard let last = records.last else { continue }
                for record in records {
                    batch.append(ProducerMessage(topic: topic, partition: partition, key: record.key, value: record.value, headers: record.headers))
                }
                ends.append((TopicPartition(topic: topic, partition: partition), last.offset))
            }
        }
        if !batch.isEmpty { try await producer.send(batch: batch) }
        summary.records = batch.count
        for (partition, last) in ends {
            let high = try await admin.watermarks(topic: partition.topic, partition: partition.partition).high
            guard high == last + 1 else {
                throw KafkaError.invalidArgument(
                    "the journal of \(partition) is out of step: it ends at offset \(last), the restored partition at \(high - 1)")
            }
        }
        return summary
    }

    /// Follows every journaled partition from the end of its file and appends what arrives, until ``stop()``.
    public func follow(configuration: KafkaConfiguration) async throws {
        let topics = try self.topics()
        var consumerConfiguration = configuration
        consumerConfiguration.groupID = nil
        let consumer = try KafkaConsumer(configuration: consumerConfiguration, logger: logger)
        var files: [TopicPartition: FileHandle] = [:]
        var assignment: [TopicPartitionOffset] = []
        for (topic, partitions) in topics {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(topic), withIntermediateDirectories: true)
            for partition in 0..<partitions {
                let url = partitionURL(topic: topic, partition: partition)
                let next = try lastOffset(topic: topic, partition: partition).map { $0 + 1 } ?? 0
                if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
                let handle = try FileHandle(forUpdating: url)
                try Self.dropCutLine(handle)
                let key = TopicPartition(topic: topic, partition: partition)
                files[key] = handle
                assignment.append(TopicPartitionOffset(topic: topic, partition: partition, offset: next))
            }
        }
        defer { for handle in files.values { try? handle.close() } }
        let positions = Positions(Dictionary(uniqueKeysWithValues: assignment.map { ($0.topicPartition, $0.offset) }))
        let keys = Array(files.keys)
        try await consumer.assign(assignment)

        // Once stop() is asked, waits until every partition reached the high watermark it had then, and closes the
        // consumer, which ends the loop below.
        let watcher = Task { [lock, logger] in
            var target: [TopicPartition: Int64]?
            while true {
                try? await Task.sleep(for: .milliseconds(100))
                guard lock.withLock({ self.stopping }) else { continue }
                if target == nil {
                    var marks: [TopicPartition: Int64] = [:]
                    for key in keys { marks[key] = (try? await consumer.watermarks(of: key).high) ?? 0 }
                    target = marks
                    logger.debug("journal draining to the high watermarks")
                }
                let current = positions.state.withLock { $0 }
                if target!.allSatisfy({ (current[$0.key] ?? 0) >= $0.value }) { break }
            }
            await consumer.close()
        }
        var buffer: [UInt8] = []
        do {
            for try await event in consumer.events {
                guard case .record(let record) = event, let handle = files[record.topicPartition] else { continue }
                let expected = positions.state.withLock { $0[record.topicPartition] ?? 0 }
                guard record.offset >= expected else { continue }
                buffer.removeAll(keepingCapacity: true)
                record.appendJSONLine(to: &buffer)
                try handle.write(contentsOf: buffer)
                positions.state.withLock { $0[record.topicPartition] = record.offset + 1 }
            }
        } catch {
            watcher.cancel()
            await consumer.close()
            throw error
        }
        _ = await watcher.value
    }

    /// Asks ``follow(configuration:)`` to drain every partition to its current high watermark
    /// and return.
    public func stop() {
        lock.withLock { stopping = true }
    }

    private final class Positions: Sendable {
        let state: Mutex<[TopicPartition: Int64]>
        init(_ initial: [TopicPartition: Int64]) { state = Mutex(initial) }
    }

    // MARK: Files

    struct JournaledRecord {
        var offset: Int64
        var key: [UInt8]?
        var value: [UInt8]?
        var headers: [KafkaHeader]
    }

    private func partitionURL(topic: String, partition: Int32) -> URL {
        directory.appendingPathComponent(topic).appendingPathComponent("\(partition).jsonl")
    }

    /// Truncates a last line that a killed process left without its newline, and leaves `handle` at the end, so
    /// the next record starts a line of its own.
    static func dropCutLine(_ handle: FileHandle) throws {
        var end = try handle.seekToEnd()
        while end > 0 {
            let start = end - min(end, 4096)
            try handle.seek(toOffset: start)
            let chunk = try handle.read(upToCount: Int(end - start)) ?? Data()
            if let newline = chunk.lastIndex(of: UInt8(ascii: "\n")) {
                end = start + UInt64(newline - chunk.startIndex) + 1
                break
            }
            end = start
        }
        try handle.truncate(atOffset: end)
        try handle.seek(toOffset: end)
    }

    /// The offset of the last complete line of a partition's journal (its tail only is read).
    func lastOffset(topic: String, partition: Int32) throws -> Int64? {
        let url = partitionURL(topic: topic, partition: partition)
        guard let handle = try? FileHandle(forReadingFrom: url) else { return nil }
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        var window: UInt64 = 64 << 10
        while true {
            try handle.seek(toOffset: size - min(size, window))
            let tail = try handle.readToEnd() ?? Data()
            // Complete lines end with a newline; a line cut short by a killed process is skipped, as in restore.
            let lines = tail.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
            let complete = tail.last == UInt8(ascii: "\n") ? lines : lines.dropLast()
            let candidates = window >= size ? complete[...] : complete.dropFirst()  // the first may be partial
            for line in candidates.reversed() {
                if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                    let offset = (object["offset"] as? NSNumber)?.int64Value
                { return offset }
            }
            if window >= size { return nil }
            window *= 4
        }
    }

    func readPartition(topic: String, partition: Int32) throws -> [JournaledRecord] {
        let url = partitionURL(topic: topic, partition: partition)
        guard let data = try? Data(contentsOf: url), !data.isEmpty else { return [] }
        var records: [JournaledRecord] = []
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n")) {
            lineNumber += 1
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                let offset = (object["offset"] as? NSNumber)?.int64Value
            else {
                // A line cut short by a killed process is the last one; anything else is damage.
                if lineNumber == data.split(separator: UInt8(ascii: "\n")).count { break }
                throw KafkaError.invalidArgument("\(url.path):\(lineNumber) is not a journaled record")
            }
            let headers = (object["headers"] as? [[String: Any]] ?? []).compactMap { header -> KafkaHeader? in
                guard let name = header["name"] as? String else { return nil }
                return KafkaHeader(name: name, value: Self.bytes(header["value"]))
            }
            records.append(JournaledRecord(offset: offset, key: Self.bytes(object["key"]), value: Self.bytes(object["value"]), headers: headers))
        }
        return records
    }

    private static func bytes(_ value: Any?) -> [UInt8]? {
        if let string = value as? String { return Array(string.utf8) }
        if let object = value as? [String: Any], let base64 = object["base64"] as? String, let data = Data(base64Encoded: base64) {
            return Array(data)
        }
        return nil
    }

    private func write(_ object: Any, to name: String) throws {
        let url = directory.appendingPathComponent(name)
        do {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
            try data.write(to: url, options: .atomic)
        } catch {
            throw KafkaError.invalidArgument("cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}
