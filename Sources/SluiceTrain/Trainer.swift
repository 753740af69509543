public import Foundation
internal import SluiceShards

/// Everything that decides a training run.
public struct TrainingConfiguration: Sendable, Equatable, Codable {
    public var model = GPTConfiguration()
    public var optimizer = AdamWConfiguration()
    public var schedule = LearningRateSchedule()
    /// Split, shuffle, packing and hold-out (its context length and batch size are the model's and the step's).
    public var loader = LoaderConfiguration()
    /// Micro-batches whose gradients are summed into one optimizer step.
    public var accumulation = 1
    /// Optimizer steps to reach (a resumed run continues up to this many).
    public var steps = 1000
    /// Seeds the initial weights (the loader has its own seed).
    public var seed: UInt64 = 1337
    public var threads = 2
    /// Activation checkpointing (recompute blocks in backward).
    public var recompute = false
    /// Write a checkpoint every this many steps (and at the end).
    public var checkpointEvery = 100
    /// Checkpoints kept; older ones are removed.
    public var keepCheckpoints = 3
    /// Validate every this many steps (0: only at checkpoints).
    public var validateEvery = 0
    /// Windows of held-out text used for validation loss.
    public var validationWindows = 32
    /// The step the learning-rate schedule starts at (a retraining round continues a model's step count but
    /// runs its own warm-up and decay).
    public var scheduleStart = 0

    public init() {
        loader.holdout = 50
        loader.batchSize = 16
        loader.seed = 1
    }

    /// The first problem in plain words, or nil.
    public var problem: String? {
        if let problem = model.problem { return problem }
        if loader.contextLength < 1 || loader.contextLength > model.contextLength {
            return "the training sequence length (\(loader.contextLength)) must be 1…\(model.contextLength)"
        }
        if loader.batchSize < 1 { return "batch size must be at least 1" }
        if accumulation < 1 { return "accumulation must be at least 1" }
        if steps < 1 { return "steps must be at least 1" }
        if threads < 1 || threads > 64 { return "threads must be 1…64" }
        if checkpointEvery < 1 { return "checkpoint_every must be at least 1" }
        if keepCheckpoints < 1 { return "keep_checkpoints must be at least 1" }
        if loader.holdout < 0 { return "holdout must be 0 (none) or more" }
        if schedule.maxRate <= 0 || schedule.minRate < 0 { return "learning rates must be positive" }
        return nil
    }

    enum CodingKeys: String, CodingKey {
        case model, optimizer, schedule, loader, accumulation, steps, seed, threads, recompute
        case checkpointEvery = "checkpoint_every", keepCheckpoints = "keep_checkpoints"
        case validateEvery = "validate_every", validationWindows = "validation_windows", scheduleStart = "schedule_start"
    }

    /// Keys added in later versions take their defaults, so older checkpoints stay readable.
    public init(from decoder: any Decoder) throws {
        self.init()
        let values = try decoder.container(keyedBy: CodingKeys.self)
        model = try values.decodeIfPresent(GPTConfiguration.self, forKey: .model) ?? model
        optimizer = try values.decodeIfPresent(AdamWConfiguration.self, forKey: .optimizer) ?? optimizer
        schedule = try values.decodeIfPresent(LearningRateSchedule.self, forKey: .schedule) ?? schedule
        loader = try values.decodeIfPresent(LoaderConfiguration.self, forKey: .loader) ?? loader
        accumulation = try values.decodeIfPresent(Int.self, forKey: .accumulation) ?? accumulation
        steps = try values.decodeIfPresent(Int.self, forKey: .steps) ?? steps
        seed = try values.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        threads = try values.decodeIfPresent(Int.self, forKey: .threads) ?? threads
        recompute = try values.decodeIfPresent(Bool.self, forKey: .recompute) ?? recompute
        checkpointEvery = try values.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? checkpointEvery
        keepCheckpoints = try values.decodeIfPresent(Int.self, forKey: .keepCheckpoints) ?? keepCheckpoints
        validateEvery = try values.decodeIfPresent(Int.self, forKey: .validateEvery) ?? validateEvery
        validationWindows = try values.decodeIfPresent(Int.self, forKey: .validationWindows) ?? validationWindows
        scheduleStart = try values.decodeIfPresent(Int.self, forKey: .scheduleStart) ?? scheduleStart
    }
}

