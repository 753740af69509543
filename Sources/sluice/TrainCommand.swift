import ArgumentParser
import Foundation
import SluiceConfig
import SluiceKafka
import SluiceShards
import SluiceTrain

struct TrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the reference byte-level GPT on curated shards, from a directory or the shards topic.",
        discussion: """
            Quick run on a curated directory (no Kafka, no config file):
              sluice train --shards curated/ --output model/ --steps 500

            From the shards topic as a long-running consumer (config/train.yaml shows every key):
              sluice train --config train.yaml

            Checkpoints go to OUTPUT/checkpoints/step-NNNNNNNN/ (model.safetensors with PyTorch names, \
            optimizer.safetensors, state.json with the loader's exact position). When OUTPUT already holds a \
            checkpoint, training resumes from the newest and yields exactly the batches it would have without the \
            stop. SIGINT or SIGTERM stops after the current step and writes a checkpoint. Progress goes to standard \
            error; a JSON summary to standard output.
            """)

    @Option(help: ArgumentHelp("A train.yaml file (flags win over it).", valueName: "file")) var config: String?
    @Option(help: ArgumentHelp("Train on the sealed shards of this curated directory.", valueName: "dir")) var shards: String?
    @Option(help: ArgumentHelp(
        "With --shards: train on this dataset version (sluice dataset snapshot); the checkpoints record it and a resume must name the same one.",
        valueName: "n")) var datasetVersion: Int?
    @Option(help: ArgumentHelp("Where checkpoints go.", valueName: "dir")) var output: String?
    @Option(help: "Optimizer steps to reach (a resumed run continues up to this).") var steps: Int?
    @Option(help: "Transformer blocks (default 4).") var layers: Int?
    @Option(help: "Model width (default 128).") var dim: Int?
    @Option(help: "Attention heads (default dim / 32).") var heads: Int?
    @Option(help: "Context length in bytes (default 128).") var context: Int?
    @Option(help: "Sequences per micro-batch (default 16).") var batch: Int?
    @Option(help: "Micro-batches per optimizer step (default 1).") var accumulate: Int?
    @Option(help: "Peak learning rate (default 1e-3).") var lr: Float?
    @Option(help: "Final learning rate of the cosine schedule (default lr / 10).") var minLr: Float?
    @Option(help: "Warm-up steps (default min(100, steps / 10)).") var warmup: Int?
    @Option(help: "Threads (default 2).") var threads: Int?
    @Option(help: "Seed of the initial weights.") var seed: UInt64?
    @Option(help: "Seed of the shard order and shuffle.") var dataSeed: UInt64?
    @Option(help: "Hold out one sample in N for validation (0: none; default 50).") var holdout: Int?
    @Option(help: "Checkpoint every N steps (default 100).") var checkpointEvery: Int?
    @Flag(help: "Recompute each block's activations in backward (less memory, more compute).") var recompute = false
    @Option(help: ArgumentHelp("Kafka bootstrap servers: follow the shards topic.", valueName: "host:port")) var bootstrap: String?
    @Option(help: "The shards topic (default sluice.shards).") var topic: String?
    @Option(help: ArgumentHelp("Resolve relative shard paths of announcements here.", valueName: "dir")) var shardsRoot: String?
    @Flag(help: "With the shards topic: stop when it is drained instead of waiting for new shards.") var exitAtEnd = false
    @Option(name: [.customShort("X"), .customLong("property")], help: ArgumentHelp("A librdkafka property (repeatable).", valueName: "key=value"))
    var properties: [String] = []

    func run() async throws {
        var file = TrainFile()
        if let config {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else { throw CommandError("cannot read \(config)") }
            do { file = try TrainFile.load(yaml: text, file: config, environment: ProcessInfo.processInfo.environment) } catch {
                throw CommandError("\(error)")
            }
        }
        var c = file.configuration
        if let layers { c.model.layers = layers }
        if let dim {
            c.model.channels = dim
            if heads == nil { c.model.heads = max(1, dim / 32) }
        }
        if let heads { c.model.heads = heads }
        if let context { c.model.contextLength = context }
        c.loader.contextLength = c.model.contextLength
        if let batch { c.loader.batchSize = batch }
        if let accumulate { c.accumulation = accumulate }
        if let steps { c.steps = steps }
        if let threads { c.threads = threads }
        if let seed { c.seed = seed }
        if let dataSeed { c.loader.seed = dataSeed }
        if let holdout { c.loader.holdout = holdout }
        if let checkpointEvery { c.checkpointEvery = checkpointEvery }
        if recompute { c.recompute = true }
        if let lr {
            c.schedule.maxRate = lr
            if minLr == nil { c.schedule.minRate = lr / 10 }
        }
        if let minLr { c.schedule.minRate = minLr }
        // The schedule spans the run unless the file set its own length.
        if steps != nil || !file.scheduleLengthGiven || c.schedule.totalSteps == LearningRateSchedule().totalSteps {
            c.schedule.totalSteps = c.steps
        }
        if let warmup { c.schedule.warmupSteps = warmup } else if c.schedule.warmupSteps == LearningRateSchedule().warmupSteps {
            c.schedule.warmupSteps = min(100, max(1, c.steps / 10))
        }
        if let problem = c.problem { throw ValidationError(problem) }

        guard let outputPath = output ?? file.output else {
            throw ValidationError("give --output DIR (or output: in the config file) for the checkpoints")
        }
        let outputURL = URL(fileURLWithPath: outputPath)

        let data: TrainingData
        var kafka = file.kafka
        for property in properties {
            guard let equals = property.firstIndex(of: "="), equals != property.startIndex else {
                throw ValidationError("-X expects key=value, got '\(property)'")
            }
            kafka[String(property[..<equals])] = String(property[property.index(after: equals)...])
        }
        if let bootstrap { kafka["bootstrap.servers"] = bootstrap }
        if let shards = shards ?? file.directory {
            guard bootstrap == nil else { throw ValidationError("give either --shards DIR or --bootstrap, not both") }
            let url = URL(fileURLWithPath: shards)
            guard FileManager.default.fileExists(atPath: url.appendingPathComponent("index.sqlite").path) else {
                throw CommandError("\(shards) is not a curated directory (no index.sqlite); make one with `sluice curate` or `sluice pipeline`")
            }
            if let datasetVersion {
                let index = try ShardsCommand.openIndex(shards)
                let versions = try catching { try index.versions() }
                guard let manifest = versions.first(where: { $0.version == datasetVersion }) else {
                    throw CommandError("\(shards) has no dataset version \(datasetVersion) (versions: \(versions.map { "\($0.version)" }.joined(separator: ", ")); make one with `sluice dataset snapshot`)")
                }
                let current = try catching { try index.currentShards(of: manifest) }
                data = .shards(current.map { ShardAnnouncement(name: $0.name, path: $0.path, sha256: $0.sha256, samples: $0.samples) }, baseDirectory: url)
            } else {
                data = .directory(url)
            }
        } else if datasetVersion != nil {
            throw ValidationError("--dataset-version needs --shards DIR")
        } else if kafka["bootstrap.servers"] != nil {
            var configuration = KafkaConfiguration()
            for (key, value) in kafka { configuration[key] = value }
            data = .stream(
                configuration, topic: topic ?? file.topic, baseDirectory: (shardsRoot ?? file.shardsRoot).map { URL(fileURLWithPath: $0) },
                exitAtEnd: exitAtEnd || file.exitAtEnd)
        } else {
            throw ValidationError("no training data: give --shards DIR, or --bootstrap HOST:PORT to follow the shards topic (or a config file with either)")
        }

        let trainer: Trainer
        if let latest = Trainer.latestCheckpoint(in: outputURL) {
            do { trainer = try Trainer(resumingFrom: latest, configuration: c) } catch { throw CommandError("\(error.reason)") }
            Terminal.err("resuming from \(latest.path) (step \(trainer.progress.step))")
            if trainer.progress.step >= c.steps {
                Terminal.err("already at step \(trainer.progress.step) of \(c.steps); raise --steps to train further")
            }
        } else {
            trainer = Trainer(configuration: c)
            Terminal.err(String(
                format: "model: %d layers, d=%d, %d heads, context %d: %.2f M parameters; %d threads", c.model.layers,
                c.model.channels, c.model.heads, c.model.contextLength, Double(trainer.model.parameterCount) / 1e6, c.threads))
        }
        if trainer.progress.step > 0 && trainer.progress.datasetVersion != datasetVersion {
            throw CommandError(
                "the checkpoints in \(outputURL.path) were trained on \(trainer.progress.datasetVersion.map { "dataset version \($0)" } ?? "no pinned version"); "
                    + "resume with the same --dataset-version or start a new --output")
        }
        trainer.progress.datasetVersion = datasetVersion
        let run = TrainingRun(trainer: trainer, data: data, output: outputURL) { Terminal.err($0) }
        let signalSources = stopOnSignals("stopping after this step; writing a checkpoint (again to exit at once)") { run.requestStop() }
        defer { signalSources.forEach { $0.cancel() } }
        let summary: TrainingRun.Summary
        do { summary = try await run.run() } catch let error as TrainError { throw CommandError(error.reason) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(summary), as: UTF8.self))
    }
}
