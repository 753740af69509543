public import Foundation
internal import GRDB
public import SluiceShards
internal import SluiceText

/// Where samples came from and where raw records ended up, from a dataset directory's index, shards and (for
/// `sluice curate` output) `rejected.jsonl`. Each answer is one JSON object per match:
/// - a kept sample: `status` "kept" or "deleted", its shard (name, SHA-256), dataset, origin (topic, partition,
///   offset — or the input file and line), id, source, url, pipeline version, rule decisions and the sample's
///   metadata as stored in the shard;
/// - a dropped record: `status` "rejected" with the stage, reason and detail; an undecodable one: `status`
///   "dlq" (its original bytes went to the dead-letter topic);
/// - an offset the pipeline has not reached: `status` "not_processed".
public struct Lineage {
    public enum Query: Sendable, Equatable {
        case key(String)
        case id(String)
        /// A Kafka record's position.
        case offset(topic: String, partition: Int, offset: Int64)
        /// A line (1-based) of an offline `sluice curate` input.
        case line(Int)
    }

    public let directory: URL
    private let index: ShardIndex

    public init(directory: URL) throws(ShardError) {
        let path = directory.appendingPathComponent("index.sqlite").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw ShardError.make(.io, "no dataset in \(directory.path): index.sqlite is missing")
        }
        self.directory = directory
        index = try ShardIndex(path: path)
    }

    /// The JSON objects answering `query`; empty when nothing matches.
    public func trace(_ query: Query) throws(ShardError) -> [String] {
        try ShardError.wrap("tracing \(query)") {
            switch query {
            case .key(let key):
                return try sampleRows(where: "key = ?", [key]).map(describe)
            case .id(let id):
                var answers = try sampleRows(where: "id = ?", [id]).map(describe)
                answers += try rejectedRows(where: "r.id = ?", [id])
                answers += offlineRejections { $0["id"] as? String == id }
                return answers
            case .offset(let topic, let partition, let offset):
                let key = SampleOrigin.kafka(topic: topic, partition: Int32(partition), offset: offset).key
                let kept = try sampleRows(where: "key = ?", [key]).map(describe)
                if !kept.isEmpty { return kept }
                // The record's own audit row, then those of its replays (sluice replay), oldest first.
                let position = ReplayHeader.value(topic: topic, partition: Int32(partition), offset: offset)
                let rejected = try rejectedRows(
                    where: "(r.topic = ? AND r.partition = ? AND r.offset = ?) OR r.detail LIKE ?",
                    [topic, partition, offset, "%\"replay_of\":" + JSONText.string(position) + "%"])
                if !rejected.isEmpty { return rejected }
                return [try unprocessed(topic: topic, partition: partition, offset: offset)]
            case .line(let line):
                let kept = try sampleRows(where: "key = ?", [SampleOrigin.line(line).key]).map(describe)
                if !kept.isEmpty { return kept }
                return offlineRejections { ($0["line"] as? Int) == line }
            }
        }
    }

    private struct SampleRow {
        var location: SampleLocation
        var shard: ShardRecord
        var dataset: String
        var input: String?
        var deletion: String?
    }

    private func sampleRows(where condition: String, _ arguments: StatementArguments) throws -> [SampleRow] {
        try index.writer.read { db in
            try Row.fetchAll(db, sql: """
                SELECT s.*, sh.name AS shard_name, sh.dataset AS shard_dataset, d.input AS dataset_input
                FROM samples s JOIN shards sh ON sh.name = s.shard JOIN datasets d ON d.name = sh.dataset
                WHERE s.\(condition) ORDER BY s.key
                """, arguments: arguments
            ).map { row in
                let shardRow = try Row.fetchOne(db, sql: "SELECT * FROM shards WHERE name = ?", arguments: [row["shard_name"] as String])!
                return SampleRow(
                    location: SampleLocation(row: row), shard: ShardRecord(row: shardRow), dataset: row["shard_dataset"],
                    input: row["dataset_input"], deletion: row["deletion"])
            }
        }
    }

    private func describe(_ row: SampleRow) -> String {
        let location = row.location
        var json = "{\"status\":\(location.deletedAt == nil ? "\"kept\"" : "\"deleted\""),\"key\":\(JSONText.string(location.key))"
        json += ",\"dataset\":\(JSONText.string(row.dataset)),\"shard\":\(JSONText.string(row.shard.fileName))"
        json += ",\"shard_sha256\":\(JSONText.string(row.shard.sha256)),\"shard_status\":\(JSONText.string(row.shard.status))"
        if let lineage = location.lineage {
            if let topic = lineage.topic {
                json += ",\"origin\":{\"topic\":\(JSONText.string(topic)),\"partition\":\(lineage.partition ?? 0),\"offset\":\(lineage.offset)}"
            } else {
                json += ",\"origin\":{\"file\":\(row.input.map(JSONText.string) ?? "null"),\"line\":\(lineage.offset)}"
            }
        }
        json += ",\"id\":\(location.id.map(JSONText.string) ?? "null"),\"source\":\(location.source.map(JSONText.string) ?? "null")"
        if let lineage = location.lineage {
            json += ",\"url\":\(lineage.url.map(JSONText.string) ?? "null"),\"pipeline\":\(JSONText.string(lineage.pipeline))"
            // The stored decisions beyond the score column; a kept sample passed dedup.
            var decisions = "{"
            if let score = location.score { decisions += "\"quality_score\":\(score)," }
            if let stored = lineage.decisions, stored.count > 2 { decisions += stored.dropFirst().dropLast() + "," }
            decisions += "\"dedup\":\"kept\"}"
            json += ",\"decisions\":\(decisions),\"content_sha256\":\(JSONText.string(lineage.contentHashHex))"
        }
        if let deleted = location.deletedAt {
            json += ",\"deleted_at\":\(JSONText.string(deleted)),\"deletion\":\(row.deletion.map(JSONText.string) ?? "null")"
        }
        let url = directory.appendingPathComponent(row.shard.fileName)
        if let sample = try? ShardReader.sample(at: location, in: url, format: row.shard.format), !sample.json.isEmpty {
            json += ",\"metadata\":" + String(decoding: sample.json, as: UTF8.self)
        } else {
            json += ",\"metadata\":null"
        }
        return json + "}"
    }

    /// Rejections recorded by the streaming pipeline (with the checkpoint that recorded them).
    private func rejectedRows(where condition: String, _ arguments: StatementArguments) throws -> [String] {
        try index.writer.read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.*, c.dataset AS dataset, c.first_offset AS first_offset, c.next_offset AS next_offset
                FROM rejected r JOIN checkpoints c ON c.id = r.checkpoint WHERE \(condition) ORDER BY r.topic, r.partition, r.offset
                """, arguments: arguments
            ).map { row in
                let stage: String = row["stage"]
                let detail: String? = row["detail"]
                let status = stage == "decode" ? "dlq" : stage == "quarantine" ? "quarantined" : "rejected"
                var json = "{\"status\":\"\(status)\",\"dataset\":\(JSONText.string(row["dataset"]))"
                json += ",\"id\":\((row["id"] as String?).map(JSONText.string) ?? "null")"
                json += ",\"stage\":\(JSONText.string(stage)),\"reason\":\(JSONText.string(row["reason"]))"
                if let detail, !detail.isEmpty { json += ",\"detail\":{\(detail.hasPrefix(",") ? String(detail.dropFirst()) : detail)}" }
                json += ",\"origin\":{\"topic\":\(JSONText.string(row["topic"])),\"partition\":\(row["partition"] as Int),\"offset\":\(row["offset"] as Int64)}"
                json += ",\"checkpoint\":{\"first_offset\":\(row["first_offset"] as Int64),\"next_offset\":\(row["next_offset"] as Int64)}"
                return json + "}"
            }
        }
    }

    /// Rejections of an offline run, from `rejected.jsonl`.
    private func offlineRejections(_ matches: ([String: Any]) -> Bool) -> [String] {
        let url = directory.appendingPathComponent("rejected.jsonl")
        guard let data = try? Data(contentsOf: url, options: .mappedIfSafe) else { return [] }
        let input = (try? index.writer.read { db in try String.fetchOne(db, sql: "SELECT input FROM datasets ORDER BY created_at LIMIT 1") }) ?? nil
        var answers: [String] = []
        for line in data.split(separator: 0x0A) {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any], matches(object) else { continue }
            let stage = object["stage"] as? String ?? ""
            var json = "{\"status\":\(stage == "decode" ? "\"dlq\"" : "\"rejected\"")"
            json += ",\"origin\":{\"file\":\(input.map(JSONText.string) ?? "null"),\"line\":\(object["line"] as? Int ?? 0)}"
            json += ",\"audit\":" + String(decoding: line, as: UTF8.self) + "}"
            answers.append(json)
        }
        return answers
    }

    /// An offset with neither a sample nor a rejection: beyond what the pipeline has checkpointed, or a gap.
    private func unprocessed(topic: String, partition: Int, offset: Int64) throws -> String {
        let next = try index.writer.read { db in
            try Int64.fetchOne(db, sql: "SELECT MAX(next_offset) FROM checkpoints WHERE topic = ? AND partition = ?", arguments: [topic, partition])
        }
        let origin = "\"origin\":{\"topic\":\(JSONText.string(topic)),\"partition\":\(partition),\"offset\":\(offset)}"
        guard let next, offset < next else {
            return "{\"status\":\"not_processed\",\(origin),\"next_offset\":\(next.map(String.init) ?? "null")}"
        }
        return "{\"status\":\"unknown\",\(origin),\"note\":\"inside a checkpointed range but neither kept nor rejected (lost before the pipeline read it, or compacted away)\"}"
    }
}