/// Where a run stands; saved beside every checkpoint.
public struct TrainingProgress: Sendable, Equatable, Codable {
    public var step = 0
    public var tokens = 0
    /// Passes over a finite set of shards (a curated directory) completed.
    public var epoch = 0
    public var loader = LoaderState()
    public var lastLoss: Float?
    public var validationLoss: Float?
    /// Shards trained on, first and last by announcement order.
    public var firstShard: String?
    public var lastShard: String?
    /// The dataset version the run is pinned to (`sluice train --dataset-version`), if any.
    public var datasetVersion: Int?
    public init() {}

    enum CodingKeys: String, CodingKey {
        case step, tokens, epoch, loader, lastLoss = "last_loss", validationLoss = "validation_loss"
        case firstShard = "first_shard", lastShard = "last_shard", datasetVersion = "dataset_version"
    }
}

/// One optimizer step's numbers.
public struct StepReport: Sendable {
    public var step: Int
    public var loss: Float
    public var learningRate: Float
    public var gradientNorm: Float
    public var tokens: Int
    public var seconds: Double
}

/// Drives a model and its optimizer: steps from batches, validation, and checkpoints in safetensors.
///
/// A checkpoint is a directory `checkpoints/step-NNNNNNNN/` with `model.safetensors` (parameters, PyTorch names,
/// the model configuration in its metadata), `optimizer.safetensors` (both AdamW moments) and `state.json`
/// (training configuration, progress and the loader's exact position). `checkpoints/LATEST` names the newest.
public final class Trainer: @unchecked Sendable {
    // @unchecked: one run drives a trainer.
    public let configuration: TrainingConfiguration
    public let model: GPT
    public let optimizer: AdamW
    public var progress: TrainingProgress

    public init(configuration: TrainingConfiguration) {
        self.configuration = configuration
        model = GPT(configuration: configuration.model, seed: configuration.seed)
        model.threads = configuration.threads
        model.recomputesActivations = configuration.recompute
        optimizer = AdamW(for: model, configuration: configuration.optimizer)
        progress = TrainingProgress()
        setBLASThreads(1)
    }

    /// Resumes from a checkpoint directory. The run's configuration must describe the same model; loader split
    /// and shuffle settings must match too, or the resumed stream would not be the one that was interrupted.
    public init(resumingFrom checkpoint: URL, configuration: TrainingConfiguration) throws(TrainError) {
        let saved = try Self.readState(checkpoint)
        guard saved.configuration.model == configuration.model else {
            throw TrainError("checkpoint \(checkpoint.path) holds a different model (\(saved.configuration.model)) than configured (\(configuration.model))")
        }
        guard saved.configuration.loader == configuration.loader else {
            throw TrainError("checkpoint \(checkpoint.path) was trained with different loader settings (rank, world size, seed, shuffle, batch, context or holdout)")
        }
        self.configuration = configuration
        model = try GPT.load(checkpoint.appendingPathComponent("model.safetensors"))
        model.threads = configuration.threads
        model.recomputesActivations = configuration.recompute
        optimizer = AdamW(for: model, configuration: configuration.optimizer)
        let moments = try SafeTensors(contentsOf: checkpoint.appendingPathComponent("optimizer.safetensors"))
        var m: [Float] = [], v: [Float] = []
        for tensor in model.layout.tensors {
            m += try moments.floats("m.\(tensor.name)")
            v += try moments.floats("v.\(tensor.name)")
        }
        guard let steps = Int(moments.metadata["steps"] ?? "") else { throw TrainError("\(checkpoint.path): optimizer step count missing") }
        optimizer.restore(m: m, v: v, steps: steps)
        progress = saved.progress
        setBLASThreads(1)
    }

