import Foundation
import GRDB
import Testing

@Suite("sluice train, eval ppl and the perplexity filter", .timeLimit(.minutes(4)))
struct TrainCommandTests {
    private static let words = ["river", "garden", "library", "station", "harbour", "mountain", "village", "market", "bridge", "forest"]

    private static func english(_ i: Int) -> String {
        let body = (0..<40).map { "\(words[($0 * 7 + i) % 10])\(($0 * 31 + i * 17) % 997)" }.joined(separator: " ")
        return "{\"id\":\"en\(i)\",\"text\":\"The \(words[i % 10]) \(i) is where the people of the town meet, and they have many stories to tell about it. \(body).\"}"
    }

    private static func chinese(_ i: Int) -> String {
        let text = String(repeating: "城市的河流穿过古老的街道，人们在桥上散步，谈论着天气和市场上的新鲜事。图书馆里安静而明亮，孩子们在那里读书写字。", count: 1 + i % 3)
        return "{\"id\":\"zh\(i)\",\"text\":\"\(text)第\(i)章。\"}"
    }

    @Test func trainsResumesScoresAndFiltersByPerplexity() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let sluice = sluiceExecutable.path
        let corpus = directory.appendingPathComponent("train.jsonl")
        try Data(((0..<80).map(Self.english).joined(separator: "\n") + "\n").utf8).write(to: corpus)
        let curated = directory.appendingPathComponent("curated").path
        #expect(try await runProcess(sluice, ["curate", "--input", corpus.path, "--output", curated, "--quiet"]).status == 0)

        // Bad settings are refused with the reason.
        let model = directory.appendingPathComponent("model").path
        let small = ["--layers", "1", "--dim", "32", "--context", "32", "--batch", "8", "--threads", "1", "--holdout", "5"]
        let badHeads = try await runProcess(sluice, ["train", "--shards", curated, "--output", model, "--dim", "30", "--heads", "4"])
        #expect(badHeads.status != 0 && badHeads.stderr.contains("multiple of heads"), "\(badHeads.stderr)")
        let noData = try await runProcess(sluice, ["train", "--output", model])
        #expect(noData.status != 0 && noData.stderr.contains("no training data"), "\(noData.stderr)")
        let notCurated = try await runProcess(sluice, ["train", "--shards", directory.path, "--output", model])
        #expect(notCurated.status != 0 && notCurated.stderr.contains("not a curated directory"))

        // 30 steps, then a resumed run to 60 ends where one uninterrupted run to 60 ends.
        let first = try await runProcess(sluice, ["train", "--shards", curated, "--output", model, "--steps", "60", "--checkpoint-every", "30"] + small + ["--lr", "3e-3"])
        #expect(first.status == 0, "\(first.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any]
        #expect(summary?["steps"] as? Int == 60 && summary?["validation_loss"] != nil, "\(first.stdout)")
        let split = directory.appendingPathComponent("split").path
        _ = try await runProcess(sluice, ["train", "--shards", curated, "--output", split, "--steps", "60", "--checkpoint-every", "30"] + small + ["--lr", "3e-3"])
        let checkpoints = directory.appendingPathComponent("split/checkpoints")
        try FileManager.default.removeItem(at: checkpoints.appendingPathComponent("step-00000060"))
        try Data("step-00000030\n".utf8).write(to: checkpoints.appendingPathComponent("LATEST"))
        let resumed = try await runProcess(sluice, ["train", "--shards", curated, "--output", split, "--steps", "60", "--checkpoint-every", "30"] + small + ["--lr", "3e-3"])
        #expect(resumed.status == 0 && resumed.stderr.contains("resuming from") && resumed.stdout.contains("\"steps_this_run\":30"), "\(resumed.stderr)")
        let hashes = try await runProcess("/bin/sh", ["-c", "sha256sum '\(model)'/checkpoints/step-00000060/model.safetensors '\(split)'/checkpoints/step-00000060/model.safetensors | cut -c1-64"])
        let lines = hashes.stdout.split(separator: "\n")
        #expect(lines.count == 2 && lines[0] == lines[1], "a resumed run writes the same model bytes")

