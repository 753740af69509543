public import SluiceConfig
public import SluiceShards
public import SluiceText
internal import Yams
internal import Foundation
public import SluiceTrain

/// Everything `sluice curate` (and later the streaming pipeline) configures: the stage settings and the shard
/// writer. Loaded from YAML; every key is optional and unknown keys are errors that name the key.
///
/// ```yaml
/// decode:      { max_bytes: 1048576, nul: reject }
/// clean:       { normalization: nfc, repeated_line_threshold: 50, min_characters: 1 }
/// desensitize: { policy: placeholder, policies: { cn_id: drop }, pseudonym_key_env: SLUICE_PSEUDONYM_KEY }
/// quality:     { preset: sluice, shadow: false }
/// dedup:       { hashes: 112, bands: 28, rows: 4, threshold: 0.65 }
/// shards:      { format: tar.zst, level: 3, max_payload_mb: 256, max_samples: 100000, frame_kb: 64 }
/// ```
public struct CurateConfiguration: Sendable {
    public var decoder = EnvelopeDecoder()
    public var cleaner = CleanerConfiguration()
    public var desensitizer = DesensitizerConfiguration()
    public var quality = QualityConfiguration()
    public var dedup = MinHashConfiguration()
    public var shards = ShardWriterConfiguration()
    /// Perplexity filtering with a Sluice model (off unless the `perplexity` section is given).
    public var perplexity: PerplexityConfiguration?
    /// The model the workers score with; set up by the driver (curate loads `perplexity.model`, the pipeline also
    /// follows `perplexity.models_topic`).
    var modelSlot: ModelSlot?
    /// Worker threads for the stage chain. Default: the active processor count (at least 1).
    public var workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// A second rule set (desensitize, quality and dedup sections) evaluated on the same records in tag-only
    /// mode: what it would drop is counted and reported beside the active rules, never acted on.
    public var shadowRules: ShadowRules?
    /// Per-source data-quality assessment (completeness, schema drift, timeliness, drop and PII rates) and its
    /// alerts.
    public var assessment = AssessmentConfiguration()
    /// Borderline records routed to review instead of being kept or dropped (off unless configured).
    public var quarantine: QuarantineConfiguration?
    /// The stage sections this configuration was read from, in a canonical form (keys sorted): what
    /// ``PipelineVersion`` hashes. Empty for the defaults.
    public var definition = ""

    public init() {}

    /// A parsed YAML value as text with mapping keys sorted, so equal settings read the same in every process.
    static func canonical(_ value: Any) -> String {
        switch value {
        case let mapping as [String: Any]:
            "{" + mapping.sorted { $0.key < $1.key }.map { "\($0.key):\(canonical($0.value))" }.joined(separator: ",") + "}"
        case let list as [Any]: "[" + list.map(canonical).joined(separator: ",") + "]"
        default: "\(value)"
        }
    }

    /// Parses YAML; `file` names the source in errors; `environment` resolves `pseudonym_key_env`.
    public static func load(yaml: String, file: String, environment: [String: String] = [:]) throws(ConfigError)
        -> CurateConfiguration
    {
        guard let root = try ConfigText.sections(ofYAML: yaml, file: file) else { return CurateConfiguration() }
        return try load(sections: root, file: file, environment: environment)
    }

    static let sectionNames = ["decode", "clean", "desensitize", "quality", "dedup", "perplexity", "shards", "shadow", "assessment", "quarantine"]

