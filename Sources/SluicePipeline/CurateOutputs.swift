public import Foundation
public import SluiceShards
public import SluiceText

/// `rejected.jsonl`: one object per dropped or undecodable record (`id` when known, `line`, `stage`, `reason`,
/// and scores) — never the text or the PII.
final class RejectedLog {
    private let handle: FileHandle
    private var buffer: [UInt8] = []

    init(url: URL) throws(ShardError) {
        guard FileManager.default.createFile(atPath: url.path, contents: nil), let handle = try? FileHandle(forWritingTo: url) else {
            throw ShardError.make(.io, "cannot create \(url.path)")
        }
        self.handle = handle
    }

    /// Appends one record; `extra` is JSON members to add (`,"score":0.41`). Written straight into the buffer.
    func append(line: Int, id: String?, stage: String, reason: String, extra: String) {
        func raw(_ text: StaticString) {
            buffer.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }
        raw("{\"id\":")
        if let id { JSONText.appendString(id, to: &buffer) } else { raw("null") }
        raw(",\"line\":")
        buffer.append(contentsOf: String(line).utf8)
        raw(",\"stage\":")
        JSONText.appendString(stage, to: &buffer)
        raw(",\"reason\":")
        JSONText.appendString(reason, to: &buffer)
        buffer.append(contentsOf: extra.utf8)
        raw("}\n")
        if buffer.count > 1 << 20 { try? flush() }
    }

    private func flush() throws {
        try handle.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws(ShardError) {
        do {
            try flush()
            try handle.synchronize()
            try handle.close()
        } catch {
            throw ShardError.make(.io, "writing rejected.jsonl: \(error.localizedDescription)")
        }
    }
}

/// Where a sample came from; it names the sample and fills the position fields of its JSON.
public enum SampleOrigin: Sendable {
    /// An input line (1-based) of `sluice curate`: key = the zero-padded line number.
    case line(Int)
    /// A Kafka record: key = `<topic>+<partition>+<offset>` with the topic's dots written as `~` (keys hold
    /// no dots; Kafka topic names never contain `~`).
    case kafka(topic: String, partition: Int32, offset: Int64)

    public var key: String {
        switch self {
        case .line(let line): Curator.padded(line)
        case .kafka(let topic, let partition, let offset):
            "\(SampleOrigin.keySafe(topic))+\(partition)+\(Curator.padded(Int(offset)))"
        }
    }

    /// A topic name as it may appear in a sample key.
    public static func keySafe(_ topic: String) -> String {
        topic.contains(".") ? topic.replacingOccurrences(of: ".", with: "~") : topic
    }
}

/// The sample a kept document becomes.
public enum SampleJSON {
    public static func sample(_ document: Document, line: Int) -> ShardSample {
        sample(document, origin: .line(line))
    }

