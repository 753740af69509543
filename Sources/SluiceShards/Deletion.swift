public import Foundation
internal import GRDB

/// A request to delete samples: a takedown, a right-to-be-forgotten request, a licence withdrawn.
public struct DeletionRequest: Sendable, Equatable, Codable {
    /// What `value` matches.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// The record's original id, exactly.
        case id
        /// The source name, as a glob pattern (`*`, `?`, `[…]`).
        case source
        /// The url, as a glob pattern.
        case url
        /// The SHA-256 (hex) of the curated text, exactly.
        case contentSHA256 = "content_sha256"
    }

    /// The request's id: applying one id twice changes nothing the second time.
    public var request: String
    public var kind: Kind
    public var value: String
    public var reason: String?
    public var requestedAt: String?

    public init(request: String, kind: Kind, value: String, reason: String? = nil, requestedAt: String? = nil) {
        self.request = request
        self.kind = kind
        self.value = value
        self.reason = reason
        self.requestedAt = requestedAt
    }

    enum CodingKeys: String, CodingKey {
        case request, kind = "by", value, reason, requestedAt = "requested_at"
    }

    /// The control-topic event: `{"type":"delete","request":…,"by":"id|source|url|content_sha256","value":…}`.
    public var event: String {
        var json = "{\"type\":\"delete\",\"request\":\(Self.quote(request)),\"by\":\"\(kind.rawValue)\",\"value\":\(Self.quote(value))"
        if let reason { json += ",\"reason\":\(Self.quote(reason))" }
        if let requestedAt { json += ",\"requested_at\":\(Self.quote(requestedAt))" }
        return json + "}"
    }

    /// Reads a control-topic event; nil for an event of another type, an error for a malformed deletion.
    public static func parse(event: [UInt8]) throws(ShardError) -> DeletionRequest? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(event))) as? [String: Any] else {
            throw ShardError.make(.io, "control event is not a JSON object")
        }
        guard object["type"] as? String == "delete" else { return nil }
        guard let request = object["request"] as? String, !request.isEmpty else {
            throw ShardError.make(.io, "deletion event without a request id")
        }
        guard let by = object["by"] as? String, let kind = Kind(rawValue: by) else {
            throw ShardError.make(.io, "deletion \(request): \"by\" must be one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let value = object["value"] as? String, !value.isEmpty else {
            throw ShardError.make(.io, "deletion \(request): \"value\" must be a non-empty string")
        }
        return DeletionRequest(
            request: request, kind: kind, value: value, reason: object["reason"] as? String, requestedAt: object["requested_at"] as? String)
    }

    static func quote(_ text: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [text], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
}

/// What applying a deletion did.
public struct DeletionOutcome: Sendable, Equatable {
    public var request: String
    /// Keys newly marked deleted by this request.
    public var keys: [String]
    /// Shards holding them (to compact).
    public var shards: [String]
    /// True when the request had been applied before (nothing changed).
    public var repeated: Bool
}

