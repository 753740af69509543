public import GRDB
internal import Foundation

/// A record a stage dropped (or could not decode), as the index keeps it for the audit.
public struct RejectedRecord: Sendable, Equatable {
    public var offset: Int64
    public var id: String?
    public var stage: String
    public var reason: String
    /// Extra JSON members (without braces), e.g. `"score":0.31` or `"duplicate_of":"a","similarity":0.9`.
    public var detail: String

    public init(offset: Int64, id: String?, stage: String, reason: String, detail: String = "") {
        self.offset = offset
        self.id = id
        self.stage = stage
        self.reason = reason
        self.detail = detail
    }
}

/// One partition's progress since its previous checkpoint: the offsets `firstOffset ..< nextOffset` are fully
/// accounted for — kept in the checkpoint's shard (if any) or listed in `rejected`.
public struct PartitionCheckpoint: Sendable {
    public var topic: String
    public var partition: Int32
    public var firstOffset: Int64
    public var nextOffset: Int64
    public var records: Int
    public var kept: Int
    public var rejected: [RejectedRecord]

    public init(
        topic: String, partition: Int32, firstOffset: Int64, nextOffset: Int64, records: Int, kept: Int,
        rejected: [RejectedRecord]
    ) {
        self.topic = topic
        self.partition = partition
        self.firstOffset = firstOffset
        self.nextOffset = nextOffset
        self.records = records
        self.kept = kept
        self.rejected = rejected
    }
}

/// What a checkpoint announces: its shard (when it has one), offsets and a quality summary.
public struct CheckpointReport: Sendable {
    public var id: Int64
    public var dataset: String
    public var topic: String
    public var partition: Int32
    public var firstOffset: Int64
    public var nextOffset: Int64
    public var records: Int
    public var kept: Int
    public var shard: ShardRecord?
    public var meanScore: Double?
    /// Counts by `stage/reason`.
    public var rejectedCounts: [String: Int]
    public var rejected: [RejectedRecord]
}

/// Streaming progress: the index is the source of truth for what each partition has sealed.
///
/// A checkpoint row, its shard, the shard's samples and offsets, the rejected records and the dedup entries of the
/// kept documents are written in one transaction, so after a crash a partition resumes exactly at the highest
/// `next_offset` recorded, whatever the group's committed offset says.
extension ShardIndex {
    /// The next offset to process for each partition of `topic` (the highest checkpointed `next_offset`);
    /// partitions without a checkpoint are absent.
    public func highWaterMarks(topic: String) throws(ShardError) -> [Int32: Int64] {
        try ShardError.wrap("reading checkpoints of \(topic)") {
            try writer.read { db in
                var marks: [Int32: Int64] = [:]
                for row in try Row.fetchAll(
                    db, sql: "SELECT partition, MAX(next_offset) AS mark FROM checkpoints WHERE topic = ? GROUP BY partition",
                    arguments: [topic])
                {
                    marks[Int32(row["partition"] as Int)] = row["mark"]
                }
                return marks
            }
        }
    }

