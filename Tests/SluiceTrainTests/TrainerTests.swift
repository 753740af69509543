import Foundation
import SluiceConfig
import SluiceKafka
@testable import SluiceTrain
import Testing

@Suite("Trainer: learning, determinism, checkpoints and resume")
struct TrainerTests {
    /// A small model and loader over a few tiny shards: one pass is about 55 steps.
    static func configuration(steps: Int) -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.model = GPTConfiguration(contextLength: 32, layers: 2, channels: 32, heads: 2)
        c.loader.contextLength = 32
        c.loader.batchSize = 8
        c.loader.shuffleBuffer = 16
        c.loader.holdout = 10
        c.loader.seed = 3
        c.steps = steps
        c.schedule = LearningRateSchedule(maxRate: 3e-3, minRate: 3e-4, warmupSteps: 5, totalSteps: steps)
        c.checkpointEvery = 1000
        c.threads = 2
        c.validationWindows = 8
        return c
    }

    static func quietRun(_ trainer: Trainer, _ directory: URL, _ output: URL, limit: Int? = nil) async throws -> TrainingRun.Summary {
        let run = TrainingRun(trainer: trainer, data: .directory(directory), output: output) { _ in }
        run.stepsThisRunLimit = limit
        return try await run.run()
    }

    @Test func lossFallsAndAFixedSeedRepeatsBitForBit() async throws {
        let directory = ShardStreamLoaderTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try ShardStreamLoaderTests.writeShards(6, perShard: 25, in: directory)
        var losses: [[Float]] = []
        for _ in 0..<2 {
            let trainer = Trainer(configuration: Self.configuration(steps: 60))
            var loader = ShardStreamLoader(configuration: trainer.configuration.loader, baseDirectory: directory)
            for announcement in try ShardAnnouncement.directory(directory) { loader.offer(announcement) }
            loader.finish()
            var run: [Float] = []
            while run.count < 40, let batch = loader.nextBatch() { run.append(trainer.step([batch]).loss) }
            losses.append(run)
        }
        #expect(losses[0].count == 40)
        #expect(losses[0] == losses[1], "same seeds, same machine: identical losses")
        let first = losses[0][0], last = losses[0].suffix(5).reduce(0, +) / 5
        #expect(first > 5 && last < first - 2, "loss falls from \(first) to \(last)")
    }

    @Test func aResumedRunEndsBitIdenticalToAnUninterruptedOne() async throws {
        let directory = ShardStreamLoaderTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try ShardStreamLoaderTests.writeShards(6, perShard: 25, in: directory)
        let straight = directory.appendingPathComponent("straight"), resumed = directory.appendingPathComponent("resumed")
        // 70 steps cross an epoch boundary; the interrupted run stops at 23 and again at 57.
        let summary = try await Self.quietRun(Trainer(configuration: Self.configuration(steps: 70)), directory, straight)
        #expect(summary.steps == 70 && summary.epochs == 1 && summary.validationLoss != nil)

        let first = try await Self.quietRun(Trainer(configuration: Self.configuration(steps: 70)), directory, resumed, limit: 23)
        #expect(first.steps == 23 && first.stoppedBy == "step limit")
        for limit in [34, nil] {
            let checkpoint = try #require(Trainer.latestCheckpoint(in: resumed))
            let trainer = try Trainer(resumingFrom: checkpoint, configuration: Self.configuration(steps: 70))
            _ = try await Self.quietRun(trainer, directory, resumed, limit: limit)
        }
        let a = try GPT.load(try #require(Trainer.latestCheckpoint(in: straight)))
        let b = try GPT.load(try #require(Trainer.latestCheckpoint(in: resumed)))
        #expect(a.allParameters == b.allParameters, "parameters after 70 steps are identical with or without two restarts")
        let stateA = try Trainer.readState(try #require(Trainer.latestCheckpoint(in: straight)))
        let stateB = try Trainer.readState(try #require(Trainer.latestCheckpoint(in: resumed)))
        #expect(stateA.progress == stateB.progress)
        // Only the newest checkpoints are kept.
        let kept = try FileManager.default.contentsOfDirectory(atPath: Trainer.checkpointsDirectory(in: resumed).path)
            .filter { $0.hasPrefix("step-") }
        #expect(kept.count <= Self.configuration(steps: 70).keepCheckpoints)
        // A lost LATEST (a crash between rename and pointer) falls back to the newest complete checkpoint.
        let checkpoints = Trainer.checkpointsDirectory(in: resumed)
        try FileManager.default.removeItem(at: checkpoints.appendingPathComponent("LATEST"))
        try FileManager.default.createDirectory(at: checkpoints.appendingPathComponent("step-00000099"), withIntermediateDirectories: true)
        #expect(Trainer.latestCheckpoint(in: resumed)?.lastPathComponent == "step-00000070")
    }

    @Test func checkpointsAreSafetensorsAndMismatchesAreRefused() async throws {
        let directory = ShardStreamLoaderTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try ShardStreamLoaderTests.writeShards(3, perShard: 25, in: directory)
        let output = directory.appendingPathComponent("model")
        let trainer = Trainer(configuration: Self.configuration(steps: 5))
        _ = try await Self.quietRun(trainer, directory, output)
        let checkpoint = try #require(Trainer.latestCheckpoint(in: output))
        let file = try SafeTensors(contentsOf: checkpoint.appendingPathComponent("model.safetensors"))
        #expect(Set(file.entries.keys) == Set(trainer.model.layout.tensors.map(\.name)))
        #expect(file.entries["h.1.mlp.c_fc.weight"]?.shape == [128, 32])
        #expect(try file.floats("ln_f.bias") == trainer.model.values(of: "ln_f.bias"))
        // Python's safetensors reads it too, when the test interpreter has it.
        if let python = ProcessInfo.processInfo.environment["SLUICE_TEST_PYTHON"], Self.pythonHas("safetensors", python) {
            let script = """
                import sys, json; from safetensors.numpy import load_file; from safetensors import safe_open
                t = load_file(sys.argv[1]); m = safe_open(sys.argv[1], 'np').metadata()
                print(json.dumps({"n": len(t), "shape": list(t["wte.weight"].shape), "sum": float(t["ln_f.bias"].sum()), "model": json.loads(m["sluice.model"])}))
                """
            let output = try Self.runProcess(python, ["-c", script, checkpoint.appendingPathComponent("model.safetensors").path])
            let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            #expect(object?["n"] as? Int == trainer.model.layout.tensors.count)
            #expect(object?["shape"] as? [Int] == [256, 32])
            let sum = trainer.model.values(of: "ln_f.bias").reduce(0, +)
            #expect(abs((object?["sum"] as? Double ?? .nan) - Double(sum)) < 1e-5)
        }
        // A different model shape or loader split is refused with the reason.
        var other = Self.configuration(steps: 5)
        other.model.layers = 3
        #expect(throws: TrainError.self) { try Trainer(resumingFrom: checkpoint, configuration: other) }
        other = Self.configuration(steps: 5)
        other.loader.worldSize = 2
        #expect(throws: TrainError.self) { try Trainer(resumingFrom: checkpoint, configuration: other) }
        // A damaged model file is an error, not a crash.
        let damaged = directory.appendingPathComponent("damaged.safetensors")
        let bytes = try Data(contentsOf: checkpoint.appendingPathComponent("model.safetensors"))
        try bytes.prefix(bytes.count / 2).write(to: damaged)
        #expect(throws: TrainError.self) { try GPT.load(damaged) }
        try Data("{}".utf8).write(to: damaged)
        #expect(throws: TrainError.self) { try GPT.load(damaged) }
    }

    @Test func trainsFromTheShardsTopicUntilItIsDrained() async throws {
        let directory = ShardStreamLoaderTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let announcements = try ShardStreamLoaderTests.writeShards(4, perShard: 25, in: directory)
        let (broker, kafka) = try ShardStreamLoaderTests.broker(topics: ["sluice.shards"])
        defer { broker.shutdown() }
        try await ShardStreamLoaderTests.publish(announcements.map(ShardStreamLoaderTests.event), to: "sluice.shards", kafka: kafka)
        let output = directory.appendingPathComponent("model")
        let trainer = Trainer(configuration: Self.configuration(steps: 1000))
        let run = TrainingRun(
            trainer: trainer, data: .stream(kafka, topic: "sluice.shards", baseDirectory: directory, exitAtEnd: true), output: output
        ) { _ in }
        let summary = try await run.run()
        #expect(summary.stoppedBy == "end of stream")
        // One pass over 4 × 25 documents of ~100 bytes, minus the held-out ones: about 35 steps of 256 tokens.
        #expect(summary.steps > 20 && summary.steps < 50, "\(summary.steps) steps")
        #expect(trainer.progress.loader.nextOffset == Int64(announcements.count))
        #expect(trainer.progress.firstShard == announcements.first?.name && trainer.progress.lastShard == announcements.last?.name)
    }

    @Test func trainFileReadsEverySectionAndNamesBadKeys() throws {
        let yaml = """
            kafka: { bootstrap.servers: "${BROKER:-localhost:9092}" }
            input: { topic: shards, shards_root: /data, exit_at_end: true }
            output: /models/a
            model: { layers: 6, dim: 256, context: 64 }
            training: { steps: 300, batch: 8, accumulation: 2, threads: 1, recompute: true, checkpoint_every: 50 }
            optimizer: { lr: 6e-4, min_lr: 6e-5, warmup: 20, clip: 0.5 }
            loader: { rank: 1, world_size: 2, holdout: 0 }
            """
        let file = try TrainFile.load(yaml: yaml, file: "train.yaml", environment: [:])
        #expect(file.kafka["bootstrap.servers"] == "localhost:9092")
        #expect(file.topic == "shards" && file.shardsRoot == "/data" && file.exitAtEnd && file.output == "/models/a")
        let c = file.configuration
        #expect(c.model == GPTConfiguration(contextLength: 64, layers: 6, channels: 256, heads: 8))
        #expect(c.loader.contextLength == 64 && c.loader.batchSize == 8 && c.loader.rank == 1 && c.loader.worldSize == 2)
        #expect(c.steps == 300 && c.accumulation == 2 && c.threads == 1 && c.recompute && c.checkpointEvery == 50)
        #expect(abs(c.schedule.maxRate - 6e-4) < 1e-9 && c.schedule.warmupSteps == 20 && c.optimizer.clipNorm == 0.5)
        #expect(c.problem == nil)
        #expect { try TrainFile.load(yaml: "model: { layer: 3 }", file: "t.yaml", environment: [:]) } throws: { error in
            "\(error)".contains("t.yaml") && "\(error)".contains("model.layer")
        }
        #expect(throws: ConfigError.self) { try TrainFile.load(yaml: "loader: { rank: 2, world_size: 2 }", file: "t.yaml", environment: [:]) }
    }

    static func pythonHas(_ module: String, _ python: String) -> Bool {
        (try? runProcess(python, ["-c", "import \(module)"])) != nil
    }

    static func runProcess(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TrainError("\(executable) exited with \(process.terminationStatus)") }
        return String(decoding: data, as: UTF8.self)
    }
}