    /// One optimizer step over `batches` (one per accumulation micro-batch).
    public func step(_ batches: [TrainingBatch]) -> StepReport {
        let start = monotonicNanoseconds()
        let b = configuration.loader.batchSize, t = configuration.loader.contextLength
        model.zeroGradients()
        var loss: Float = 0
        for batch in batches {
            loss += model.forward(inputs: batch.inputs, targets: batch.targets, batch: b, time: t) / Float(batches.count)
            model.backward(scale: 1 / Float(batches.count))
        }
        let rate = configuration.schedule.rate(at: progress.step - configuration.scheduleStart)
        let norm = optimizer.step(model, learningRate: rate)
        progress.step += 1
        progress.tokens += batches.count * b * t
        progress.lastLoss = loss
        return StepReport(
            step: progress.step, loss: loss, learningRate: rate, gradientNorm: norm, tokens: batches.count * b * t,
            seconds: Double(monotonicNanoseconds() - start) / 1e9)
    }

    // MARK: Checkpoints

    struct SavedState: Codable {
        var configuration: TrainingConfiguration
        var progress: TrainingProgress
    }

    public static func checkpointsDirectory(in output: URL) -> URL { output.appendingPathComponent("checkpoints") }

    /// The newest checkpoint under `output`, if any: the one `LATEST` names, or (when LATEST is missing or names
    /// an incomplete directory, as after a crash mid-write) the highest complete `step-*` directory.
    public static func latestCheckpoint(in output: URL) -> URL? {
        let directory = checkpointsDirectory(in: output)
        let files = FileManager.default
        func complete(_ url: URL) -> Bool {
            ["state.json", "model.safetensors", "optimizer.safetensors"].allSatisfy {
                files.fileExists(atPath: url.appendingPathComponent($0).path)
            }
        }
        if let name = try? String(contentsOf: directory.appendingPathComponent("LATEST"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !name.isEmpty,
            complete(directory.appendingPathComponent(name))
        {
            return directory.appendingPathComponent(name)
        }
        let names = ((try? files.contentsOfDirectory(atPath: directory.path)) ?? []).filter { $0.hasPrefix("step-") }.sorted()
        return names.reversed().map { directory.appendingPathComponent($0) }.first(where: complete)
    }

    static func readState(_ checkpoint: URL) throws(TrainError) -> SavedState {
        let url = checkpoint.appendingPathComponent("state.json")
        do {
            return try JSONDecoder().decode(SavedState.self, from: Data(contentsOf: url))
        } catch {
            throw TrainError("cannot read \(url.path): \(error)")
        }
    }

    /// Writes a checkpoint for the current step (temporary directory, fsync, rename), points LATEST at it, and
    /// removes the oldest beyond `keepCheckpoints`. Returns its directory.
    @discardableResult
    public func saveCheckpoint(in output: URL) throws(TrainError) -> URL {
        let directory = Self.checkpointsDirectory(in: output)
        let name = String(format: "step-%08d", progress.step)
        let final = directory.appendingPathComponent(name)
        let temporary = directory.appendingPathComponent(".\(name).tmp")
        let files = FileManager.default
        do {
            try files.createDirectory(at: directory, withIntermediateDirectories: true)
            if files.fileExists(atPath: temporary.path) { try files.removeItem(at: temporary) }
            try files.createDirectory(at: temporary, withIntermediateDirectories: true)
        } catch {
            throw TrainError("cannot create \(temporary.path): \(error.localizedDescription)")
        }
        try model.save(to: temporary.appendingPathComponent("model.safetensors"), metadata: ["step": String(progress.step)])
        var moments: [SafeTensors.Source] = []
        for tensor in model.layout.tensors {
            moments.append(.init(name: "m.\(tensor.name)", shape: tensor.shape, values: .init(start: optimizer.m.pointer + tensor.offset, count: tensor.count)))
            moments.append(.init(name: "v.\(tensor.name)", shape: tensor.shape, values: .init(start: optimizer.v.pointer + tensor.offset, count: tensor.count)))
        }
        try SafeTensors.write(moments, metadata: ["steps": String(optimizer.steps)], to: temporary.appendingPathComponent("optimizer.safetensors"))
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(SavedState(configuration: configuration, progress: progress))
                .write(to: temporary.appendingPathComponent("state.json"))
            try Durable.syncDirectory(temporary, contents: true)
            if files.fileExists(atPath: final.path) { try files.removeItem(at: final) }
            try Durable.rename(temporary, to: final)
            try Durable.writeAtomically(Data((name + "\n").utf8), to: directory.appendingPathComponent("LATEST"))
        } catch let error as TrainError {
            throw error
        } catch {
            throw TrainError("cannot write checkpoint \(final.path): \(error.localizedDescription)")
        }
        // Keep the newest few; remove what a crash mid-write left.
        let listing = (try? files.contentsOfDirectory(atPath: directory.path)) ?? []
        for leftover in listing where leftover.hasPrefix(".step-") && leftover.hasSuffix(".tmp") {
            try? files.removeItem(at: directory.appendingPathComponent(leftover))
        }
        let existing = listing.filter { $0.hasPrefix("step-") }.sorted()
        for old in existing.dropLast(configuration.keepCheckpoints) where old != name {
            try? files.removeItem(at: directory.appendingPathComponent(old))
        }
        return final
    }
}

extension GPT {
    /// Writes the parameters as safetensors with PyTorch names; the metadata carries the configuration
    /// (`sluice.model`) so the file alone is enough to load the model.
    public func save(to url: URL, metadata: [String: String] = [:]) throws(TrainError) {
        var metadata = metadata
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        metadata["sluice.model"] = String(decoding: (try? encoder.encode(configuration)) ?? Data(), as: UTF8.self)
        metadata["format"] = "pt"
        let sources = layout.tensors.map {
            SafeTensors.Source(name: $0.name, shape: $0.shape, values: .init(start: parameters.pointer + $0.offset, count: $0.count))
        }
        try SafeTensors.write(sources, metadata: metadata, to: url)
    }

