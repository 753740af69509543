public import Foundation

/// Checks a dataset directory against its index: every indexed shard exists, has its SHA-256, parses, and holds
/// exactly the indexed samples at the indexed places.
public enum ShardVerifier {
    /// The problems found (empty when all is well) and notes that are not errors (temporary files of a crashed
    /// writer, shards sealed but never recorded).
    public static func verify(directory: URL) throws(ShardError) -> (problems: [String], notes: [String]) {
        let index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
        var problems: [String] = []
        var notes: [String] = []
        let shards = try index.shards()
        var indexed = Set<String>()
        for shard in shards {
            indexed.insert(shard.fileName)
            let url = directory.appendingPathComponent(shard.fileName)
            guard let data = try? ShardReader.fileBytes(of: url) else {
                problems.append("\(shard.fileName): missing")
                continue
            }
            let digest = SHA256Digest()
            data.withUnsafeBytes { digest.update($0) }
            let sha = digest.finish()
            if sha != shard.sha256 {
                problems.append("\(shard.fileName): SHA-256 \(sha) does not match the index (\(shard.sha256))")
                continue
            }
            if data.count != shard.storedBytes {
                problems.append("\(shard.fileName): \(data.count) bytes, the index says \(shard.storedBytes)")
            }
            let samples: [ShardSampleData]
            do { samples = try ShardReader.samples(stored: data, format: shard.format, name: shard.fileName) } catch {
                problems.append("\(shard.fileName): \(error.reason)")
                continue
            }
            let locations = try index.samples(inShard: shard.name)
            if samples.count != shard.samples || locations.count != shard.samples {
                problems.append("\(shard.fileName): \(samples.count) samples in the file, \(locations.count) in the index, \(shard.samples) in the shard row")
            }
            let byKey = Dictionary(samples.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
            for location in locations {
                guard let sample = byKey[location.key] else {
                    problems.append("\(shard.fileName): indexed sample \(location.key) is not in the file")
                    continue
                }
                if sample.text.count != location.textLength || sample.json.count != location.jsonLength {
                    problems.append("\(shard.fileName): sample \(location.key) lengths differ from the index")
                }
            }
        }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for file in files.sorted() {
            if file.hasSuffix(".tmp") {
                notes.append("\(file): an unsealed shard of an interrupted writer; invisible to readers")
            } else if (file.hasSuffix(".tar") || file.hasSuffix(".tar.zst")) && !indexed.contains(file) {
                notes.append("\(file): sealed but not in the index (interrupted before it was recorded); invisible to readers")
            }
        }
        return (problems, notes)
    }
}
