import Foundation
import SluiceShards
import Testing

@Suite("deletions and compaction")
struct DeletionTests {
    /// Six samples in two shards (three each) with ids, sources, urls and lineage.
    static func dataset(_ directory: URL) throws -> ShardIndex {
        let index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
        try index.registerDataset(name: "test", input: "in.jsonl", config: nil, now: Date())
        var configuration = ShardWriterConfiguration()
        configuration.maximumSamples = 3
        let writer = ShardWriter(directory: directory, configuration: configuration)
        var sealed: [SealedShard] = []
        for i in 0..<6 {
            let text = Array("sample text number \(i)".utf8)
            let lineage = SampleLineage(
                topic: nil, partition: nil, offset: Int64(i + 1), url: "https://\(i % 2 == 0 ? "a.example" : "b.example")/page\(i)",
                pipeline: "sluice/test", decisions: nil, contentHash: SHA256Value(text))
            let sample = ShardSample(
                key: String(format: "%010d", i + 1), text: text, json: Array("{\"i\":\(i)}".utf8), id: "doc-\(i)",
                source: i < 3 ? "web" : "forum", language: "en", score: 0.9, lineage: lineage)
            if let shard = try writer.add(sample, position: "test+\(String(format: "%010d", i + 1))", mtime: 0, now: 0) { sealed.append(shard) }
        }
        if let shard = try writer.seal(now: 0) { sealed.append(shard) }
        for shard in sealed { try index.record(shard, dataset: "test") }
        return index
    }

    @Test func requestsMatchByIdPatternAndContentHashOnce() throws {
        try withTemporaryDirectory { directory in
            let index = try Self.dataset(directory)
            let byURL = try index.apply(DeletionRequest(request: "r1", kind: .url, value: "https://b.example/*"))
            #expect(byURL.keys == ["0000000002", "0000000004", "0000000006"] && byURL.shards.count == 2)
            let again = try index.apply(DeletionRequest(request: "r1", kind: .url, value: "https://b.example/*"))
            #expect(again.repeated && again.keys.isEmpty)
            let bySource = try index.apply(DeletionRequest(request: "r2", kind: .source, value: "w?b"))
            #expect(bySource.keys == ["0000000001", "0000000003"], "already deleted samples are not matched again")
            let byHash = try index.apply(DeletionRequest(request: "r3", kind: .contentSHA256, value: sha256Hex(Array("sample text number 4".utf8)).uppercased()))
            #expect(byHash.keys == ["0000000005"])
            #expect(try index.apply(DeletionRequest(request: "r4", kind: .id, value: "doc-404")).keys.isEmpty)
            #expect(try index.deletedKeys().values.map(\.count).reduce(0, +) == 6)
        }
    }

    @Test func compactionRewritesOnlyAffectedShardsAndCanBeRepeated() throws {
        try withTemporaryDirectory { directory in
            let index = try Self.dataset(directory)
            let before = try index.shards()
            _ = try index.apply(DeletionRequest(request: "r1", kind: .id, value: "doc-1"))
            let results = try index.compact(directory: directory)
            #expect(results.count == 1 && results[0].retired == before[0].name && results[0].kept == 2 && results[0].removed == 1)
            let after = try index.shards()
            #expect(after.map(\.name) == [before[0].name + "-c1", before[1].name])
            #expect(after[1].sha256 == before[1].sha256, "an unaffected shard is untouched")
            let samples = try ShardReader.samples(of: directory.appendingPathComponent(after[0].fileName), expectingSHA256: after[0].sha256)
            #expect(samples.map(\.key) == ["0000000001", "0000000003"])
            #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent(before[0].fileName).path))
            #expect(try index.compact(directory: directory).isEmpty, "nothing left to compact")
            // A second deletion in the compacted shard makes generation 2.
            _ = try index.apply(DeletionRequest(request: "r2", kind: .id, value: "doc-0"))
            #expect(try index.compact(directory: directory).first?.replacement == before[0].name + "-c2")
            #expect(try index.location(ofKey: "0000000003")?.shard.name == before[0].name + "-c2")
        }
    }

    @Test func controlEventsParseAndRefuseWhatIsMalformed() throws {
        let request = DeletionRequest(request: "q", kind: .url, value: "https://x/*", reason: "takedown")
        #expect(try DeletionRequest.parse(event: Array(request.event.utf8)) == request)
        #expect(try DeletionRequest.parse(event: Array("{\"type\":\"deletion_applied\"}".utf8)) == nil)
        #expect(throws: ShardError.self) { try DeletionRequest.parse(event: Array("{\"type\":\"delete\",\"request\":\"q\",\"by\":\"name\",\"value\":\"x\"}".utf8)) }
        #expect(throws: ShardError.self) { try DeletionRequest.parse(event: Array("not json".utf8)) }
    }
}
