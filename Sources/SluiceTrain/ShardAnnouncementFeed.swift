public import Foundation
public import SluiceKafka
public import Logging
internal import SluiceShards

/// Why an announcement or a shard list could not be read.
public struct TrainError: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "TrainError: \(reason)" }
}

extension ShardAnnouncement {
    /// Parses one `sluice.shards` event (`shard`, `path`, `sha256`, `samples`; other fields are ignored).
    public init(event: [UInt8]) throws(TrainError) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(event))) as? [String: Any] else {
            throw TrainError("a shard announcement is not a JSON object")
        }
        guard let name = object["shard"] as? String, let path = object["path"] as? String,
            let sha256 = object["sha256"] as? String, let samples = object["samples"] as? Int
        else {
            throw TrainError("a shard announcement lacks shard, path, sha256 or samples")
        }
        self.init(name: name, path: path, sha256: sha256, samples: samples)
    }

    /// The sealed shards of a curated directory, from its `index.sqlite`, in name order (for `sluice curate`
    /// output, input order; for the streaming pipeline's, topic, partition and offset).
    public static func directory(_ directory: URL) throws(TrainError) -> [ShardAnnouncement] {
        do {
            let index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
            return try index.shards().map {
                ShardAnnouncement(name: $0.name, path: $0.fileName, sha256: $0.sha256, samples: $0.samples)
            }
        } catch {
            throw TrainError("cannot read the shard index of \(directory.path): \(error.reason)")
        }
    }
}

/// Follows a shards topic (one partition, `sluice.shards` by default) from an offset, without a consumer group:
/// the loader's state remembers where it stands, so a restarted trainer continues from there.
///
/// One reader at a time: ``next()`` keeps one record iterator (records arrive in batches, and a fresh iterator
/// per call would drop the rest of a batch).
public final class ShardAnnouncementFeed: @unchecked Sendable {
    // @unchecked: `records` is used by one caller at a time, as documented.
    private let consumer: KafkaConsumer
    private var records: ConsumerRecords.Iterator
    public let topic: String

    /// Starts reading `topic` partition 0 at `offset` (0: from the first announcement).
    public init(configuration: KafkaConfiguration, topic: String = "sluice.shards", from offset: Int64, logger: Logger = Logger(label: "sluice.train"))
        async throws
    {
        var configuration = configuration
        configuration.properties.removeValue(forKey: "group.id")
        configuration.setDefault("fetch.wait.max.ms", "100")
        consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        records = consumer.records.makeAsyncIterator()
        self.topic = topic
        try await consumer.assign([TopicPartitionOffset(topic: topic, partition: 0, offset: offset)])
    }

    /// The next announcement and its offset, waiting for one; an event that is not an announcement comes back as
    /// a failure with its offset, so the caller can report and skip it.
    public func next() async throws -> (offset: Int64, announcement: Result<ShardAnnouncement, TrainError>)? {
        while let record = try await records.next() {
            guard let value = record.valueBytes else { continue }
            return (record.offset, Result { () throws(TrainError) in try ShardAnnouncement(event: Array(value)) })
        }
        return nil
    }

    /// The offset after the last announcement on the topic now.
    public func end() async throws -> Int64 {
        try await consumer.watermarks(of: TopicPartition(topic: topic, partition: 0)).high
    }

    public func close() async {
        await consumer.close()
    }
}
