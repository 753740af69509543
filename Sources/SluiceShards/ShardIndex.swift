public import GRDB
public import Foundation

/// The dataset index: SQLite (WAL, one writer, many readers) through GRDB, created and upgraded by migrations.
///
/// Tables: `datasets`; `shards` (name, path, format, samples, raw and stored bytes, SHA-256, created/sealed
/// times, document time range, status); `shard_offsets` (per topic-partition offset ranges of a shard);
/// `samples` (key, shard, frame and member offsets and lengths, id, source, lang, score); and the dedup tables of
/// ``DedupStore``. A shard and its samples are recorded in one transaction, after the file is sealed.
public final class ShardIndex: Sendable {
    /// The connection pool; ``DedupStore`` and readers share it.
    public let writer: DatabasePool
    public let path: String

    /// Opens (creating and migrating) the index at `path`.
    ///
    /// `pageSize` (bytes: a power of two from 512 to 65536) applies when the file is new; an existing index keeps
    /// the page size it was made with. SQLite's default, 4096, suits an index written in many small transactions
    /// (the streaming pipeline, deletions); a bulk load that records tens of thousands of rows per transaction
    /// (`sluice curate`) inserts them and checkpoints the seal's commit faster with 16 KiB pages.
    public init(path: String, pageSize: Int = 4096) throws(ShardError) {
        guard pageSize >= 512 && pageSize <= 65536 && pageSize & (pageSize - 1) == 0 else {
            throw ShardError.make(.database, "index page size \(pageSize) is not a power of two from 512 to 65536")
        }
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // Runs before WAL mode is set, while a new file can still take it; a no-op on an existing file.
            try db.execute(sql: "PRAGMA page_size = \(pageSize)")
        }
        // Several workers may open one index at the same moment: an exclusive lock on a sidecar file serializes
        // opening and migrating between processes (a migration read in one process would otherwise race the
        // other's), and a database still locked by a writer is retried for a while.
        let lock = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if lock >= 0 { flock(lock, LOCK_EX) }
        defer {
            if lock >= 0 {
                flock(lock, LOCK_UN)
                close(lock)
            }
        }
        writer = try ShardError.wrap("opening \(path)") { () throws -> DatabasePool in
            var attempt = 0
            while true {
                do {
                    let pool = try DatabasePool(path: path, configuration: configuration)
                    try Self.migrator.migrate(pool)
                    // Offsets are committed to Kafka once a shard is recorded, so a recorded shard must survive a
                    // power loss: every commit from here on syncs the WAL, and with it any earlier frames (the
                    // migrations above, a dozen commits on a new index, are not synced one by one). Set after
                    // opening: entering WAL mode sets NORMAL.
                    try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
                    return pool
                } catch let error as DatabaseError
                    where (error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED) && attempt < 200
                {
                    attempt += 1
                    usleep(50_000 + UInt32.random(in: 0..<50_000))
                }
            }
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE datasets (
                        name TEXT PRIMARY KEY, created_at TEXT NOT NULL, input TEXT, config TEXT);
                    CREATE TABLE shards (
                        name TEXT PRIMARY KEY, dataset TEXT NOT NULL REFERENCES datasets(name), path TEXT NOT NULL,
                        format TEXT NOT NULL, samples INTEGER NOT NULL, raw_bytes INTEGER NOT NULL,
                        stored_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL,
                        sealed_at TEXT NOT NULL, ts_min TEXT, ts_max TEXT, status TEXT NOT NULL DEFAULT 'sealed');
                    CREATE TABLE shard_offsets (
                        shard TEXT NOT NULL REFERENCES shards(name), topic TEXT NOT NULL, partition INTEGER NOT NULL,
                        first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL,
                        PRIMARY KEY (shard, topic, partition));
                    CREATE TABLE samples (
                        key TEXT PRIMARY KEY, shard TEXT NOT NULL REFERENCES shards(name),
                        frame_offset INTEGER NOT NULL, frame_length INTEGER NOT NULL,
                        text_offset INTEGER NOT NULL, text_length INTEGER NOT NULL,
                        json_offset INTEGER NOT NULL, json_length INTEGER NOT NULL,
                        id TEXT, source TEXT, lang TEXT, score REAL);
                    CREATE INDEX samples_by_shard ON samples(shard);
                    CREATE INDEX samples_by_id ON samples(id);
                    """)
            try DedupStore.createTables(db)
        }
        migrator.registerMigration("v2-streaming") { db in
            try db.execute(
                sql: """
                    CREATE TABLE checkpoints (
                        id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL REFERENCES datasets(name),
                        topic TEXT NOT NULL, partition INTEGER NOT NULL,
                        first_offset INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                        shard TEXT REFERENCES shards(name), records INTEGER NOT NULL, kept INTEGER NOT NULL,
                        created_at TEXT NOT NULL, announced INTEGER NOT NULL DEFAULT 0);
                    CREATE INDEX checkpoints_by_partition ON checkpoints(topic, partition, next_offset);
                    CREATE INDEX checkpoints_unannounced ON checkpoints(announced) WHERE announced = 0;
                    CREATE TABLE rejected (
                        topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                        checkpoint INTEGER NOT NULL REFERENCES checkpoints(id),
                        id TEXT, stage TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT,
                        PRIMARY KEY (topic, partition, offset));
                    CREATE INDEX rejected_by_checkpoint ON rejected(checkpoint);
                    """)
        }
        migrator.registerMigration("v3-lineage") { db in
            try db.execute(
                sql: """
                    ALTER TABLE samples ADD COLUMN src_topic TEXT;
                    ALTER TABLE samples ADD COLUMN src_partition INTEGER;
                    ALTER TABLE samples ADD COLUMN src_offset INTEGER;
                    ALTER TABLE samples ADD COLUMN url TEXT;
                    ALTER TABLE samples ADD COLUMN pipeline TEXT;
                    ALTER TABLE samples ADD COLUMN decisions TEXT;
                    ALTER TABLE samples ADD COLUMN sha256 TEXT;
                    ALTER TABLE samples ADD COLUMN deleted_at TEXT;
                    ALTER TABLE samples ADD COLUMN deletion TEXT;
                    CREATE INDEX samples_deleted ON samples(shard) WHERE deleted_at IS NOT NULL;
                    ALTER TABLE shards ADD COLUMN replaced_by TEXT;
                    CREATE TABLE dataset_versions (
                        version INTEGER PRIMARY KEY, created_at TEXT NOT NULL, manifest TEXT NOT NULL, sha256 TEXT NOT NULL);
                    CREATE TABLE deletions (
                        request TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT,
                        requested_at TEXT, applied_at TEXT NOT NULL, matched INTEGER NOT NULL);
                    """)
        }
        migrator.registerMigration("v4-assessment") { db in
            try db.execute(
                sql: """
                    CREATE TABLE quality_counts (
                        topic TEXT NOT NULL, partition INTEGER NOT NULL, first_offset INTEGER NOT NULL,
                        window_start REAL NOT NULL, source TEXT NOT NULL, records INTEGER NOT NULL, dropped INTEGER NOT NULL,
                        with_pii INTEGER NOT NULL, quarantined INTEGER NOT NULL, missing_id INTEGER NOT NULL,
                        missing_source INTEGER NOT NULL, missing_url INTEGER NOT NULL, missing_ts INTEGER NOT NULL,
                        missing_meta INTEGER NOT NULL, late INTEGER NOT NULL, lag_sum REAL NOT NULL, lag_count INTEGER NOT NULL,
                        languages TEXT NOT NULL, new_fields TEXT NOT NULL);
                    CREATE INDEX quality_counts_by_window ON quality_counts(window_start, source);
                    CREATE TABLE schema_fields (field TEXT PRIMARY KEY, source TEXT NOT NULL, first_seen REAL NOT NULL);
                    CREATE TABLE shadow_counts (
                        topic TEXT NOT NULL, partition INTEGER NOT NULL, first_offset INTEGER NOT NULL,
                        source TEXT NOT NULL, lang TEXT NOT NULL, active TEXT NOT NULL, shadow TEXT NOT NULL, n INTEGER NOT NULL);
                    """)
        }
        return migrator
    }

    /// Records a dataset (once) with what made it.
    public func registerDataset(name: String, input: String?, config: String?, now: Date) throws(ShardError) {
        try ShardError.wrap("registering dataset \(name)") {
            try writer.write { db in
                try db.execute(
                    sql: "INSERT OR IGNORE INTO datasets (name, created_at, input, config) VALUES (?, ?, ?, ?)",
                    arguments: [name, ShardTime.format(now), input, config])
            }
        }
    }

    /// Records a sealed shard, its samples and offset ranges, and runs `extra` (the dedup entries of its
    /// documents) in the same transaction.
    public func record(
        _ shard: SealedShard, dataset: String, offsets: [ShardOffsetRange] = [],
        extra: (Database) throws -> Void = { _ in }
    ) throws(ShardError) {
        try ShardError.wrap("recording shard \(shard.name)") {
            try writer.write { db in
                try Self.insertShard(shard, dataset: dataset, offsets: offsets, in: db)
                try Self.insertSamples(shard.samples[...], shard: shard.name, in: db)
                try extra(db)
            }
        }
    }

    static func insertShard(_ shard: SealedShard, dataset: String, offsets: [ShardOffsetRange], in db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO shards (name, dataset, path, format, samples, raw_bytes, stored_bytes, sha256,
                    created_at, sealed_at, ts_min, ts_max)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                shard.name, dataset, shard.fileName, shard.format.rawValue, shard.sampleCount,
                shard.rawBytes, shard.storedBytes, shard.sha256, ShardTime.format(shard.createdAt),
                ShardTime.format(shard.sealedAt), shard.timestampRange?.lowerBound,
                shard.timestampRange?.upperBound,
            ])
        for range in offsets {
            try db.execute(
                sql: "INSERT INTO shard_offsets (shard, topic, partition, first_offset, last_offset) VALUES (?, ?, ?, ?, ?)",
                arguments: [shard.name, range.topic, range.partition, range.first, range.last])
        }
    }

    static func insertSamples(_ samples: ArraySlice<SampleLocation>, shard: String, in db: Database) throws {
        let insert = try db.cachedStatement(
            sql: """
                INSERT INTO samples (key, shard, frame_offset, frame_length, text_offset, text_length,
                    json_offset, json_length, id, source, lang, score,
                    src_topic, src_partition, src_offset, url, pipeline, decisions, sha256)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        let rows = BulkInsert(insert, in: db)
        try samples.withUnsafeBufferPointer { all in
            for index in 0..<all.count {
                let sample = all.baseAddress! + index  // no copy of the row's fields
                rows.bind(1, sample.pointee.key)
                rows.bind(2, shard)
                rows.bind(3, sample.pointee.frameOffset)
                rows.bind(4, sample.pointee.frameLength)
                rows.bind(5, sample.pointee.textOffset)
                rows.bind(6, sample.pointee.textLength)
                rows.bind(7, sample.pointee.jsonOffset)
                rows.bind(8, sample.pointee.jsonLength)
                rows.bind(9, sample.pointee.id)
                rows.bind(10, sample.pointee.source)
                rows.bind(11, sample.pointee.language)
                rows.bind(12, sample.pointee.score)
                if let lineage = sample.pointee.lineage {
                    rows.bind(13, lineage.topic)
                    rows.bind(14, lineage.partition)
                    rows.bind(15, lineage.offset)
                    rows.bind(16, lineage.url)
                    rows.bind(17, lineage.pipeline)
                    rows.bind(18, lineage.decisions)
                    if let hash = lineage.contentHash {
                        hash.withUnsafeBytes { rows.bind(19, blob: $0) }
                    }
                }
                try rows.step()
            }
        }
    }