    /// Loads a model written by ``save(to:metadata:)``, or a checkpoint directory's `model.safetensors`.
    public static func load(_ url: URL) throws(TrainError) -> GPT {
        var file = url
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            file = url.appendingPathComponent("model.safetensors")
        }
        let tensors = try SafeTensors(contentsOf: file)
        guard let text = tensors.metadata["sluice.model"],
            let configuration = try? JSONDecoder().decode(GPTConfiguration.self, from: Data(text.utf8))
        else { throw TrainError("\(file.path) has no sluice.model configuration in its metadata") }
        if let problem = configuration.problem { throw TrainError("\(file.path): \(problem)") }
        let layout = ParameterLayout(configuration)
        let quantized = try QuantizedWeights.load(tensors, layout: layout)
        var values: [Float] = []
        values.reserveCapacity(layout.count)
        for tensor in layout.tensors {
            guard tensors.entries[tensor.name]?.shape == tensor.shape else {
                throw TrainError("\(file.path): tensor \(tensor.name) is missing or has the wrong shape")
            }
            if let matrix = quantized?.matrices[tensor.offset] {
                // A quantized file loads as the float model it computes.
                for r in 0..<matrix.rows {
                    for c in 0..<matrix.columns { values.append(Float(matrix.values[r * matrix.columns + c]) * matrix.scales[r]) }
                }
            } else {
                values += try tensors.floats(tensor.name)
            }
        }
        let model = GPT(configuration: configuration, parameters: values)
        model.quantized = quantized
        return model
    }
}

/// fsync and rename helpers for checkpoints.
enum Durable {
    /// fsyncs the directory entry itself, and with `contents` every file in it.
    static func syncDirectory(_ url: URL, contents: Bool = false) throws(TrainError) {
        let names = contents ? ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []) : []
        for name in names + ["."] {
            let descriptor = open(url.appendingPathComponent(name).path, O_RDONLY)
            guard descriptor >= 0 else { throw TrainError("cannot open \(name) in \(url.path) to sync it") }
            fsync(descriptor)
            close(descriptor)
        }
    }

    static func rename(_ from: URL, to: URL) throws(TrainError) {
        guard Foundation.rename(from.path, to.path) == 0 else {
            throw TrainError("cannot rename \(from.path) to \(to.path): \(String(cString: strerror(errno)))")
        }
        try syncDirectory(to.deletingLastPathComponent())
    }

    static func writeAtomically(_ data: Data, to url: URL) throws(TrainError) {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        do { try data.write(to: temporary) } catch { throw TrainError("cannot write \(temporary.path): \(error.localizedDescription)") }
        try rename(temporary, to: url)
    }
}