        // Perplexity of a file; then the filter drops what the model finds unlike its training text.
        let mixed = directory.appendingPathComponent("mixed.jsonl")
        try Data((((80..<100).map(Self.english) + (0..<20).map(Self.chinese)).joined(separator: "\n") + "\n").utf8).write(to: mixed)
        let checkpoint = model + "/checkpoints/step-00000060"
        let ppl = try await runProcess(sluice, ["eval", "ppl", "--model", checkpoint, "--input", mixed.path, "--threads", "1"])
        let score = try JSONSerialization.jsonObject(with: Data(ppl.stdout.utf8)) as? [String: Any]
        #expect((score?["perplexity"] as? Double ?? 0) > 1 && (score?["windows"] as? Int ?? 0) > 10, "\(ppl.stdout) \(ppl.stderr)")
        let config = directory.appendingPathComponent("ppl.yaml")
        try Data("perplexity:\n  model: \(checkpoint)\n  max_ratio: 1.5\n".utf8).write(to: config)
        let filtered = directory.appendingPathComponent("filtered").path
        let run = try await runProcess(sluice, ["curate", "--input", mixed.path, "--output", filtered, "--config", config.path, "--quiet"])
        #expect(run.status == 0, "\(run.stderr)")
        let rejected = try String(contentsOfFile: filtered + "/rejected.jsonl", encoding: .utf8).split(separator: "\n")
        let byPerplexity = rejected.filter { $0.contains("\"stage\":\"perplexity\"") }
        #expect(byPerplexity.count >= 10 && byPerplexity.allSatisfy { $0.contains("\"id\":\"zh") && $0.contains("\"limit\":") },
                "Chinese text is far from an English-trained model: \(byPerplexity.count) dropped")
        #expect(!rejected.contains { $0.contains("\"id\":\"en") }, "English like the training text is kept")
        #expect(run.stdout.contains("\"kept\":20"))

        // The streaming pipeline takes its model from sluice.models (the newest one there before the first record).
        let broker = try BrokerProcess(arguments: ["--topic", "mix.in:2", "--topic", "sluice.models:1"] + PipelineTests.outputTopics)
        defer { _ = broker.stop() }
        let event = """
            {"version":1,"status":"accepted","request":"manual","reasons":[],"checkpoint":"\(checkpoint)",\
            "model":"\(checkpoint)/model.safetensors","validation_loss":\((summary?["validation_loss"] as? Double) ?? 4),\
            "validation_windows":1,"steps":60,"tokens":1,"shards":1,"replay_shards":0,"created_at":""}
            """
        try await produce(["v1|" + event], topic: "sluice.models", bootstrap: broker.bootstrap)
        let records = (80..<100).map(Self.english) + (0..<20).map(Self.chinese)
        try await produce(records.enumerated().map { "k\($0.offset)|\($0.element)" }, topic: "mix.in", bootstrap: broker.bootstrap)
        let pipelineConfig = directory.appendingPathComponent("pipeline.yaml")
        try Data("perplexity:\n  models_topic: sluice.models\n  max_ratio: 1.5\n".utf8).write(to: pipelineConfig)
        let streamed = directory.appendingPathComponent("streamed")
        let pipeline = try await runProcess(
            sluice,
            ["pipeline", "--config", pipelineConfig.path, "--bootstrap", broker.bootstrap, "--topic", "mix.in", "--output", streamed.path,
             "--group", "ppl", "--exit-at-end", "--log-level", "notice"],
            timeout: .seconds(90))
        #expect(pipeline.status == 0 && pipeline.stderr.contains("now uses model version 1"), "\(pipeline.stderr.suffix(1500))")
        let index = try StreamIndexReader(directory: streamed)
        let dropped = try await index.pool.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM rejected WHERE stage = 'perplexity' AND reason = 'perplexity_above_limit'")
        }
        #expect(dropped.count >= 10 && dropped.allSatisfy { $0.hasPrefix("zh") }, "\(dropped)")
        let kept = try await index.pool.read { db in try String.fetchAll(db, sql: "SELECT id FROM samples") }
        #expect(kept.filter { $0.hasPrefix("en") }.count == 20, "\(kept)")
    }
}