    /// Records a checkpoint (with its sealed shard, if any) and runs `extra` (dedup entries) in one transaction.
    /// - Returns: the checkpoint id, for ``markAnnounced(_:)``.
    /// - Throws: ``ShardError`` `.database`, e.g. when the offsets overlap a checkpoint already recorded.
    @discardableResult
    public func recordCheckpoint(
        _ checkpoint: PartitionCheckpoint, shard: SealedShard?, dataset: String,
        extra: (Database) throws -> Void = { _ in }
    ) throws(ShardError) -> Int64 {
        var id: Int64 = 0
        func body(_ db: Database) throws {
            let mark = try Int64.fetchOne(
                db, sql: "SELECT MAX(next_offset) FROM checkpoints WHERE topic = ? AND partition = ?",
                arguments: [checkpoint.topic, checkpoint.partition]) ?? Int64.min
            guard mark <= checkpoint.firstOffset else {
                throw ShardError.make(
                    .alreadyExists,
                    "\(checkpoint.topic)[\(checkpoint.partition)] is already sealed through offset \(mark - 1); "
                        + "refusing to record offsets \(checkpoint.firstOffset) again")
            }
            try db.execute(
                sql: """
                    INSERT INTO checkpoints (dataset, topic, partition, first_offset, next_offset, shard, records, kept, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    dataset, checkpoint.topic, checkpoint.partition, checkpoint.firstOffset, checkpoint.nextOffset,
                    shard?.name, checkpoint.records, checkpoint.kept, ShardTime.format(Date()),
                ])
            id = db.lastInsertedRowID
            let insert = try db.cachedStatement(
                sql: "INSERT INTO rejected (topic, partition, offset, checkpoint, id, stage, reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            for record in checkpoint.rejected {
                try insert.execute(arguments: [
                    checkpoint.topic, checkpoint.partition, record.offset, id, record.id, record.stage, record.reason,
                    record.detail.isEmpty ? nil : record.detail,
                ])
            }
            try extra(db)
        }
        if let shard {
            let range = ShardOffsetRange(
                topic: checkpoint.topic, partition: Int(checkpoint.partition), first: checkpoint.firstOffset,
                last: checkpoint.nextOffset - 1)
            try record(shard, dataset: dataset, offsets: [range], extra: body)
        } else {
            try ShardError.wrap("recording a checkpoint of \(checkpoint.topic)[\(checkpoint.partition)]") {
                try writer.write(body)
            }
        }
        return id
    }

    /// Checkpoints recorded but not yet announced (a crash came between), oldest first.
    public func unannouncedCheckpoints(dataset: String) throws(ShardError) -> [Int64] {
        try ShardError.wrap("listing unannounced checkpoints") {
            try writer.read { db in
                try Int64.fetchAll(
                    db, sql: "SELECT id FROM checkpoints WHERE announced = 0 AND dataset = ? ORDER BY id", arguments: [dataset])
            }
        }
    }

    /// Marks checkpoints announced.
    public func markAnnounced(_ ids: [Int64]) throws(ShardError) {
        guard !ids.isEmpty else { return }
        try ShardError.wrap("marking checkpoints announced") {
            try writer.write { db in
                for id in ids { try db.execute(sql: "UPDATE checkpoints SET announced = 1 WHERE id = ?", arguments: [id]) }
            }
        }
    }

    /// Everything an announcement of checkpoint `id` says.
    public func checkpointReport(_ id: Int64) throws(ShardError) -> CheckpointReport? {
        try ShardError.wrap("reading checkpoint \(id)") {
            try writer.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM checkpoints WHERE id = ?", arguments: [id]) else {
                    return nil
                }
                let shardName: String? = row["shard"]
                let shard = try shardName.flatMap {
                    try Row.fetchOne(db, sql: "SELECT * FROM shards WHERE name = ?", arguments: [$0])
                }.map(ShardRecord.init(row:))
                let meanScore = try shardName.flatMap {
                    try Double.fetchOne(db, sql: "SELECT AVG(score) FROM samples WHERE shard = ?", arguments: [$0])
                }
                var counts: [String: Int] = [:]
                var rejected: [RejectedRecord] = []
                for r in try Row.fetchAll(
                    db, sql: "SELECT offset, id, stage, reason, detail FROM rejected WHERE checkpoint = ? ORDER BY offset",
                    arguments: [id])
                {
                    let record = RejectedRecord(
                        offset: r["offset"], id: r["id"], stage: r["stage"], reason: r["reason"], detail: r["detail"] ?? "")
                    counts["\(record.stage)/\(record.reason)", default: 0] += 1
                    rejected.append(record)
                }
                return CheckpointReport(
                    id: id, dataset: row["dataset"], topic: row["topic"], partition: Int32(row["partition"] as Int),
                    firstOffset: row["first_offset"], nextOffset: row["next_offset"], records: row["records"],
                    kept: row["kept"], shard: shard, meanScore: meanScore, rejectedCounts: counts, rejected: rejected)
            }
        }
    }
}
