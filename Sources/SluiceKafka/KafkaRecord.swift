/// A topic and one of its partitions.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    /// The topic name.
    public var topic: String
    /// The partition number, from 0.
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// A position in a partition: the offset of the *next* record to read, as Kafka commits it.
public struct TopicPartitionOffset: Hashable, Sendable, CustomStringConvertible {
    /// The partition.
    public var topicPartition: TopicPartition
    /// The next offset to read.
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        topicPartition = TopicPartition(topic: topic, partition: partition)
        self.offset = offset
    }

    public var topic: String { topicPartition.topic }
    public var partition: Int32 { topicPartition.partition }
    public var description: String { "\(topicPartition)@\(offset)" }
}

/// One Kafka record header. Header names may repeat within a record.
public struct KafkaHeader: Hashable, Sendable {
    /// The header name.
    public var name: String
    /// The header value; `nil` is a header without a value.
    public var value: [UInt8]?

    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    /// A header whose value is the UTF-8 encoding of `value`.
    public init(name: String, string value: String) {
        self.name = name
        self.value = Array(value.utf8)
    }
}

/// A record's timestamp in milliseconds since the Unix epoch and who set it.
public struct KafkaTimestamp: Hashable, Sendable {
    /// Who set the timestamp.
    public enum Kind: String, Sendable {
        /// The producer.
        case createTime
        /// The broker, when the record was appended.
        case logAppendTime
    }
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public var milliseconds: Int64
    /// Who set it.
    public var kind: Kind

    public init(milliseconds: Int64, kind: Kind) {
        self.milliseconds = milliseconds
        self.kind = kind
    }
}

/// A record read from Kafka. Key, value and headers are copies: holding a record pins no librdkafka memory.
///
/// Records of one poll batch share one byte buffer (``keyBytes`` and ``valueBytes`` are slices of it), so a
/// consumer allocates once per batch rather than twice per record; a record kept alive keeps its batch's
/// buffer alive.
public struct KafkaRecord: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    /// The key bytes without copying; `nil` when the record has none.
    public var keyBytes: ArraySlice<UInt8>?
    /// The value bytes without copying; `nil` is a tombstone.
    public var valueBytes: ArraySlice<UInt8>?
    public var headers: [KafkaHeader]
    public var timestamp: KafkaTimestamp?

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]? = nil, value: [UInt8]?,
        headers: [KafkaHeader] = [], timestamp: KafkaTimestamp? = nil
    ) {
        self.init(
            topic: topic, partition: partition, offset: offset, keyBytes: key.map { $0[...] },
            valueBytes: value.map { $0[...] }, headers: headers, timestamp: timestamp)
    }

    public init(
        topic: String, partition: Int32, offset: Int64, keyBytes: ArraySlice<UInt8>?, valueBytes: ArraySlice<UInt8>?,
        headers: [KafkaHeader], timestamp: KafkaTimestamp?
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.keyBytes = keyBytes
        self.valueBytes = valueBytes
        self.headers = headers
        self.timestamp = timestamp
    }

    /// The key as an array (a copy); `nil` when the record has none.
    public var key: [UInt8]? { keyBytes.map { Array($0) } }

    /// The value as an array (a copy); `nil` is a tombstone.
    public var value: [UInt8]? { valueBytes.map { Array($0) } }

    /// The partition this record came from.
    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }

    /// The position to commit once this record is processed: its offset plus one.
    public var nextPosition: TopicPartitionOffset {
        TopicPartitionOffset(topic: topic, partition: partition, offset: offset + 1)
    }

    /// The first header named `name`.
    public func header(_ name: String) -> [UInt8]? {
        headers.first { $0.name == name }?.value
    }
}

/// A record to produce.
public struct ProducerMessage: Sendable {
    public var topic: String
    /// The partition; `nil` lets the partitioner choose (by key hash when a key is set).
    public var partition: Int32?
    public var key: [UInt8]?
    /// The value; `nil` produces a tombstone.
    public var value: [UInt8]?
    public var headers: [KafkaHeader]

    public init(
        topic: String, partition: Int32? = nil, key: [UInt8]? = nil, value: [UInt8]?, headers: [KafkaHeader] = []
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// Where a produced record landed.
public struct DeliveryReport: Sendable {
    public var topic: String
    public var partition: Int32
    /// The record's offset; -1 when the broker did not report one or delivery failed.
    public var offset: Int64
    /// Why delivery failed, or `nil` on success.
    public var error: KafkaError?
    /// The caller's tag given to ``KafkaProducer/enqueueBlocking(topic:partition:key:value:headers:tag:)``; 0 when
    /// none was given.
    public var tag: UInt64 = 0
    /// Key plus value bytes of the record.
    public var size: Int = 0
}