extension ShardIndex {
    /// Marks every live sample the request matches as deleted, in one transaction, and records the request.
    public func apply(_ deletion: DeletionRequest, now: Date = Date()) throws(ShardError) -> DeletionOutcome {
        try ShardError.wrap("applying deletion \(deletion.request)") {
            try writer.write { db in
                if try Bool.fetchOne(db, sql: "SELECT 1 FROM deletions WHERE request = ?", arguments: [deletion.request]) == true {
                    return DeletionOutcome(request: deletion.request, keys: [], shards: [], repeated: true)
                }
                let condition =
                    switch deletion.kind {
                    case .id: "id = ?"
                    case .source: "source GLOB ?"
                    case .url: "url GLOB ?"
                    case .contentSHA256: "sha256 = ?"
                    }
                let value: any DatabaseValueConvertible =
                    deletion.kind == .contentSHA256 ? Data(hexBytes(deletion.value) ?? []) : deletion.value
                let rows = try Row.fetchAll(
                    db, sql: "SELECT key, shard FROM samples WHERE deleted_at IS NULL AND \(condition) ORDER BY key",
                    arguments: [value])
                let stamp = ShardTime.format(now)
                try db.execute(
                    sql: "UPDATE samples SET deleted_at = ?, deletion = ? WHERE deleted_at IS NULL AND \(condition)",
                    arguments: [stamp, deletion.request, value])
                try db.execute(
                    sql: """
                        INSERT INTO deletions (request, kind, value, reason, requested_at, applied_at, matched)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [deletion.request, deletion.kind.rawValue, deletion.value, deletion.reason, deletion.requestedAt, stamp, rows.count])
                let keys = rows.map { $0["key"] as String }
                let shards = Array(Set(rows.map { $0["shard"] as String })).sorted()
                return DeletionOutcome(request: deletion.request, keys: keys, shards: shards, repeated: false)
            }
        }
    }

    /// The deleted keys of one shard.
    public func deletedKeys(inShard shard: String) throws(ShardError) -> Set<String> {
        try ShardError.wrap("reading deletions of \(shard)") {
            try writer.read { db in
                Set(try String.fetchAll(db, sql: "SELECT key FROM samples WHERE shard = ? AND deleted_at IS NOT NULL", arguments: [shard]))
            }
        }
    }

    /// Every deleted key, by shard.
    public func deletedKeys() throws(ShardError) -> [String: Set<String>] {
        try ShardError.wrap("reading deletions") {
            try writer.read { db in
                var byShard: [String: Set<String>] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT shard, key FROM samples WHERE deleted_at IS NOT NULL") {
                    byShard[row["shard"] as String, default: []].insert(row["key"])
                }
                return byShard
            }
        }
    }
}

/// Which samples are deleted, for readers that hold shards: per curated directory, read from its index and
/// refreshed at most every `refresh` seconds, so a deletion reaches a running reader within seconds. The index is
/// opened read-only (a reader may not write the dataset's directory); an index without deletion columns (made
/// before them) has no deletions.
public final class DeletionView: @unchecked Sendable {
    // @unchecked: `lock` guards the caches.
    private let lock = NSLock()
    private var cache: [String: (read: Date, keys: [String: Set<String>])] = [:]
    private var databases: [String: DatabaseQueue] = [:]
    public let refresh: TimeInterval

    public init(refresh: TimeInterval = 2) { self.refresh = refresh }

    /// The deleted keys of `shard` in the curated directory `directory` (empty when it has no index).
    public func deletedKeys(shard: String, directory: URL) -> Set<String> {
        let path = directory.appendingPathComponent("index.sqlite").path
        lock.lock()
        defer { lock.unlock() }
        if let entry = cache[path], Date().timeIntervalSince(entry.read) < refresh { return entry.keys[shard] ?? [] }
        if databases[path] == nil, FileManager.default.fileExists(atPath: path) {
            var configuration = Configuration()
            configuration.readonly = true
            configuration.busyMode = .timeout(5)
            databases[path] = try? DatabaseQueue(path: path, configuration: configuration)
        }
        guard let database = databases[path] else { return cache[path]?.keys[shard] ?? [] }
        let keys = try? database.read { db -> [String: Set<String>] in
            guard try db.columns(in: "samples").contains(where: { $0.name == "deleted_at" }) else { return [:] }
            var byShard: [String: Set<String>] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT shard, key FROM samples WHERE deleted_at IS NOT NULL") {
                byShard[row["shard"] as String, default: []].insert(row["key"])
            }
            return byShard
        }
        guard let keys else { return cache[path]?.keys[shard] ?? [] }
        cache[path] = (Date(), keys)
        return keys[shard] ?? []
    }
}

/// What compaction did to one shard.
public struct CompactionResult: Sendable, Equatable {
    /// The shard rewritten, now `retired` in the index and removed from disk.
    public var retired: String
    /// The shard that replaces it (nil when every sample was deleted).
    public var replacement: String?
    public var replacementSHA256: String?
    public var kept: Int
    public var removed: Int
}

extension ShardIndex {
    /// Rewrites every sealed shard that holds deleted samples without them: the live samples go, in order and
    /// byte for byte, to a new shard named `<name>-c<generation>`; in one transaction the new shard is recorded,
    /// the live samples' rows point to it and the old shard is marked `retired`; then the old file is removed.
    /// Deleted samples keep their rows (pointing to the retired shard) so lineage can still say what happened.
    /// A crash at any point leaves a consistent index; running it again finishes the work.
    public func compact(directory: URL) throws(ShardError) -> [CompactionResult] {
        var results: [CompactionResult] = []
        let candidates = try ShardError.wrap("finding shards to compact") {
            try writer.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT * FROM shards WHERE status = 'sealed' AND name IN (SELECT DISTINCT shard FROM samples WHERE deleted_at IS NOT NULL)
                    ORDER BY name
                    """).map(ShardRecord.init(row:))
            }
        }
        for shard in candidates { results.append(try compact(shard, directory: directory)) }
        try removeRetiredFiles(directory: directory)
        return results
    }

