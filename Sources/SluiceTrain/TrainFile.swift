public import SluiceConfig
internal import Foundation

/// A `train.yaml` file: model, optimizer, loader and training settings, where the data comes from, and where
/// checkpoints go. Every key is optional; unknown keys are errors naming the file and key.
///
/// ```yaml
/// kafka: { bootstrap.servers: "${SLUICE_BOOTSTRAP:-127.0.0.1:9092}" }   # every librdkafka property passes through
/// input: { topic: sluice.shards, shards_root: ./curated, exit_at_end: false }   # or { directory: ./curated }
/// output: ./model
/// model: { layers: 4, dim: 128, heads: 4, context: 128 }
/// training: { steps: 2000, batch: 16, accumulation: 1, seed: 1337, threads: 2, recompute: false,
///             checkpoint_every: 200, keep_checkpoints: 3, validate_every: 0, validation_windows: 32 }
/// optimizer: { lr: 1e-3, min_lr: 1e-4, warmup: 100, weight_decay: 0.1, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, clip: 1.0 }
/// loader: { rank: 0, world_size: 1, seed: 1, shuffle_buffer: 1024, holdout: 50 }
/// ```
public struct TrainFile: Sendable {
    public var configuration = TrainingConfiguration()
    /// librdkafka properties (the `kafka` section).
    public var kafka: [String: String] = [:]
    public var topic = "sluice.shards"
    public var shardsRoot: String?
    public var directory: String?
    public var exitAtEnd = false
    public var output: String?
    /// The `retrain` section: the controller's policy and the service's replay and acceptance rule.
    public var policy = RetrainPolicy()
    public var replayFraction = 0.25
    public var regressionTolerance: Float = 0
    public var modelsTopic = "sluice.models"
    public var trainTopic = "sluice.train"
    public var stateFile: String?

    /// Whether `training.steps` was given (the schedule's length follows it unless `optimizer.total_steps` is).
    public var scheduleLengthGiven = false

    public init() {}

