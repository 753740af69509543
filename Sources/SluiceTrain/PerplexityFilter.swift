internal import Foundation
public import SluiceKafka
public import Logging
internal import Synchronization

/// Perplexity-based quality filtering with the current model: a document whose perplexity per byte (over its
/// first `maxBytes` bytes) exceeds `maxRatio` × the model's validation perplexity is dropped.
public struct PerplexityConfiguration: Sendable, Equatable {
    /// A model to start with: a model.safetensors file, a checkpoint or a version directory.
    public var model: String?
    /// Follow this topic (sluice.models) and reload when a new model is announced (streaming pipeline).
    public var modelsTopic: String?
    public var maxRatio = 1.2
    /// Bytes of each document scored (the first ones).
    public var maxBytes = 256
    /// The model's validation perplexity, when the model file does not come with it.
    public var referencePerplexity: Double?
    public init() {}
}

/// A loaded model and the perplexity it is judged against.
public struct ScoringModel: Sendable {
    public var name: String
    public var configuration: GPTConfiguration
    public var parameters: [Float]
    public var referencePerplexity: Double

    /// Loads `path` (file or checkpoint/version directory). The reference perplexity is `override`, else
    /// exp(validation loss) from the checkpoint's state.json or the models-topic event.
    public static func load(_ path: String, referencePerplexity override: Double? = nil, validationLoss: Float? = nil)
        throws(TrainError) -> ScoringModel
    {
        let url = URL(fileURLWithPath: path)
        let model = try GPT.load(url)
        var reference = override ?? validationLoss.map { exp(Double($0)) }
        if reference == nil {
            var isDirectory: ObjCBool = false
            let directory = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
                ? url : url.deletingLastPathComponent()
            if let state = try? Trainer.readState(directory), let loss = state.progress.validationLoss { reference = exp(Double(loss)) }
        }
        guard let reference, reference.isFinite, reference > 0 else {
            throw TrainError("\(path) comes without a validation loss; set perplexity.reference_perplexity")
        }
        return ScoringModel(name: path, configuration: model.configuration, parameters: model.allParameters, referencePerplexity: reference)
    }
}

extension ScoringModel {
    /// (step, validation loss) of every checkpoint beside `path` (a checkpoint directory or its model file), oldest first.
    public static func validationCurve(near path: String) -> [(Int, Float)] {
        var url = URL(fileURLWithPath: path)
        if url.pathExtension == "safetensors" { url.deleteLastPathComponent() }
        let parent = url.deletingLastPathComponent()
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []).filter { $0.hasPrefix("step-") || $0.hasPrefix("v0") }.sorted()
        return names.compactMap { name in
            guard let state = try? Trainer.readState(parent.appendingPathComponent(name)), let loss = state.progress.validationLoss else { return nil }
            return (state.progress.step, loss)
        }.sorted { $0.0 < $1.0 }
    }

    /// The validation loss recorded beside a model file or in a checkpoint directory, if any.
    public static func validationLoss(at path: String) -> Float? {
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        let directory = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? url : url.deletingLastPathComponent()
        return (try? Trainer.readState(directory))?.progress.validationLoss
    }
}

/// The current scoring model, shared by every worker; replaced when a new model is announced.
public final class ModelSlot: Sendable {
    private let state = Mutex<(version: Int, model: ScoringModel?)>((0, nil))
    public init(_ model: ScoringModel? = nil) { if let model { set(model) } }
    public func set(_ model: ScoringModel) { state.withLock { $0 = ($0.version + 1, model) } }
    public var current: (version: Int, model: ScoringModel?) { state.withLock { $0 } }
}

/// One worker's scorer: its own single-threaded copy of the slot's model, rebuilt when the slot changes.
public struct PerplexityScorer {
    public let configuration: PerplexityConfiguration
    public let slot: ModelSlot
    private var version = 0
    private var model: GPT?
    private var reference = 0.0

