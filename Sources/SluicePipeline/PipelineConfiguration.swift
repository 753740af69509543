public import SluiceConfig
public import SluiceKafka
public import SluiceText
internal import SluiceShards
public import Foundation

/// What `sluice pipeline` runs: Kafka settings, input topics, outputs, and the same stage and shard sections as
/// `sluice curate` (``CurateConfiguration``). Loaded from YAML with `${NAME}` / `${NAME:-default}` environment
/// interpolation; every key is optional and unknown keys are errors that name their path.
///
/// ```yaml
/// kafka:                     # any librdkafka property, passed through; no bootstrap.servers = embedded broker
///   bootstrap.servers: ${KAFKA_BOOTSTRAP}
///   group.id: sluice-curate
/// input:
///   topics: [raw.web, "^raw\\..*", { name: raw.docs, format: text }]
/// output:
///   directory: ./data
///   dataset: stream
///   shards_topic: sluice.shards
///   rejected_topic: sluice.rejected
///   dlq_topic: sluice.dlq
/// pipeline:
///   workers: 2
///   seal_after_seconds: 60
///   on_data_loss: fail
/// metrics: { port: 9464 }
/// clean: { … }   # decode, clean, desensitize, quality, dedup, shards: as for sluice curate
/// ```
public struct PipelineConfiguration: Sendable {
    /// librdkafka properties for the consumer and the producer.
    public var kafka = KafkaConfiguration()
    /// Topic names, or regexes starting with `^`.
    public var topics: [String] = []
    /// Per-topic record format (default JSON envelopes).
    public var formats: [String: EnvelopeDecoder.Format] = [:]
    public var outputDirectory = URL(fileURLWithPath: "data")
    public var dataset = "stream"
    public var shardsTopic = "sluice.shards"
    public var rejectedTopic = "sluice.rejected"
    public var dlqTopic = "sluice.dlq"
    /// Data-quality alerts (schema drift, sudden rate changes) go here.
    public var alertsTopic = "sluice.alerts"
    /// Borderline records (with `quarantine:` configured) go here for review.
    public var quarantineTopic = "sluice.quarantine"
    /// Seal a partition's open shard this long after its first record, however small it is. Default 60 s.
    public var sealAfterSeconds = 60.0
    /// Records handed to a worker at once.
    public var batchRecords = 1024
    /// Batches in flight between the consumer and the shard sink; beyond it the consumer stops polling.
    public var maxBatchesInFlight = 4
    /// A checkpoint is also taken after this many records of one partition, so rejected-only stretches end.
    public var maxRecordsPerCheckpoint = 200_000
    /// What to do when the committed offset is below the log start (retention deleted unread records).
    public enum DataLossPolicy: String, Sendable, CaseIterable {
        /// Stop with a typed error (after sealing what was read): someone must look. The default.
        case fail
        /// Continue at the log start, after an audit event on the rejected topic, an error log and a metric.
        case skip
    }
    public var onDataLoss = DataLossPolicy.fail
    /// Stop once every assigned partition reached its end (a backfill), sealing and committing as at shutdown.
    public var exitAtEnd = false
    /// Port of `/metrics` and `/healthz`; `nil` = off.
    public var metricsPort: Int?
    /// Stage and shard settings (and `workers`).
    public var stages = CurateConfiguration()

    public init() {
        stages.shards.maximumAge = nil
    }

    /// The consumer group (`kafka.group.id`, default `sluice-curate`).
    public var groupID: String { kafka.groupID ?? "sluice-curate" }

    /// Whether no cluster is configured, so the command starts the embedded broker.
    public var usesEmbeddedBroker: Bool { kafka.bootstrapServers == nil }

