import Foundation
import SluicePipeline
import SluiceShards
import SluiceText
import Testing

@Suite("Curator output depends on the input alone")
struct CuratorDeterminismTests {
    /// Documents that share a footer line: the clean stage's repeated-line evidence drops it once enough earlier
    /// documents carried it, so which worker saw which documents first shows in the output.
    private func corpus(_ count: Int) -> String {
        let words = ["river", "garden", "library", "station", "harbour", "mountain", "village", "market", "bridge", "forest"]
        return (0..<count).map { i in
            let body = (0..<30).map { "\(words[($0 * 7 + i) % words.count])\(($0 * 31 + i * 17) % 997)" }.joined(separator: " ")
            let footer = i % 2 == 0 ? "\\nPosted in the town news section today" : ""
            return "{\"id\":\"doc-\(i)\",\"text\":\"The \(words[i % 10]) \(i) is where people meet and talk. \(body).\(footer)\"}"
        }.joined(separator: "\n") + "\n"
    }

    /// Whatever the batch size — the last batch full, partial, one line, or the whole input in one — every input
    /// line ends up once, as a sample or in `rejected.jsonl`.
    @Test(arguments: [1, 3, 5, 6, 7, 601, 4096])
    func everyLineIsAccountedForOnceWhateverTheBatchSize(batchSize: Int) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-batches-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("in.jsonl")
        // 601 lines: 600 documents and one that is not JSON.
        try Data((corpus(600) + "not json\n").utf8).write(to: input)
        var configuration = CurateConfiguration()
        configuration.workers = 2
        let output = directory.appendingPathComponent("out")
        let curator = Curator(configuration: configuration, output: output)
        curator.batchSize = batchSize
        let summary = try curator.run(input: try LineSource(path: input.path), datasetName: "in", overwrite: false)
        #expect(summary.lines == 601)
        let index = try ShardIndex(path: output.appendingPathComponent("index.sqlite").path)
        let keys = try index.samples(inShard: "in+0000000001").map(\.key)
        #expect(keys.count == summary.kept)
        let rejected = try String(contentsOf: output.appendingPathComponent("rejected.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { line -> Int in
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                return try #require(object["line"] as? Int)
            }
        let lines = keys.map { Int($0)! } + rejected
        #expect(lines.sorted() == Array(1...601))
    }

    @Test func twoWorkersWithSmallBatchesWriteTheSameBytesEveryRun() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-determinism-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("in.jsonl")
        try Data(corpus(600).utf8).write(to: input)
        var configuration = CurateConfiguration()
        configuration.workers = 2
        configuration.cleaner.repeatedLineThreshold = 3
        var shards: [Data] = []
        var kept: [Int] = []
        for run in 0..<4 {
            let output = directory.appendingPathComponent("out\(run)")
            let curator = Curator(configuration: configuration, output: output)
            curator.batchSize = 7  // many batches, handed to both workers
            let summary = try curator.run(input: try LineSource(path: input.path), datasetName: "in", overwrite: false)
            kept.append(summary.kept)
            let names = try FileManager.default.contentsOfDirectory(atPath: output.path).filter { $0.hasSuffix(".tar.zst") }
            #expect(names == ["in+0000000001.tar.zst"])
            shards.append(try Data(contentsOf: output.appendingPathComponent(names[0])))
            #expect(summary.stageSeconds.map(\.stage) == ["decode", "clean", "desensitize", "quality", "fingerprint", "encode", "dedup", "write"])
        }
        #expect(Set(kept).count == 1 && kept[0] > 500)
        #expect(Set(shards).count == 1, "the shard bytes differ between runs")
    }
}
