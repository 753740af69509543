public import Foundation
internal import GRDB

/// An immutable dataset version: the live shards with their SHA-256s, the deletion set, the pipeline versions
/// (rule sets) that made the samples, and sample and token counts per source and language. Versions are
/// numbered from 1 in the dataset's index and written to `versions/v<N>.json`; `sluice dataset snapshot` also
/// publishes them on `sluice.datasets` (a compacted topic, keyed `<dataset>/v<N>`).
public struct DatasetManifest: Sendable, Equatable, Codable {
    public struct Shard: Sendable, Equatable, Codable {
        public var name: String
        public var path: String
        public var sha256: String
        /// Samples in the file (deleted ones included until compaction).
        public var samples: Int
    }

    public struct Counts: Sendable, Equatable, Codable {
        public var samples: Int
        /// Tokens of the byte-level model: bytes of curated text.
        public var tokens: Int
    }

    public var dataset: String
    public var version: Int
    public var createdAt: String
    public var parent: Int?
    public var shards: [Shard]
    /// Keys of deleted samples, and the deletion requests that removed them.
    public var deleted: [String]
    public var deletions: [String]
    /// The pipeline versions (binary + configuration hash) of the live samples, and their hash.
    public var pipelines: [String]
    public var rulesHash: String
    public var samples: Int
    public var tokens: Int
    public var bySource: [String: Counts]
    public var byLanguage: [String: Counts]
    /// Data-quality summary per source (see ``QualityAssessment``), when recorded.
    public var quality: [String: [String: Double]]?

    enum CodingKeys: String, CodingKey {
        case dataset, version, createdAt = "created_at", parent, shards, deleted, deletions, pipelines, rulesHash = "rules_hash"
        case samples, tokens, bySource = "by_source", byLanguage = "by_language", quality
    }

    /// The manifest as sorted, stable JSON.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// True when `other` holds the same data (everything but the version, parent and time).
    public func sameContent(as other: DatasetManifest) -> Bool {
        var a = self, b = other
        (a.version, a.parent, a.createdAt) = (0, nil, "")
        (b.version, b.parent, b.createdAt) = (0, nil, "")
        return a == b
    }

    /// What changed from `self` to `later`, as JSON: shards added and removed, deletions added, sample and token
    /// deltas overall and per source and language, pipeline versions added and removed.
    public func diff(to later: DatasetManifest) -> String {
        func names(_ m: DatasetManifest) -> Set<String> { Set(m.shards.map(\.name)) }
        func list(_ items: some Sequence<String>) -> String {
            "[" + items.sorted().map { "\"\($0.replacingOccurrences(of: "\"", with: "\\\""))\"" }.joined(separator: ",") + "]"
        }
        func deltas(_ a: [String: Counts], _ b: [String: Counts]) -> String {
            let keys = Set(a.keys).union(b.keys).sorted()
            return "{" + keys.compactMap { key in
                let ds = (b[key]?.samples ?? 0) - (a[key]?.samples ?? 0), dt = (b[key]?.tokens ?? 0) - (a[key]?.tokens ?? 0)
                return ds == 0 && dt == 0 ? nil : "\"\(key)\":{\"samples\":\(ds),\"tokens\":\(dt)}"
            }.joined(separator: ",") + "}"
        }
        return """
            {"from":\(version),"to":\(later.version),"shards_added":\(list(names(later).subtracting(names(self)))),\
            "shards_removed":\(list(names(self).subtracting(names(later)))),\
            "deleted_added":\(list(Set(later.deleted).subtracting(deleted))),\
            "deletions_added":\(list(Set(later.deletions).subtracting(deletions))),\
            "samples":\(later.samples - samples),"tokens":\(later.tokens - tokens),\
            "by_source":\(deltas(bySource, later.bySource)),"by_language":\(deltas(byLanguage, later.byLanguage)),\
            "pipelines_added":\(list(Set(later.pipelines).subtracting(pipelines))),\
            "pipelines_removed":\(list(Set(pipelines).subtracting(later.pipelines)))}
            """
    }
}

