internal import CRdKafka
internal import Foundation
public import Logging
internal import CoreMetrics
internal import Synchronization

/// A Kafka consumer over librdkafka, in a consumer group with manual commits or with manual assignment.
///
/// Records arrive through ``events`` (records interleaved with rebalance events, in order) or ``records``. A
/// dedicated thread polls librdkafka and stops polling while the application's bounded buffer is full.
/// Offsets are never committed automatically: ``store(_:)`` marks a record processed, ``commit()`` commits
/// what is stored, ``commit(_:)`` commits explicit positions. On revocation the application sees
/// ``ConsumerEvent/revoked(_:)`` *before* the partitions are released, and stored offsets are committed after it.
///
/// By default `auto.offset.reset=error`: partitions without a committed offset start at
/// ``Options/startWithoutCommittedOffset``, and a committed offset that retention has overtaken is a loud
/// ``KafkaError`` `.dataLostToRetention`, never a silent skip.
///
/// Thread-safe; iterate ``events`` from one task at a time. Call ``close()`` to commit stored offsets and leave
/// the group.
public final class KafkaConsumer: Sendable {
    /// Where a partition without a committed offset starts.
    public enum StartPosition: String, Sendable {
        /// The earliest retained record.
        case beginning
        /// Only records produced after assignment.
        case end
    }

    /// Consumer behaviour beyond librdkafka's properties.
    public struct Options: Sendable {
        /// How many records the poll thread buffers ahead of the application. Default 4096.
        public var bufferCapacity = 4096
        /// How long a revocation waits for the application to acknowledge ``ConsumerEvent/revoked(_:)``.
        /// Default 60 s.
        public var revocationTimeout: Duration = .seconds(60)
        /// Where partitions without a committed offset start. Default `.beginning`.
        public var startWithoutCommittedOffset: StartPosition = .beginning
        /// Start every assigned partition at ``startWithoutCommittedOffset`` even when the group has a committed
        /// offset (a replay from the beginning, or tailing only new records). Default `false`.
        public var ignoreCommittedOffsets = false
        /// Upper bound for blocking broker queries (committed offsets, watermarks, metadata). Default 10 s.
        public var requestTimeout: Duration = .seconds(10)

        public init() {}
    }

    private let client: ConsumerClient

    /// Creates a consumer.
    ///
    /// `enable.auto.commit` and `enable.auto.offset.store` are forced off; `auto.offset.reset` defaults to
    /// `error`. Without `group.id` only ``assign(_:)`` works.
    /// - Throws: ``KafkaError`` `.invalidConfiguration` with librdkafka's message.
    public init(
        configuration: KafkaConfiguration, options: Options = Options(),
        logger: Logger = Logger(label: "sluice.kafka")
    ) throws {
        var configuration = configuration
        guard configuration.bootstrapServers != nil else {
            throw KafkaError.invalidConfiguration("bootstrap.servers is not set; give --bootstrap HOST:PORT")
        }
        configuration["enable.auto.commit"] = "false"
        configuration["enable.auto.offset.store"] = "false"
        configuration.setDefault("auto.offset.reset", "error")
        client = try ConsumerClient(configuration: configuration, options: options, logger: logger)
    }

    deinit {
        client.requestClose()
    }

    /// The consumer's events: records, rebalances, EOFs and non-fatal errors, in order.
    public var events: ConsumerEvents { ConsumerEvents(buffer: client.buffer) }

    /// Only the records.
    public var records: ConsumerRecords { ConsumerRecords(events: events) }

    /// Subscribes to topics in the consumer group (`group.id` required). Names starting with `^` are regexes.
    public func subscribe(_ topics: [String]) throws {
        try client.subscribe(topics)
    }