    public static func load(yaml: String, file: String, environment: [String: String]) throws(ConfigError) -> TrainFile {
        var result = TrainFile()
        let text = try ConfigText.interpolate(yaml, file: file, environment: environment)
        guard let root = try ConfigText.sections(ofYAML: text, file: file) else { return result }
        var reader = SectionReader(file: file)
        try reader.keys(root, ["kafka", "input", "output", "model", "training", "optimizer", "loader", "retrain"])
        if let output = try reader.string(root, "output") { result.output = output }
        for (section, value) in root where section != "output" {
            guard let fields = value as? [String: Any] else {
                throw ConfigError(file: file, path: section, reason: "expected a mapping")
            }
            reader.section = section
            var c = result.configuration
            switch section {
            case "kafka":
                for (key, value) in fields { result.kafka[key] = "\(value)" }
            case "input":
                try reader.keys(fields, ["topic", "shards_root", "directory", "exit_at_end"])
                if let v = try reader.string(fields, "topic") { result.topic = v }
                result.shardsRoot = try reader.string(fields, "shards_root")
                result.directory = try reader.string(fields, "directory")
                if let v = try reader.bool(fields, "exit_at_end") { result.exitAtEnd = v }
            case "model":
                try reader.keys(fields, ["layers", "dim", "heads", "context"])
                if let v = try reader.int(fields, "layers", 1...256) { c.model.layers = v }
                if let v = try reader.int(fields, "dim", 1...65536) { c.model.channels = v }
                if let v = try reader.int(fields, "heads", 1...1024) { c.model.heads = v } else { c.model.heads = max(1, c.model.channels / 32) }
                if let v = try reader.int(fields, "context", 1...65536) { c.model.contextLength = v }
                c.loader.contextLength = c.model.contextLength
            case "training":
                try reader.keys(fields, ["steps", "batch", "accumulation", "seed", "threads", "recompute", "checkpoint_every",
                                         "keep_checkpoints", "validate_every", "validation_windows"])
                if let v = try reader.int(fields, "steps", 1...Int.max) { c.steps = v; result.scheduleLengthGiven = true }
                if let v = try reader.int(fields, "batch", 1...65536) { c.loader.batchSize = v }
                if let v = try reader.int(fields, "accumulation", 1...65536) { c.accumulation = v }
                if let v = try reader.int(fields, "seed", 0...Int.max) { c.seed = UInt64(v) }
                if let v = try reader.int(fields, "threads", 1...64) { c.threads = v }
                if let v = try reader.bool(fields, "recompute") { c.recompute = v }
                if let v = try reader.int(fields, "checkpoint_every", 1...Int.max) { c.checkpointEvery = v }
                if let v = try reader.int(fields, "keep_checkpoints", 1...1000) { c.keepCheckpoints = v }
                if let v = try reader.int(fields, "validate_every", 0...Int.max) { c.validateEvery = v }
                if let v = try reader.int(fields, "validation_windows", 0...1_000_000) { c.validationWindows = v }
            case "optimizer":
                try reader.keys(fields, ["lr", "min_lr", "warmup", "total_steps", "weight_decay", "beta1", "beta2", "epsilon", "clip"])
                if let v = try number(fields, "lr", reader) { c.schedule.maxRate = v }
                if let v = try number(fields, "min_lr", reader) { c.schedule.minRate = v }
                if let v = try reader.int(fields, "warmup", 0...Int.max) { c.schedule.warmupSteps = v }
                if let v = try reader.int(fields, "total_steps", 1...Int.max) { c.schedule.totalSteps = v }
                if let v = try number(fields, "weight_decay", reader) { c.optimizer.weightDecay = v }
                if let v = try number(fields, "beta1", reader) { c.optimizer.beta1 = v }
                if let v = try number(fields, "beta2", reader) { c.optimizer.beta2 = v }
                if let v = try number(fields, "epsilon", reader) { c.optimizer.epsilon = v }
                if let v = try number(fields, "clip", reader) { c.optimizer.clipNorm = v }
            case "loader":
                try reader.keys(fields, ["rank", "world_size", "seed", "shuffle_buffer", "holdout"])
                if let v = try reader.int(fields, "rank", 0...65535) { c.loader.rank = v }
                if let v = try reader.int(fields, "world_size", 1...65536) { c.loader.worldSize = v }
                if let v = try reader.int(fields, "seed", 0...Int.max) { c.loader.seed = UInt64(v) }
                if let v = try reader.int(fields, "shuffle_buffer", 1...10_000_000) { c.loader.shuffleBuffer = v }
                if let v = try reader.int(fields, "holdout", 0...1_000_000) { c.loader.holdout = v }
            case "retrain":
                try reader.keys(fields, ["min_new_tokens", "max_interval_seconds", "psi_threshold", "min_drift_samples",
                                         "replay_fraction", "regression_tolerance", "train_topic", "models_topic", "state_file"])
                if fields["min_new_tokens"] is NSNull { result.policy.minNewTokens = nil } else if let v = try reader.int(fields, "min_new_tokens", 1...Int.max) { result.policy.minNewTokens = v }
                if fields["max_interval_seconds"] is NSNull { result.policy.maxIntervalSeconds = nil } else if let v = try number(fields, "max_interval_seconds", reader) { result.policy.maxIntervalSeconds = Double(v) }
                if fields["psi_threshold"] is NSNull { result.policy.psiThreshold = nil } else if let v = try number(fields, "psi_threshold", reader) { result.policy.psiThreshold = Double(v) }
                if let v = try reader.int(fields, "min_drift_samples", 1...Int.max) { result.policy.minDriftSamples = v }
                if let v = try number(fields, "replay_fraction", reader) { result.replayFraction = Double(v) }
                if let v = try number(fields, "regression_tolerance", reader) { result.regressionTolerance = v }
                if let v = try reader.string(fields, "train_topic") { result.trainTopic = v }
                if let v = try reader.string(fields, "models_topic") { result.modelsTopic = v }
                result.stateFile = try reader.string(fields, "state_file")
            default:
                break
            }
            result.configuration = c
        }
        if result.configuration.loader.rank >= result.configuration.loader.worldSize {
            throw ConfigError(file: file, path: "loader.rank", reason: "rank must be below world_size")
        }
        if result.directory != nil && root["kafka"] != nil {
            throw ConfigError(file: file, path: "input.directory", reason: "give either input.directory or a kafka section, not both")
        }
        return result
    }

    private static func number(_ fields: [String: Any], _ key: String, _ reader: SectionReader) throws(ConfigError) -> Float? {
        guard let value = fields[key] else { return nil }
        if let number = value as? Double, number >= 0, number.isFinite { return Float(number) }
        if let number = value as? Int, number >= 0 { return Float(number) }
        throw reader.error(key, "expected a non-negative number")
    }
}