extension ShardIndex {
    /// Records a new version of the dataset as it is now, unless it equals the latest (then the latest is returned
    /// with `created` false). The manifest is also written to `<directory>/versions/v<N>.json`.
    public func snapshot(directory: URL, quality: [String: [String: Double]]? = nil, now: Date = Date()) throws(ShardError)
        -> (manifest: DatasetManifest, created: Bool)
    {
        let (manifest, created) = try ShardError.wrap("snapshotting the dataset") { () throws -> (DatasetManifest, Bool) in
            try writer.write { db in
                let latest = try String.fetchOne(db, sql: "SELECT manifest FROM dataset_versions ORDER BY version DESC LIMIT 1")
                    .flatMap { try? JSONDecoder().decode(DatasetManifest.self, from: Data($0.utf8)) }
                var manifest = try Self.describe(db, version: (latest?.version ?? 0) + 1, parent: latest?.version, now: now)
                manifest.quality = quality ?? latest?.quality
                if let latest, latest.sameContent(as: manifest) { return (latest, false) }
                let json = manifest.json
                try db.execute(
                    sql: "INSERT INTO dataset_versions (version, created_at, manifest, sha256) VALUES (?, ?, ?, ?)",
                    arguments: [manifest.version, manifest.createdAt, json, sha256Hex(Array(json.utf8))])
                return (manifest, true)
            }
        }
        if created {
            let folder = directory.appendingPathComponent("versions")
            do {
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                let file = folder.appendingPathComponent(String(format: "v%06d.json", manifest.version))
                try Data((manifest.json + "\n").utf8).write(to: file, options: .atomic)
            } catch {
                throw ShardError.make(.io, "writing versions/v\(manifest.version).json: \(error.localizedDescription)")
            }
        }
        return (manifest, created)
    }

    /// Every recorded version, oldest first.
    public func versions() throws(ShardError) -> [DatasetManifest] {
        try ShardError.wrap("listing dataset versions") {
            try writer.read { db in
                try String.fetchAll(db, sql: "SELECT manifest FROM dataset_versions ORDER BY version").map {
                    try JSONDecoder().decode(DatasetManifest.self, from: Data($0.utf8))
                }
            }
        }
    }

    /// The live shards a version's shards are now: a shard compacted since is followed to its replacement.
    public func currentShards(of manifest: DatasetManifest) throws(ShardError) -> [DatasetManifest.Shard] {
        try ShardError.wrap("resolving the shards of version \(manifest.version)") {
            try writer.read { db in
                var resolved: [DatasetManifest.Shard] = []
                for shard in manifest.shards {
                    var name: String? = shard.name
                    var hops = 0
                    while let current = name, hops < 64 {
                        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM shards WHERE name = ?", arguments: [current]) else { break }
                        if (row["status"] as String?) == "retired" {
                            name = row["replaced_by"]
                            hops += 1
                            continue
                        }
                        resolved.append(.init(name: row["name"], path: row["path"], sha256: row["sha256"], samples: row["samples"]))
                        break
                    }
                }
                return resolved
            }
        }
    }

    static func describe(_ db: Database, version: Int, parent: Int?, now: Date) throws -> DatasetManifest {
        let datasets = try String.fetchAll(db, sql: "SELECT name FROM datasets ORDER BY created_at, name")
        let shards = try Row.fetchAll(db, sql: "SELECT name, path, sha256, samples FROM shards WHERE status = 'sealed' ORDER BY name").map {
            DatasetManifest.Shard(name: $0["name"], path: $0["path"], sha256: $0["sha256"], samples: $0["samples"])
        }
        let deleted = try String.fetchAll(db, sql: "SELECT key FROM samples WHERE deleted_at IS NOT NULL ORDER BY key")
        let deletions = try String.fetchAll(db, sql: "SELECT request FROM deletions WHERE matched > 0 ORDER BY request")
        let pipelines = try String.fetchAll(
            db, sql: "SELECT DISTINCT pipeline FROM samples WHERE deleted_at IS NULL AND pipeline IS NOT NULL ORDER BY pipeline")
        func counts(_ column: String) throws -> [String: DatasetManifest.Counts] {
            var result: [String: DatasetManifest.Counts] = [:]
            for row in try Row.fetchAll(db, sql: """
                SELECT COALESCE(\(column), 'unknown') AS k, COUNT(*) AS n, COALESCE(SUM(text_length), 0) AS t
                FROM samples WHERE deleted_at IS NULL GROUP BY k
                """) {
                result[row["k"]] = .init(samples: row["n"], tokens: row["t"])
            }
            return result
        }
        let bySource = try counts("source")
        return DatasetManifest(
            dataset: datasets.joined(separator: "+"), version: version, createdAt: ShardTime.format(now), parent: parent, shards: shards,
            deleted: deleted, deletions: deletions, pipelines: pipelines, rulesHash: sha256Hex(Array(pipelines.joined(separator: "\n").utf8)),
            samples: bySource.values.reduce(0) { $0 + $1.samples }, tokens: bySource.values.reduce(0) { $0 + $1.tokens },
            bySource: bySource, byLanguage: try counts("lang"), quality: nil)
    }
}
