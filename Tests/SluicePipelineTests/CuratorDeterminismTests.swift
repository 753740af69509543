import Foundation
import SluicePipeline
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