    /// Every live shard (not retired by compaction), in name order.
    public func shards() throws(ShardError) -> [ShardRecord] {
        try ShardError.wrap("listing shards") {
            try writer.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM shards WHERE status = 'sealed' ORDER BY name").map(ShardRecord.init(row:))
            }
        }
    }

    /// Where a sample is, by key.
    public func location(ofKey key: String) throws(ShardError) -> (shard: ShardRecord, sample: SampleLocation)? {
        try ShardError.wrap("looking up \(key)") {
            try writer.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM samples WHERE key = ?", arguments: [key]),
                    let shardRow = try Row.fetchOne(
                        db, sql: "SELECT * FROM shards WHERE name = ?", arguments: [row["shard"] as String])
                else { return nil }
                return (ShardRecord(row: shardRow), SampleLocation(row: row))
            }
        }
    }

    /// The samples of one shard, in file order.
    public func samples(inShard name: String) throws(ShardError) -> [SampleLocation] {
        try ShardError.wrap("listing samples of \(name)") {
            try writer.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT * FROM samples WHERE shard = ? ORDER BY frame_offset, text_offset",
                    arguments: [name]
                ).map(SampleLocation.init(row:))
            }
        }
    }
}

/// A shard row of the index.
public struct ShardRecord: Sendable, Equatable {
    public var name: String
    public var dataset: String
    public var fileName: String
    public var format: ShardFormat
    public var samples: Int
    public var rawBytes: Int
    public var storedBytes: Int
    public var sha256: String
    public var createdAt: String
    public var sealedAt: String
    /// `sealed`, or `retired` once compaction replaced the shard.
    public var status: String