    /// Parses the YAML text of a pipeline configuration.
    public static func load(yaml: String, file: String, environment: [String: String]) throws(ConfigError)
        -> PipelineConfiguration
    {
        var configuration = PipelineConfiguration()
        let text = try ConfigText.interpolate(yaml, file: file, environment: environment)
        guard let root = try ConfigText.sections(ofYAML: text, file: file) else { return configuration }
        let own: Set<String> = ["kafka", "input", "output", "pipeline", "metrics"]
        configuration.stages = try CurateConfiguration.load(
            sections: root, file: file, environment: environment, skipping: own)
        var reader = SectionReader(file: file)
        for section in own.sorted() {
            guard let value = root[section] else { continue }
            guard let fields = value as? [String: Any] else {
                throw ConfigError(file: file, path: section, reason: "expected a mapping")
            }
            reader.section = section
            switch section {
            case "kafka":
                for (key, value) in fields {
                    guard let text = Self.scalar(value) else {
                        throw reader.error(key, "expected a scalar value (librdkafka properties are strings)")
                    }
                    configuration.kafka[key] = text
                }
            case "input":
                try reader.keys(fields, ["topics"])
                guard let list = fields["topics"] as? [Any] else {
                    throw reader.error("topics", "expected a list of topic names, ^regexes, or {name, format} mappings")
                }
                for (position, item) in list.enumerated() {
                    if let name = item as? String {
                        configuration.topics.append(name)
                    } else if let entry = item as? [String: Any] {
                        let path = "topics[\(position)]"
                        for key in entry.keys where key != "name" && key != "format" {
                            throw reader.error("\(path).\(key)", "unknown key; known: name, format")
                        }
                        guard let name = entry["name"] as? String, !name.isEmpty else { throw reader.error("\(path).name", "expected a topic name") }
                        configuration.topics.append(name)
                        if let format = entry["format"] {
                            guard let format = (format as? String).flatMap(EnvelopeDecoder.Format.init(rawValue:)) else {
                                throw reader.error("\(path).format", "expected json or text")
                            }
                            configuration.formats[name] = format
                        }
                    } else {
                        throw reader.error("topics[\(position)]", "expected a topic name or a {name, format} mapping")
                    }
                }
            case "output":
                try reader.keys(fields, ["directory", "dataset", "shards_topic", "rejected_topic", "dlq_topic", "alerts_topic", "quarantine_topic"])
                if let v = try reader.string(fields, "directory") { configuration.outputDirectory = URL(fileURLWithPath: v) }
                if let v = try reader.string(fields, "dataset") { configuration.dataset = v }
                if let v = try reader.string(fields, "shards_topic") { configuration.shardsTopic = v }
                if let v = try reader.string(fields, "rejected_topic") { configuration.rejectedTopic = v }
                if let v = try reader.string(fields, "dlq_topic") { configuration.dlqTopic = v }
                if let v = try reader.string(fields, "alerts_topic") { configuration.alertsTopic = v }
                if let v = try reader.string(fields, "quarantine_topic") { configuration.quarantineTopic = v }
            case "pipeline":
                try reader.keys(fields, ["workers", "seal_after_seconds", "batch_records", "max_batches_in_flight", "on_data_loss"])
                if let v = try reader.int(fields, "workers", 1...256) { configuration.stages.workers = v }
                if let v = try reader.int(fields, "seal_after_seconds", 1...86_400) { configuration.sealAfterSeconds = Double(v) }
                if let v = try reader.int(fields, "batch_records", 1...65_536) { configuration.batchRecords = v }
                if let v = try reader.int(fields, "max_batches_in_flight", 1...1024) { configuration.maxBatchesInFlight = v }
                if let v = try reader.choice(fields, "on_data_loss", ["fail", "skip"]) { configuration.onDataLoss = DataLossPolicy(rawValue: v)! }
            case "metrics":
                try reader.keys(fields, ["port"])
                if let v = try reader.int(fields, "port", 0...65_535) { configuration.metricsPort = v == 0 ? nil : v }
            default:
                break
            }
        }
        return configuration
    }

    private static func scalar(_ value: Any) -> String? {
        switch value {
        case let v as String: v
        case let v as Bool: v ? "true" : "false"
        case let v as Int: String(v)
        case let v as Double: String(v)
        default: nil
        }
    }

    /// Problems that only show once flags are merged in: no topics, an invalid regex, a dataset name that
    /// cannot name files.
    public func validate(file: String) throws(ConfigError) {
        guard !topics.isEmpty else {
            throw ConfigError(file: file, path: "input.topics", reason: "no input topics; list some or pass --topic")
        }
        for (position, topic) in topics.enumerated() {
            if topic.hasPrefix("^") {
                do { _ = try NSRegularExpression(pattern: topic) } catch {
                    throw ConfigError(file: file, path: "input.topics[\(position)]", reason: "not a valid regex: \(topic)")
                }
            } else if topic.isEmpty || topic.count > 249
                || !topic.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) })
            {
                throw ConfigError(
                    file: file, path: "input.topics[\(position)]",
                    reason: "'\(topic)' is not a valid topic name (letters, digits, '.', '_', '-'; or a ^regex)")
            }
        }
        guard !dataset.isEmpty, !dataset.contains("/") else {
            throw ConfigError(file: file, path: "output.dataset", reason: "expected a name without slashes")
        }
        if kafka["enable.auto.commit"] == "true" {
            throw ConfigError(
                file: file, path: "kafka.enable.auto.commit",
                reason: "Sluice commits offsets itself, after the shard holding the records is sealed; remove this property")
        }
    }
}
