public import SluiceText

/// The durable part of the near-duplicate index, in SQLite tables beside the shard index.
///
/// Pending documents of the open shard are written with ``write(_:)`` inside the transaction that seals the
/// shard, and only then committed in memory (``DedupIndex/commitPending()``): a crash before the seal leaves
/// the stored index as it was, so replayed records meet nothing of themselves. The MinHash settings are stored
/// with the index; opening it with other settings throws (signatures would not be comparable).
public final class DedupStore: @unchecked Sendable {
    // @unchecked: like SQLiteDatabase, used by one owner at a time.
    public let database: SQLiteDatabase
    public let configuration: MinHashConfiguration

    /// Opens the store in `database`, creating its tables when missing.
    /// - Throws: ``ShardError`` `.database`, or `.settingsMismatch` when the stored index used other settings.
    public init(database: SQLiteDatabase, configuration: MinHashConfiguration) throws(ShardError) {
        self.database = database
        self.configuration = configuration
        try database.execute(
            """
            CREATE TABLE IF NOT EXISTS dedup_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS dedup_documents (
                seq INTEGER PRIMARY KEY, id TEXT NOT NULL, raw_hash INTEGER NOT NULL,
                exact_hash INTEGER NOT NULL, signature BLOB);
            """)
        let wanted = Self.settings(configuration)
        var stored: [String: String] = [:]
        let select = try database.prepare("SELECT key, value FROM dedup_settings")
        while try select.step() { stored[select.text(0)] = select.text(1) }
        if stored.isEmpty {
            try database.transaction { () throws(ShardError) in
                let insert = try database.prepare("INSERT INTO dedup_settings (key, value) VALUES (?, ?)")
                for (key, value) in wanted.sorted(by: { $0.key < $1.key }) {
                    insert.reset()
                    insert.bind(1, key)
                    insert.bind(2, value)
                    _ = try insert.step()
                }
            }
        } else if stored != wanted {
            let describe = { (settings: [String: String]) in
                settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            }
            throw ShardError.settingsMismatch(
                "the dedup index in \(database.path) was built with \(describe(stored)), not \(describe(wanted)); "
                    + "use the same settings or start a new index")
        }
    }

    private static func settings(_ c: MinHashConfiguration) -> [String: String] {
        [
            "hashes": "\(c.hashCount)", "bands": "\(c.bands)", "rows": "\(c.rows)",
            "shingle_size": "\(c.shingleSize)", "scheme": c.scheme.rawValue, "seed": "\(c.seed)",
        ]
    }

    /// Documents stored.
    public func count() throws(ShardError) -> Int {
        let statement = try database.prepare("SELECT count(*) FROM dedup_documents")
        _ = try statement.step()
        return Int(statement.int64(0))
    }

    /// Reads every stored document into a new index.
    public func load() throws(ShardError) -> DedupIndex {
        var index = DedupIndex(configuration)
        var entries: [DedupIndex.Entry] = []
        let statement = try database.prepare(
            "SELECT id, raw_hash, exact_hash, signature FROM dedup_documents ORDER BY seq")
        while try statement.step() {
            let blob = statement.blob(3)
            let values = blob.count / 2
            var signature = [UInt16](repeating: 0, count: values)
            signature.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: blob[0..<(values * 2)])) }
            entries.append(
                DedupIndex.Entry(
                    id: statement.text(0), rawHash: UInt64(bitPattern: statement.int64(1)),
                    exactHash: UInt64(bitPattern: statement.int64(2)), signature: signature.map { UInt16(littleEndian: $0) }))
            if entries.count == 65_536 {
                index.restore(entries)
                entries.removeAll(keepingCapacity: true)
            }
        }
        index.restore(entries)
        return index
    }

    /// Appends entries; call inside the transaction that seals the shard holding their documents.
    public func write(_ entries: [DedupIndex.Entry]) throws(ShardError) {
        let insert = try database.prepare(
            "INSERT INTO dedup_documents (id, raw_hash, exact_hash, signature) VALUES (?, ?, ?, ?)")
        for entry in entries {
            insert.reset()
            insert.bind(1, entry.id)
            insert.bind(2, Int64(bitPattern: entry.rawHash))
            insert.bind(3, Int64(bitPattern: entry.exactHash))
            let little = entry.signature.map { $0.littleEndian }
            little.withUnsafeBytes { insert.bind(4, blob: $0) }
            _ = try insert.step()
        }
    }

    /// Writes the index's pending documents in their own transaction and commits them in memory: for callers
    /// without a shard transaction to join.
    public func commit(_ index: inout DedupIndex) throws(ShardError) {
        let entries = index.pendingEntries
        guard !entries.isEmpty else { return }
        try database.transaction { () throws(ShardError) in try write(entries) }
        index.commitPending()
    }
}
