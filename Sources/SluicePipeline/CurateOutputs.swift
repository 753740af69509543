public import Foundation
public import SluiceShards
public import SluiceText

/// JSON string escaping for the few JSON documents Sluice writes by hand.
public enum JSONText {
    public static func string(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let s where s.value < 0x20: out += String(format: "\\u%04x", s.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

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

    func append(line: Int, id: String?, stage: String, reason: String, extra: String) {
        var record = "{\"id\":" + (id.map(JSONText.string) ?? "null") + ",\"line\":\(line)"
        record += ",\"stage\":" + JSONText.string(stage) + ",\"reason\":" + JSONText.string(reason) + extra + "}\n"
        buffer.append(contentsOf: record.utf8)
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

/// The sample a kept document becomes: key = zero-padded input line (or partition and offset in streaming).
public enum SampleJSON {
    public static func sample(_ document: Document, line: Int) -> ShardSample {
        let key = Curator.padded(line)
        var json = "{\"id\":" + (document.id.map(JSONText.string) ?? "null")
        json += ",\"line\":\(line)"
        if let source = document.source { json += ",\"source\":" + JSONText.string(source) }
        if let url = document.url { json += ",\"url\":" + JSONText.string(url) }
        if let ts = document.timestamp { json += ",\"ts\":" + JSONText.string(ts) }
        if let language = document.language { json += ",\"lang\":" + JSONText.string(language) }
        let score = document.signals["quality.score"]
        if let score { json += String(format: ",\"quality_score\":%.4f", score) }
        var pii: [String] = []
        var failed: [String] = []
        for (name, value) in document.signals.values {
            if name.hasPrefix("pii.") { pii.append(JSONText.string(String(name.dropFirst(4))) + ":\(Int(value))") }
            if name.hasPrefix("quality.fail.") { failed.append(JSONText.string(String(name.dropFirst(13)))) }
        }
        if !failed.isEmpty { json += ",\"quality_failed\":[" + failed.joined(separator: ",") + "]" }
        json += ",\"pii\":{" + pii.joined(separator: ",") + "}"
        json += ",\"dedup\":{\"kept\":true}"
        if let meta = document.metaJSON { json += ",\"meta\":" + String(decoding: meta, as: UTF8.self) }
        json += "}"
        return ShardSample(
            key: key, text: document.text, json: Array(json.utf8), id: document.id, source: document.source,
            language: document.language, score: score, timestamp: document.timestamp)
    }

    /// Member mtime: the document time (Unix seconds) when it has one, else 0 — never the wall clock, so a
    /// re-made shard is byte-identical.
    public static func mtime(_ timestamp: String?) -> Int64 {
        guard let ts = timestamp, ts.utf8.count >= 19 else { return 0 }
        let b = Array(ts.utf8)
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range {
                guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
                value = value * 10 + Int(b[i] - 0x30)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19)
        else { return 0 }
        // Days from civil (proleptic Gregorian), UTC; offsets other than Z are ignored to the hour's precision.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Int64(max(0, days * 86_400 + hour * 3600 + minute * 60 + second))
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