    /// The sample, its JSON and its lineage; `pipeline` is the ``PipelineVersion`` that made it.
    public static func sample(_ document: Document, origin: SampleOrigin, pipeline: String = "") -> ShardSample {
        let key = origin.key
        var json: [UInt8] = []
        json.reserveCapacity(256 + (document.metaJSON?.count ?? 0))
        func raw(_ text: StaticString) { json.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)) }
        func field(_ name: StaticString, _ value: String?) {
            guard let value else { return }
            raw(name)
            JSONText.appendString(value, to: &json)
        }
        raw("{\"id\":")
        if let id = document.id { JSONText.appendString(id, to: &json) } else { raw("null") }
        switch origin {
        case .line(let line):
            raw(",\"line\":")
            json.append(contentsOf: String(line).utf8)
        case .kafka(let topic, let partition, let offset):
            field(",\"topic\":", topic)
            raw(",\"partition\":")
            json.append(contentsOf: String(partition).utf8)
            raw(",\"offset\":")
            json.append(contentsOf: String(offset).utf8)
        }
        if !pipeline.isEmpty { field(",\"pipeline\":", pipeline) }
        field(",\"source\":", document.source)
        field(",\"url\":", document.url)
        field(",\"ts\":", document.timestamp)
        field(",\"lang\":", document.language)
        let score = document.signals["quality.score"]
        if let score {
            raw(",\"quality_score\":")
            json.append(contentsOf: String(Double(Int((score * 10_000).rounded())) / 10_000).utf8)
        }
        var failed = false
        let failedStart = json.count
        var pii = false
        // Signal names are matched and written as UTF-8 slices: no substring or string per signal.
        let failPrefix = "quality.fail.".utf8
        let piiPrefix = "pii.".utf8
        for (name, _) in document.signals.values where name.utf8.starts(with: failPrefix) {
            raw(failed ? "," : ",\"quality_failed\":[")
            failed = true
            JSONText.appendString(name.utf8.dropFirst(failPrefix.count), to: &json)
        }
        if failed { raw("]") }
        let piiStart = json.count
        raw(",\"pii\":{")
        for (name, value) in document.signals.values where name.utf8.starts(with: piiPrefix) {
            if pii { raw(",") }
            pii = true
            JSONText.appendString(name.utf8.dropFirst(piiPrefix.count), to: &json)
            raw(":")
            json.append(contentsOf: String(Int(value)).utf8)
        }
        raw("}")
        let piiEnd = json.count
        raw(",\"dedup\":{\"kept\":true}")
        // The decisions of the index row beyond its score column: failed rules kept by policy, PII counts,
        // perplexity (nil when there are none; most samples). Built as bytes, made a string once.
        var decisions: String?
        let perplexity = document.signals["perplexity"]
        if failed || pii || perplexity != nil {
            var text: [UInt8] = [0x7B]
            if failed { text.append(contentsOf: json[(failedStart + 1)..<piiStart]) }
            if pii {
                if text.count > 1 { text.append(0x2C) }
                text.append(contentsOf: json[(piiStart + 1)..<piiEnd])
            }
            if let perplexity {
                if text.count > 1 { text.append(0x2C) }
                text.append(contentsOf: "\"perplexity\":\(Double(Int((perplexity * 100).rounded())) / 100)".utf8)
            }
            text.append(0x7D)
            decisions = String(decoding: text, as: UTF8.self)
        }
        if let meta = document.metaJSON {
            raw(",\"meta\":")
            json.append(contentsOf: meta)
        }
        raw("}")
        let lineage: SampleLineage =
            switch origin {
            case .line(let line):
                SampleLineage(topic: nil, partition: nil, offset: Int64(line), url: document.url, pipeline: pipeline, decisions: decisions,
                    contentHash: SHA256Value(document.text))
            case .kafka(let topic, let partition, let offset):
                SampleLineage(topic: topic, partition: Int(partition), offset: offset, url: document.url, pipeline: pipeline,
                    decisions: decisions, contentHash: SHA256Value(document.text))
            }
        return ShardSample(
            key: key, text: document.text, json: json, id: document.id, source: document.source,
            language: document.language, score: score, timestamp: document.timestamp, lineage: lineage)
    }

    /// Member mtime: the document time (Unix seconds) when it has one, else 0 — never the wall clock, so a
    /// re-made shard is byte-identical.
    public static func mtime(_ timestamp: String?) -> Int64 {
        // Offsets other than Z are ignored, as they always were: a re-made shard must be byte-identical.
        guard let ts = timestamp, let seconds = RFC3339Seconds.civil(Array(ts.utf8)) else { return 0 }
        return Int64(max(0, seconds))
    }
}

/// The `wids` shard list (JSON) that Python WebDataset loaders open directly.
public enum WIDSExport {
    public static func write(index: ShardIndex, to url: URL) throws(ShardError) {
        let shards = try index.shards()
        var json = "{\"__kind__\":\"wids-shard-index-v1\",\"wids_version\":1,\"name\":\"sluice\",\"shardlist\":["
        json += shards.map { "{\"url\":" + JSONText.string($0.fileName) + ",\"nsamples\":\($0.samples)}" }.joined(separator: ",")
        json += "]}\n"
        do { try Data(json.utf8).write(to: url, options: .atomic) } catch {
            throw ShardError.make(.io, "writing \(url.lastPathComponent): \(error.localizedDescription)")
        }
    }
}