    public init(configuration: PerplexityConfiguration, slot: ModelSlot) {
        self.configuration = configuration
        self.slot = slot
    }

    public enum Verdict: Equatable {
        /// No model yet, or too little text to score.
        case unscored
        case keep(perplexity: Double)
        case drop(perplexity: Double, limit: Double)
    }

    /// Scores the first `maxBytes` bytes as windows of the model's context, one batch.
    public mutating func judge(_ text: [UInt8]) -> Verdict {
        let (currentVersion, current) = slot.current
        guard let current else { return .unscored }
        if currentVersion != version || model == nil {
            let gpt = GPT(configuration: current.configuration, parameters: current.parameters)
            gpt.threads = 1
            model = gpt
            reference = current.referencePerplexity
            version = currentVersion
        }
        guard let model, text.count >= 2 else { return .unscored }
        let t = model.configuration.contextLength
        let windows = max(1, (configuration.maxBytes - 1 + t - 1) / t)
        let used = min(text.count, windows * t + 1)
        var inputs = [UInt8](repeating: 0, count: windows * t), targets = inputs
        for i in 0..<(used - 1) {
            inputs[i] = text[i]
            targets[i] = text[i + 1]
        }
        _ = model.forward(inputs: inputs, targets: targets, batch: windows, time: t)
        let losses = model.lastLosses
        var sum = 0.0
        for i in 0..<(used - 1) { sum += Double(losses[i]) }
        let perplexity = exp(sum / Double(used - 1))
        let limit = configuration.maxRatio * reference
        return perplexity > limit ? .drop(perplexity: perplexity, limit: limit) : .keep(perplexity: perplexity)
    }
}

/// Follows the models topic and puts every announced model into a slot: at start the newest one on the topic
/// (``start(kafka:topic:slot:logger:)`` returns once it is loaded, so the first record is judged by it), then
/// each new one. A model that cannot be loaded is logged and skipped; the slot keeps the previous model.
public final class ModelFollower: Sendable {
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    public init() {}

    /// Starts following; returns when the newest model on the topic is in the slot (or the topic is empty, or
    /// after `timeout` without an answer).
    public func start(kafka: KafkaConfiguration, topic: String, slot: ModelSlot, logger: Logger, timeout: Duration = .seconds(20)) async {
        let ready = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let signalReady: @Sendable () -> Void = { ready.withLock { $0?.resume(); $0 = nil } }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            ready.withLock { $0 = continuation }
            let started = Task {
                defer { signalReady() }
                do {
                    var configuration = kafka
                    configuration.properties.removeValue(forKey: "group.id")
                    configuration.setDefault("fetch.wait.max.ms", "200")
                    let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
                    let partition = TopicPartition(topic: topic, partition: 0)
                    let high = try await consumer.watermarks(of: partition).high
                    try await consumer.assign([TopicPartitionOffset(topic: topic, partition: 0, offset: max(0, high - 1))])
                    if high == 0 { signalReady() }
                    var records = consumer.records.makeAsyncIterator()
                    while !Task.isCancelled, let record = try await records.next() {
                        defer { if record.offset >= high - 1 { signalReady() } }
                        guard let value = record.valueBytes,
                            let event = try? JSONDecoder().decode(ModelVersion.self, from: Data(value)), event.status == "accepted"
                        else { continue }
                        do {
                            slot.set(try ScoringModel.load(event.model, validationLoss: event.validationLoss))
                            logger.notice("perplexity filter now uses model version \(event.version) (validation perplexity \(String(format: "%.2f", event.validationPerplexity)))")
                        } catch {
                            logger.error("cannot load model version \(event.version) from \(event.model): \(error); keeping the previous model")
                        }
                    }
                    await consumer.close()
                } catch {
                    logger.error("the models-topic follower stopped: \(error)")
                }
            }
            task.withLock { $0 = started }
            Task {
                try? await Task.sleep(for: timeout)
                signalReady()
            }
        }
    }

    public func stop() { task.withLock { $0?.cancel() } }
}