    /// Reads the stage and shard sections of an already parsed document; sections named in `skipping` belong to
    /// the caller (the streaming pipeline's `kafka`, `input`, …).
    static func load(
        sections root: [String: Any], file: String, environment: [String: String], skipping: Set<String> = []
    ) throws(ConfigError) -> CurateConfiguration {
        var configuration = CurateConfiguration()
        // The shadow rule set and the assessment change no decision: they stay out of the pipeline version, so
        // adding them leaves the output byte for byte as it was.
        let stageSections = root.filter { !skipping.contains($0.key) && $0.key != "shadow" && $0.key != "assessment" }
        configuration.definition = stageSections.isEmpty ? "" : canonical(stageSections)
        var reader = SectionReader(file: file)
        ConfigSchema.recorder?.known("", skipping.sorted() + Self.sectionNames)
        for (section, value) in root where !skipping.contains(section) {
            guard let fields = value as? [String: Any] else {
                throw ConfigError(file: file, path: section, reason: "expected a mapping")
            }
            reader.section = section
            switch section {
            case "decode":
                try reader.keys(fields, ["max_bytes", "nul"])
                if let v = try reader.int(fields, "max_bytes", 1...(64 << 20)) { configuration.decoder.maximumBytes = v }
                if let v = try reader.choice(fields, "nul", ["reject", "strip"]) {
                    configuration.decoder.nulPolicy = EnvelopeDecoder.NulPolicy(rawValue: v)!
                }
            case "clean":
                try reader.keys(fields, ["normalization", "repeated_line_threshold", "min_characters", "max_characters", "boilerplate", "html"])
                if let v = try reader.choice(fields, "normalization", ["none", "nfc", "nfkc"]) {
                    configuration.cleaner.normalization = NormalizationForm(rawValue: v)!
                }
                if let v = try reader.int(fields, "repeated_line_threshold", 0...1_000_000) { configuration.cleaner.repeatedLineThreshold = v }
                if let v = try reader.int(fields, "min_characters", 0...Int.max) { configuration.cleaner.minimumCharacters = v }
                if let v = try reader.int(fields, "max_characters", 1...Int.max) { configuration.cleaner.maximumCharacters = v }
                if let v = try reader.bool(fields, "boilerplate") { configuration.cleaner.removesBoilerplate = v }
                if let v = try reader.bool(fields, "html") { configuration.cleaner.convertsHTML = v }
            case "desensitize":
                try reader.keys(fields, ["policy", "policies", "pseudonym_key_env", "kinds"])
                let policies = PIIPolicy.allCases.map(\.rawValue)
                if let v = try reader.choice(fields, "policy", policies) { configuration.desensitizer.defaultPolicy = PIIPolicy(rawValue: v)! }
                if let map = fields["policies"] {
                    guard let map = map as? [String: Any] else { throw reader.error("policies", "expected a mapping of kind: policy") }
                    for (kind, policy) in map {
                        guard let kind = PIIKind(rawValue: kind) else {
                            throw reader.error("policies.\(kind)", "unknown kind; one of \(PIIKind.allCases.map(\.rawValue).joined(separator: ", "))")
                        }
                        guard let policy = (policy as? String).flatMap(PIIPolicy.init(rawValue:)) else {
                            throw reader.error("policies.\(kind.rawValue)", "one of \(policies.joined(separator: ", "))")
                        }
                        configuration.desensitizer.policies[kind] = policy
                    }
                }
                if let name = fields["pseudonym_key_env"] {
                    guard let name = name as? String else { throw reader.error("pseudonym_key_env", "expected a variable name") }
                    guard let key = environment[name], !key.isEmpty else {
                        throw reader.error("pseudonym_key_env", "the environment variable \(name) is not set")
                    }
                    configuration.desensitizer.pseudonymKey = Array(key.utf8)
                }
                do { try configuration.desensitizer.validate() } catch { throw reader.error("", "\(error)") }
            case "quality":
                try reader.keys(fields, ["preset", "shadow"])
                if let v = try reader.choice(fields, "preset", ["sluice", "datatrove"]) {
                    let shadow = configuration.quality.shadow
                    configuration.quality = v == "datatrove" ? .datatrove : QualityConfiguration()
                    configuration.quality.shadow = shadow
                }
                if let v = try reader.bool(fields, "shadow") { configuration.quality.shadow = v }
            case "dedup":
                try reader.keys(fields, ["hashes", "bands", "rows", "threshold", "shingle_size"])
                if let v = try reader.int(fields, "hashes", 8...1024) { configuration.dedup.hashCount = v }
                if let v = try reader.int(fields, "bands", 1...1024) { configuration.dedup.bands = v }
                if let v = try reader.int(fields, "rows", 1...64) { configuration.dedup.rows = v }
                if let v = try reader.int(fields, "shingle_size", 1...16) { configuration.dedup.shingleSize = v }
                if let v = fields["threshold"] {
                    guard let v = (v as? Double) ?? (v as? Int).map(Double.init), (0...1).contains(v) else {
                        throw reader.error("threshold", "expected a number between 0 and 1")
                    }
                    configuration.dedup.threshold = v
                }
                do { try configuration.dedup.validate() } catch { throw reader.error("", "\(error)") }
            case "shards":
                try reader.keys(fields, ["format", "level", "max_payload_mb", "max_samples", "samples_per_frame", "frame_kb", "max_age_seconds"])
                if let v = try reader.choice(fields, "format", ShardFormat.allCases.map(\.rawValue)) {
                    configuration.shards.format = ShardFormat(rawValue: v)!
                }
                if let v = try reader.int(fields, "level", 1...19) { configuration.shards.compressionLevel = Int32(v) }
                if let v = try reader.int(fields, "max_payload_mb", 1...65_536) { configuration.shards.maximumPayloadBytes = v << 20 }
                if let v = try reader.int(fields, "max_samples", 1...Int.max) { configuration.shards.maximumSamples = v }
                if let v = try reader.int(fields, "samples_per_frame", 1...100_000) { configuration.shards.samplesPerFrame = v }
                if let v = try reader.int(fields, "frame_kb", 1...65_536) { configuration.shards.frameBytes = v << 10 }
                if let v = try reader.int(fields, "max_age_seconds", 1...Int.max) { configuration.shards.maximumAge = Double(v) }
            case "perplexity":
                try reader.keys(fields, ["model", "models_topic", "max_ratio", "max_bytes", "reference_perplexity"])
                var p = PerplexityConfiguration()
                p.model = try reader.string(fields, "model")
                p.modelsTopic = try reader.string(fields, "models_topic")
                if let v = fields["max_ratio"] {
                    guard let ratio = (v as? Double) ?? (v as? Int).map(Double.init), ratio > 0 else { throw reader.error("max_ratio", "expected a positive number") }
                    p.maxRatio = ratio
                }
                if let v = try reader.int(fields, "max_bytes", 2...1_000_000) { p.maxBytes = v }
                if let v = fields["reference_perplexity"] {
                    guard let value = (v as? Double) ?? (v as? Int).map(Double.init), value > 0 else {
                        throw reader.error("reference_perplexity", "expected a positive number")
                    }
                    p.referencePerplexity = value
                }
                guard p.model != nil || p.modelsTopic != nil else {
                    throw reader.error("", "name a model (a model.safetensors file or checkpoint directory) or a models_topic to follow")
                }
                configuration.perplexity = p
            case "shadow":
                try reader.keys(fields, ["desensitize", "quality", "dedup"])
                var sections: [String: Any] = [:]
                for (name, value) in fields { sections[name] = value }
                let shadow = try load(sections: sections, file: file + " (shadow)", environment: environment)
                if let dedup = fields["dedup"] as? [String: Any], Set(dedup.keys) != ["threshold"] {
                    throw reader.error("dedup", "a shadow dedup section sets the threshold only (it reuses the active fingerprints)")
                }
                configuration.shadowRules = ShadowRules(
                    desensitizer: fields["desensitize"] == nil ? nil : shadow.desensitizer,
                    quality: fields["quality"] == nil ? nil : shadow.quality,
                    dedupThreshold: fields["dedup"] == nil ? nil : shadow.dedup.threshold)
            case "assessment":
                try reader.keys(fields, ["window_seconds", "late_after_seconds", "alert_change", "alert_min_records", "windows"])
                if let v = try reader.number(fields, "window_seconds", 1...86_400) { configuration.assessment.windowSeconds = v }
                if let v = try reader.number(fields, "late_after_seconds", 0...(365 * 86_400)) { configuration.assessment.lateAfterSeconds = v }
                if let v = try reader.number(fields, "alert_change", 0...1) { configuration.assessment.alertChange = v }
                if let v = try reader.int(fields, "alert_min_records", 1...Int.max) { configuration.assessment.alertMinRecords = v }
                if let v = try reader.int(fields, "windows", 2...1_000) { configuration.assessment.windows = v }
            case "quarantine":
                try reader.keys(fields, ["quality_score_min", "quality_score_max"])
                var q = QuarantineConfiguration()
                if let v = try reader.number(fields, "quality_score_min", 0...1) { q.qualityScoreMin = v }
                if let v = try reader.number(fields, "quality_score_max", 0...1) { q.qualityScoreMax = v }
                guard q.qualityScoreMin <= q.qualityScoreMax else { throw reader.error("", "quality_score_min must not exceed quality_score_max") }
                configuration.quarantine = q
            case "workers":
                throw ConfigError(file: file, path: section, reason: "workers is a number at the top level, not a section")
            default:
                throw ConfigError(
                    file: file, path: section,
                    reason: "unknown section; known: \((skipping.sorted() + Self.sectionNames).joined(separator: ", "))")
            }
        }
        return configuration
    }
}
