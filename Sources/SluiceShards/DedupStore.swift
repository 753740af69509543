public import GRDB
public import SluiceText
internal import Foundation

/// The durable part of the near-duplicate index, in SQLite tables beside the shard index.
///
/// Pending documents of the open shard are written with ``write(_:in:)`` inside the transaction that seals the
/// shard, and only then committed in memory (``DedupIndex/commitPending()``): a crash before the seal leaves
/// the stored index as it was, so replayed records meet nothing of themselves. The MinHash settings are stored
/// with the index; opening it with other settings throws (signatures would not be comparable).
public struct DedupStore: Sendable {
    public let writer: any DatabaseWriter
    public let configuration: MinHashConfiguration

    /// Creates the tables when missing (the shard index's migrations do too) and checks the stored settings.
    /// - Throws: ``ShardError`` `.database`, or `.settingsMismatch` when the stored index used other settings.
    public init(writer: any DatabaseWriter, configuration: MinHashConfiguration) throws(ShardError) {
        self.writer = writer
        self.configuration = configuration
        let wanted = Self.settings(configuration)
        try ShardError.wrap("opening the dedup index") {
            try writer.write { db in
                try Self.createTables(db)
                let stored = try Dictionary(
                    uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT key, value FROM dedup_settings").map {
                        ($0["key"] as String, $0["value"] as String)
                    })
                if stored.isEmpty {
                    for (key, value) in wanted {
                        try db.execute(sql: "INSERT INTO dedup_settings (key, value) VALUES (?, ?)", arguments: [key, value])
                    }
                } else if stored != wanted {
                    let describe = { (settings: [String: String]) in
                        settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                    }
                    throw ShardError.settingsMismatch(
                        "the dedup index was built with \(describe(stored)), not \(describe(wanted)); "
                            + "use the same settings or start a new index")
                }
            }
        }
    }

    static func createTables(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE IF NOT EXISTS dedup_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS dedup_documents (
                    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, raw_hash INTEGER NOT NULL,
                    exact_hash INTEGER NOT NULL, signature BLOB);
                """)
    }

    private static func settings(_ c: MinHashConfiguration) -> [String: String] {
        [
            "hashes": "\(c.hashCount)", "bands": "\(c.bands)", "rows": "\(c.rows)",
            "shingle_size": "\(c.shingleSize)", "scheme": c.scheme.rawValue, "seed": "\(c.seed)",
        ]
    }

    /// Documents stored.
    public func count() throws(ShardError) -> Int {
        try ShardError.wrap("counting dedup documents") {
            try writer.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM dedup_documents") ?? 0 }
        }
    }

    /// Reads every stored document into a new index.
    public func load() throws(ShardError) -> DedupIndex {
        try ShardError.wrap("loading the dedup index") {
            try writer.read { db in
                var index = DedupIndex(configuration)
                var entries: [DedupIndex.Entry] = []
                let rows = try Row.fetchCursor(
                    db, sql: "SELECT id, raw_hash, exact_hash, signature FROM dedup_documents ORDER BY seq")
                while let row = try rows.next() {
                    let data: Data = row["signature"] ?? Data()
                    let blob = [UInt8](data)
                    var signature = [UInt16](repeating: 0, count: blob.count / 2)
                    for i in 0..<signature.count { signature[i] = UInt16(blob[2 * i]) | UInt16(blob[2 * i + 1]) << 8 }
                    entries.append(
                        DedupIndex.Entry(
                            id: row["id"], rawHash: UInt64(bitPattern: row["raw_hash"]),
                            exactHash: UInt64(bitPattern: row["exact_hash"]), signature: signature))
                    if entries.count == 65_536 {
                        index.restore(entries)
                        entries.removeAll(keepingCapacity: true)
                    }
                }
                index.restore(entries)
                return index
            }
        }
    }

    /// Appends entries inside an open write transaction (the one that seals the shard holding their documents).
    public static func write(_ entries: [DedupIndex.Entry], in db: Database) throws {
        let statement = try db.cachedStatement(
            sql: "INSERT INTO dedup_documents (id, raw_hash, exact_hash, signature) VALUES (?, ?, ?, ?)")
        let rows = BulkInsert(statement, in: db)
        for entry in entries {
            rows.bind(1, entry.id)
            rows.bind(2, Int64(bitPattern: entry.rawHash))
            rows.bind(3, Int64(bitPattern: entry.exactHash))
            entry.signature.withUnsafeBufferPointer { rows.bind(4, littleEndian: $0) }
            try rows.step()
        }
    }

    /// Appends a block of entries inside an open write transaction, like ``write(_:in:)`` and with the same bytes.
    public static func write(_ block: DedupIndex.EntryBlock, in db: Database) throws {
        let statement = try db.cachedStatement(
            sql: "INSERT INTO dedup_documents (id, raw_hash, exact_hash, signature) VALUES (?, ?, ?, ?)")
        let rows = BulkInsert(statement, in: db)
        try block.forEach { id, rawHash, exactHash, signature in
            rows.bind(1, text: id)
            rows.bind(2, Int64(bitPattern: rawHash))
            rows.bind(3, Int64(bitPattern: exactHash))
            rows.bind(4, littleEndian: signature ?? UnsafeBufferPointer(start: nil, count: 0))
            try rows.step()
        }
    }

    /// Writes the index's pending documents in their own transaction and commits them in memory: for callers
    /// without a shard transaction to join.
    public func commit(_ index: inout DedupIndex) throws(ShardError) {
        let entries = index.pendingEntries
        guard !entries.isEmpty else { return }
        try ShardError.wrap("writing dedup documents") {
            try writer.write { db in try Self.write(entries, in: db) }
        }
        index.commitPending()
    }
}