    private func compact(_ shard: ShardRecord, directory: URL) throws(ShardError) -> CompactionResult {
        let rows = try ShardError.wrap("listing samples of \(shard.name)") {
            try writer.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM samples WHERE shard = ? ORDER BY frame_offset, text_offset", arguments: [shard.name])
                    .map(SampleLocation.init(row:))
            }
        }
        let stored = try ShardReader.samples(of: directory.appendingPathComponent(shard.fileName), expectingSHA256: shard.sha256)
        let byKey = Dictionary(stored.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let live = rows.filter { $0.deletedAt == nil }
        var configuration = ShardWriterConfiguration()
        configuration.format = shard.format
        configuration.maximumPayloadBytes = .max
        let shardWriter = ShardWriter(directory: directory, configuration: configuration)
        let name = Self.compactedName(shard.name)
        var sealed: SealedShard?
        for row in live {
            guard let data = byKey[row.key] else { throw ShardError.make(.io, "\(shard.fileName) has no sample \(row.key)") }
            let sample = ShardSample(
                key: row.key, text: data.text, json: data.json, id: row.id, source: row.source, language: row.language, score: row.score,
                lineage: row.lineage)
            _ = try shardWriter.add(sample, position: name, mtime: 0, now: 0)
        }
        sealed = try shardWriter.seal(now: 0)
        try ShardError.wrap("recording the compaction of \(shard.name)") {
            try writer.write { db in
                if let sealed {
                    try db.execute(
                        sql: """
                            INSERT OR REPLACE INTO shards (name, dataset, path, format, samples, raw_bytes, stored_bytes, sha256,
                                created_at, sealed_at, ts_min, ts_max)
                            SELECT ?, dataset, ?, format, ?, ?, ?, ?, created_at, ?, ts_min, ts_max FROM shards WHERE name = ?
                            """,
                        arguments: [
                            sealed.name, sealed.fileName, sealed.samples.count, sealed.rawBytes, sealed.storedBytes, sealed.sha256,
                            ShardTime.format(sealed.sealedAt), shard.name,
                        ])
                    try db.execute(
                        sql: """
                            INSERT OR REPLACE INTO shard_offsets (shard, topic, partition, first_offset, last_offset)
                            SELECT ?, topic, partition, first_offset, last_offset FROM shard_offsets WHERE shard = ?
                            """,
                        arguments: [sealed.name, shard.name])
                    let update = try db.makeStatement(sql: """
                        UPDATE samples SET shard = ?, frame_offset = ?, frame_length = ?, text_offset = ?, text_length = ?,
                            json_offset = ?, json_length = ? WHERE key = ?
                        """)
                    for location in sealed.samples {
                        try update.execute(arguments: [
                            sealed.name, location.frameOffset, location.frameLength, location.textOffset, location.textLength,
                            location.jsonOffset, location.jsonLength, location.key,
                        ])
                    }
                }
                try db.execute(sql: "UPDATE shards SET status = 'retired', replaced_by = ? WHERE name = ?", arguments: [sealed?.name, shard.name])
            }
        }
        return CompactionResult(
            retired: shard.name, replacement: sealed?.name, replacementSHA256: sealed?.sha256, kept: live.count,
            removed: rows.count - live.count)
    }

    /// `raw.web+0+0000000000` → `raw.web+0+0000000000-c1`; `…-c1` → `…-c2`.
    static func compactedName(_ name: String) -> String {
        if let range = name.range(of: "-c", options: .backwards), let generation = Int(name[range.upperBound...]) {
            return "\(name[..<range.lowerBound])-c\(generation + 1)"
        }
        return "\(name)-c1"
    }

    /// Removes the files of retired shards still on disk (the data deleted samples lived in).
    private func removeRetiredFiles(directory: URL) throws(ShardError) {
        let retired = try ShardError.wrap("listing retired shards") {
            try writer.read { db in try String.fetchAll(db, sql: "SELECT path FROM shards WHERE status = 'retired'") }
        }
        var removed = false
        for file in retired {
            let url = directory.appendingPathComponent(file)
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            do { try FileManager.default.removeItem(at: url) } catch { throw ShardError.make(.io, "removing \(file): \(error.localizedDescription)") }
            removed = true
        }
        if removed, let handle = try? FileHandle(forReadingFrom: directory) {
            try? handle.synchronize()
            try? handle.close()
        }
    }
}