    /// Assigns partitions manually (no group management), starting at the given offsets. Use
    /// ``KafkaOffset`` values for the beginning, the end or the committed offset.
    public func assign(_ partitions: [TopicPartitionOffset]) async throws {
        // Logical offsets are resolved here, where a broker round trip can wait for the connection: librdkafka
        // resolves them on a 500 ms retry timer when the leader connection is not up yet at assignment.
        var partitions = partitions
        for index in partitions.indices
        where partitions[index].offset == KafkaOffset.beginning || partitions[index].offset == KafkaOffset.end {
            guard let marks = try? await client.watermarks(partitions[index].topicPartition) else { continue }
            partitions[index].offset = partitions[index].offset == KafkaOffset.beginning ? marks.low : marks.high
        }
        try await client.onPollThread { [partitions] handle in
            let list = TopicPartitionList.make(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_assign(handle, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.fromLibrdkafka(err, context: "assign failed") }
        }
    }

    /// Marks records as processed: their next offsets are committed by the next ``commit()`` or at revocation.
    public func store(_ record: KafkaRecord) throws {
        try store([record.nextPosition])
    }

    /// Marks positions (next offsets to read) as processed.
    public func store(_ positions: [TopicPartitionOffset]) throws {
        try client.store(positions)
    }

    /// Commits the stored offsets synchronously; returns once the broker accepted them.
    /// - Throws: ``KafkaError`` `.commit` (retriable while a rebalance is in progress).
    public func commit() async throws {
        try await client.commit(nil, async: false)
    }

    /// Commits explicit positions (next offsets to read) synchronously.
    public func commit(_ positions: [TopicPartitionOffset]) async throws {
        try await client.commit(positions, async: false)
    }

    /// Sends a commit of explicit positions from any thread without waiting or blocking: commits stay in order,
    /// ``close()`` waits for outstanding ones, failures are logged.
    public func commitInBackground(_ positions: [TopicPartitionOffset]) throws {
        try client.commitInBackground(positions)
    }

    /// Sends a commit without waiting for the reply; failures are logged.
    public func commitAsync(_ positions: [TopicPartitionOffset]? = nil) async throws {
        try await client.commit(positions, async: true)
    }

    /// The group's committed positions for `partitions`; `nil` where none is committed.
    public func committed(_ partitions: [TopicPartition]) async throws -> [TopicPartition: Int64?] {
        try await client.committed(partitions)
    }

    /// The low and high watermarks (first retained offset, next offset to be written) of a partition.
    public func watermarks(of partition: TopicPartition) async throws -> (low: Int64, high: Int64) {
        try await client.watermarks(partition)
    }

    /// The partitions of a topic, from broker metadata.
    /// - Throws: ``KafkaError`` `.unknownTopic` when the topic does not exist.
    public func partitions(of topic: String) async throws -> [Int32] {
        try await client.partitions(of: topic)
    }

    /// The currently assigned partitions.
    public func assignment() async throws -> [TopicPartition] {
        try await client.onPollThread { handle in
            var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
            let err = rd_kafka_assignment(handle, &list)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let list else {
                throw KafkaError.fromLibrdkafka(err, context: "could not read the assignment")
            }
            defer { rd_kafka_topic_partition_list_destroy(list) }
            return TopicPartitionList.read(list).map { $0.0.topicPartition }
        }
    }

    /// Moves the read position of assigned partitions; buffered records of those partitions are dropped.
    public func seek(_ positions: [TopicPartitionOffset]) async throws {
        try await client.seek(positions)
    }

    /// Stops fetching from partitions (for operators; not flow control: it discards librdkafka's prefetch).
    public func pause(_ partitions: [TopicPartition]) async throws {
        try await client.pauseResume(partitions, pause: true)
    }

    /// Resumes fetching from paused partitions.
    public func resume(_ partitions: [TopicPartition]) async throws {
        try await client.pauseResume(partitions, pause: false)
    }

    /// Starts ``close()`` without waiting: usable from synchronous code such as a signal handler.
    public func requestClose() {
        client.requestClose()
    }

    /// Commits stored offsets, leaves the group and destroys the client; the event sequence then ends.
    /// Idempotent.
    public func close() async {
        await client.close()
    }
}

/// Special offsets for ``KafkaConsumer/assign(_:)`` and ``KafkaConsumer/seek(_:)``.
public enum KafkaOffset {
    /// The earliest retained record.
    public static var beginning: Int64 { sluice_offset_beginning() }
    /// The next record to be produced.
    public static var end: Int64 { sluice_offset_end() }
    /// The group's committed offset.
    public static var committed: Int64 { sluice_offset_stored() }
}

/// Consumer metrics: names are Prometheus style, created once per consumer.
enum ConsumerMetrics {
    static let dataLost = "sluice_kafka_data_lost_total"
    static let recordsConsumed = "sluice_kafka_records_consumed_total"
}