    /// A row of the index's `shards` table.
    public init(row: Row) {
        name = row["name"]
        dataset = row["dataset"]
        fileName = row["path"]
        format = ShardFormat(rawValue: row["format"]) ?? .tar
        samples = row["samples"]
        rawBytes = row["raw_bytes"]
        storedBytes = row["stored_bytes"]
        sha256 = row["sha256"]
        createdAt = row["created_at"]
        sealedAt = row["sealed_at"]
        status = row["status"] ?? "sealed"
    }
}

/// The Kafka offsets a shard covers in one topic-partition.
public struct ShardOffsetRange: Sendable, Equatable {
    public var topic: String
    public var partition: Int
    public var first: Int64
    public var last: Int64

    public init(topic: String, partition: Int, first: Int64, last: Int64) {
        self.topic = topic
        self.partition = partition
        self.first = first
        self.last = last
    }
}

enum ShardTime {
    static func format(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

/// What a dashboard shows about a curated dataset, from its index.
public struct IndexOverview: Sendable {
    public struct Shard: Sendable {
        public var name: String
        public var samples: Int
        public var storedBytes: Int
        public var sealedAt: String
    }
    public var shards: [Shard] = []
    /// Samples per quality-score bin (ten bins over 0…1).
    public var quality = [Int](repeating: 0, count: 10)
    public var languages: [String: Int] = [:]
    public var sources: [String: Int] = [:]
    /// Dropped records by "stage/reason" (the streaming pipeline's audit table).
    public var rejections: [String: Int] = [:]
    public var samples: Int { shards.reduce(0) { $0 + $1.samples } }
}

extension ShardIndex {
    /// Shards, the quality and language distributions of the samples, and rejections by stage and reason.
    public func overview() throws(ShardError) -> IndexOverview {
        try ShardError.wrap("reading the index overview") {
            try writer.read { db in
                var overview = IndexOverview()
                for row in try Row.fetchAll(db, sql: "SELECT name, samples, stored_bytes, sealed_at FROM shards WHERE status = 'sealed' ORDER BY sealed_at, name") {
                    overview.shards.append(.init(name: row["name"], samples: row["samples"], storedBytes: row["stored_bytes"], sealedAt: row["sealed_at"]))
                }
                for row in try Row.fetchAll(db, sql: "SELECT MIN(9, MAX(0, CAST(score * 10 AS INTEGER))) AS bin, COUNT(*) AS n FROM samples WHERE score IS NOT NULL AND deleted_at IS NULL GROUP BY bin") {
                    let bin: Int = row["bin"]
                    overview.quality[bin] = row["n"]
                }
                for row in try Row.fetchAll(db, sql: "SELECT COALESCE(lang, 'unknown') AS lang, COUNT(*) AS n FROM samples WHERE deleted_at IS NULL GROUP BY lang") {
                    overview.languages[row["lang"]] = row["n"]
                }
                for row in try Row.fetchAll(db, sql: "SELECT COALESCE(source, 'unknown') AS source, COUNT(*) AS n FROM samples WHERE deleted_at IS NULL GROUP BY source") {
                    overview.sources[row["source"]] = row["n"]
                }
                if try db.tableExists("rejected") {
                    for row in try Row.fetchAll(db, sql: "SELECT stage || '/' || reason AS why, COUNT(*) AS n FROM rejected GROUP BY why") {
                        overview.rejections[row["why"]] = row["n"]
                    }
                }
                return overview
            }
        }
    }
}
