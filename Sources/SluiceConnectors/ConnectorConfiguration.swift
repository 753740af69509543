public import SluiceConfig
public import SluiceKafka
internal import Foundation

/// One connector file (`connectors/NAME.yaml`): where records come from, how they become envelopes, and where
/// they go. Every key but `name`, `type` and the source's own required keys has a default; unknown keys are
/// errors that name their path.
public struct ConnectorConfiguration: Sendable {
    /// The kinds of source.
    public enum SourceType: String, Sendable, CaseIterable {
        case file, http, sqlite, generator, stdin
    }

    /// Input formats of the file source.
    public enum FileFormat: String, Sendable, CaseIterable {
        case jsonl, csv, text, html
    }

    /// Retention-aware backpressure: hold production while the pipeline group's backlog of a partition would
    /// come near the topic's retention.
    public struct Backpressure: Sendable, Equatable {
        /// The group whose committed offsets count as read (the pipeline's `group.id`).
        public var group = "sluice-curate"
        /// Bytes a partition keeps before the broker drops the oldest (the embedded broker: 5 MiB).
        public var retentionBytes = 5 << 20
        /// The share of `retentionBytes` a backlog may reach, 0 < headroom ≤ 1.
        public var headroom = 0.8
        public init() {}
    }

    public var name: String
    public var type: SourceType
    /// The raw topic; for the HTTP source it may contain `{source}`, replaced by the path's source name.
    public var topic: String
    /// The envelope member whose value becomes the record key (default `id`; `url` is common).
    public var keyField: String? = "id"
    /// Envelope field → input field (JSON member or CSV column, SQLite column).
    public var fields: [String: String] = [:]
    /// Written into each envelope that has no `source`.
    public var source: String?
    /// Static Kafka headers on every record.
    public var headers: [String: String] = [:]
    /// librdkafka properties (batching and linger included), passed through unchanged.
    public var kafka = KafkaConfiguration()
    public var dlqTopic = "sluice.dlq"
    /// Where positions are checkpointed; required by sources that can resume.
    public var stateDirectory: String?
    public var checkpointIntervalMilliseconds = 1000
    public var backpressure: Backpressure?
    /// Whether `backpressure` was written in the file (otherwise the command may set its own default).
    public var backpressureConfigured = false
    public var metricsPort: Int?

    // file
    public var path: String?
    public var format: FileFormat = .jsonl
    /// file: follow the input like `tail -F` (default false: read once and end); sqlite: keep polling (default true).
    public var follow = false
    public var pollIntervalMilliseconds = 250
    /// text: one document per file (`file`) or per blank-line-separated block (`block`).
    public var textUnit = "file"
    public var csvDelimiter: UInt8 = UInt8(ascii: ",")

    // http
    public var host = "127.0.0.1"
    public var port = 8088
    public var tokens: [String] = []
    public var maxBodyBytes = 8 << 20
    /// Records in flight (sent, not yet acknowledged) above which requests get 429.
    public var maxInFlight = 50_000

    // sqlite
    public var database: String?
    public var table: String?
    /// The monotonic column: `rowid` or a column such as `updated_at` (ties broken by rowid).
    public var column = "rowid"
    public var batchSize = 1000

    // generator
    public var seed: UInt64 = 1
    public var count: Int?
    public var rate: Double?
    /// generator: the sources records cycle through; http: the accepted `<source>` names (empty: any).
    public var sources = ["web", "forum", "docs"]
    public var duplicateRate = 0.05
    public var nearDuplicateRate = 0.05
    public var piiRate = 0.1
    public var junkRate = 0.05
    public var badRate = 0.01
    public var chineseShare = 0.35

    /// The file the configuration came from.
    public var file: String

    public init(name: String, type: SourceType, topic: String, file: String = "<memory>") {
        self.name = name
        self.type = type
        self.topic = topic
        self.file = file
    }

    static let commonKeys = [
        "name", "type", "topic", "key_field", "fields", "source", "headers", "kafka", "dlq_topic", "state_dir",
        "checkpoint_interval_ms", "backpressure", "metrics_port",
    ]
    static let keysByType: [SourceType: [String]] = [
        .file: ["path", "format", "follow", "poll_interval_ms", "text_unit", "csv_delimiter"],
        .http: ["host", "port", "tokens", "max_body_bytes", "max_in_flight", "sources"],
        .sqlite: ["database", "table", "column", "poll_interval_ms", "batch_size", "follow"],
        .generator: [
            "seed", "count", "rate", "sources", "duplicate_rate", "near_duplicate_rate", "pii_rate", "junk_rate",
            "bad_rate", "chinese_share",
        ],
        .stdin: [],
    ]

    /// Reads a connector file.
    public static func load(path: String, environment: [String: String]) throws(ConfigError) -> ConnectorConfiguration {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigError(file: path, path: "", reason: "cannot read: \(error.localizedDescription)")
        }
        return try load(yaml: text, file: path, environment: environment)
    }

    /// Parses the YAML text of a connector file.
    public static func load(yaml: String, file: String, environment: [String: String]) throws(ConfigError)
        -> ConnectorConfiguration
    {
        let text = try ConfigText.interpolate(yaml, file: file, environment: environment)
        guard let root = try ConfigText.sections(ofYAML: text, file: file) else {
            throw ConfigError(file: file, path: "", reason: "empty file; a connector needs at least name, type and topic")
        }
        let reader = SectionReader(file: file)
        guard let name = try reader.string(root, "name") else { throw reader.error("name", "required") }
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw reader.error("name", "use letters, digits, '-', '_' and '.' only (it names the state file)")
        }
        guard let typeName = try reader.choice(root, "type", SourceType.allCases.map(\.rawValue)),
            let type = SourceType(rawValue: typeName)
        else { throw reader.error("type", "required: one of \(SourceType.allCases.map(\.rawValue).joined(separator: ", "))") }
        try reader.keys(root, commonKeys + keysByType[type, default: []])
        guard let topic = try reader.string(root, "topic") else { throw reader.error("topic", "required") }
        var configuration = ConnectorConfiguration(name: name, type: type, topic: topic, file: file)
        if let value = root["key_field"] {
            if value is NSNull { configuration.keyField = nil } else { configuration.keyField = try reader.string(root, "key_field") }
        }
        configuration.fields = try stringMap(root, "fields", reader)
        for key in configuration.fields.keys where !["text", "id", "source", "url", "ts", "meta"].contains(key) {
            throw reader.error("fields.\(key)", "unknown envelope field; known: text, id, source, url, ts, meta")
        }
        configuration.source = try reader.string(root, "source")
        configuration.headers = try stringMap(root, "headers", reader)
        let kafka = try stringMap(root, "kafka", reader)
        configuration.kafka = KafkaConfiguration(kafka)
        configuration.dlqTopic = try reader.string(root, "dlq_topic") ?? configuration.dlqTopic
        configuration.stateDirectory = try reader.string(root, "state_dir")
        configuration.checkpointIntervalMilliseconds =
            try reader.int(root, "checkpoint_interval_ms", 10...600_000) ?? configuration.checkpointIntervalMilliseconds
        configuration.metricsPort = try reader.int(root, "metrics_port", 0...65535)
        if let section = root["backpressure"] {
            configuration.backpressureConfigured = true
            configuration.backpressure = try backpressure(section, file: file)
        }
        configuration.pollIntervalMilliseconds =
            try reader.int(root, "poll_interval_ms", 10...3_600_000) ?? configuration.pollIntervalMilliseconds
        configuration.follow = try reader.bool(root, "follow") ?? configuration.follow

        switch type {
        case .file:
            guard let path = try reader.string(root, "path") else { throw reader.error("path", "required: a file, a directory or a glob") }
            configuration.path = path
            if let format = try reader.choice(root, "format", FileFormat.allCases.map(\.rawValue)) {
                configuration.format = FileFormat(rawValue: format)!
            }
            configuration.textUnit = try reader.choice(root, "text_unit", ["file", "block"]) ?? configuration.textUnit
            if let delimiter = try reader.string(root, "csv_delimiter") {
                guard delimiter.utf8.count == 1 else { throw reader.error("csv_delimiter", "expected one ASCII character") }
                configuration.csvDelimiter = delimiter.utf8.first!
            }
            guard configuration.stateDirectory != nil else {
                throw reader.error("state_dir", "required for a file source: positions are checkpointed there")
            }
        case .http:
            configuration.host = try reader.string(root, "host") ?? configuration.host
            configuration.port = try reader.int(root, "port", 0...65535) ?? configuration.port
            if let tokens = root["tokens"] {
                guard let list = tokens as? [Any], list.allSatisfy({ ($0 as? String).map { !$0.isEmpty } ?? false }) else {
                    throw reader.error("tokens", "expected a list of non-empty strings (use ${VARIABLE} to keep them out of the file)")
                }
                configuration.tokens = list.map { $0 as! String }
            }
            configuration.maxBodyBytes = try reader.int(root, "max_body_bytes", 1...(1 << 30)) ?? configuration.maxBodyBytes
            configuration.maxInFlight = try reader.int(root, "max_in_flight", 1...10_000_000) ?? configuration.maxInFlight
            if let sources = root["sources"] {
                guard let list = sources as? [String], !list.isEmpty else {
                    throw reader.error("sources", "expected a list of the source names accepted in /ingest/<source>")
                }
                configuration.sources = list
            } else {
                configuration.sources = []
            }
        case .sqlite:
            guard let database = try reader.string(root, "database") else { throw reader.error("database", "required: the SQLite file") }
            guard let table = try reader.string(root, "table") else { throw reader.error("table", "required") }
            configuration.database = database
            configuration.table = table
            configuration.column = try reader.string(root, "column") ?? configuration.column
            for identifier in [table, configuration.column] where !isIdentifier(identifier) {
                throw reader.error(identifier == table ? "table" : "column", "expected a plain SQL identifier")
            }
            configuration.batchSize = try reader.int(root, "batch_size", 1...1_000_000) ?? configuration.batchSize
            guard configuration.stateDirectory != nil else {
                throw reader.error("state_dir", "required for a sqlite source: the last value read is checkpointed there")
            }
            if root["fields"] == nil { configuration.fields = [:] }
            // A table is polled until stopped unless `follow: false` (then: read what is there, and end).
            configuration.follow = try reader.bool(root, "follow") ?? true
        case .generator:
            configuration.seed = UInt64(try reader.int(root, "seed", 0...Int.max) ?? Int(configuration.seed))
            configuration.count = try reader.int(root, "count", 0...Int.max)
            configuration.rate = try double(root, "rate", 0.001...10_000_000, reader)
            if let sources = root["sources"] {
                guard let list = sources as? [String], !list.isEmpty, list.allSatisfy({ !$0.isEmpty }) else {
                    throw reader.error("sources", "expected a non-empty list of source names")
                }
                configuration.sources = list
            }
            configuration.duplicateRate = try double(root, "duplicate_rate", 0...1, reader) ?? configuration.duplicateRate
            configuration.nearDuplicateRate =
                try double(root, "near_duplicate_rate", 0...1, reader) ?? configuration.nearDuplicateRate
            configuration.piiRate = try double(root, "pii_rate", 0...1, reader) ?? configuration.piiRate
            configuration.junkRate = try double(root, "junk_rate", 0...1, reader) ?? configuration.junkRate
            configuration.badRate = try double(root, "bad_rate", 0...1, reader) ?? configuration.badRate
            configuration.chineseShare = try double(root, "chinese_share", 0...1, reader) ?? configuration.chineseShare
            let sum = configuration.duplicateRate + configuration.nearDuplicateRate + configuration.piiRate
                + configuration.junkRate + configuration.badRate
            guard sum <= 1 else { throw reader.error("", "the rates add up to \(sum); they must add up to at most 1") }
        case .stdin:
            break
        }
        return configuration
    }

    /// Whether the topic name is valid for Kafka (after `{source}` substitution for HTTP).
    static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, first == "_" || (first.isASCII && CharacterSet.letters.contains(first)) else {
            return false
        }
        return text.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && CharacterSet.alphanumerics.contains($0)) }
    }

    private static func stringMap(_ root: [String: Any], _ key: String, _ reader: SectionReader) throws(ConfigError)
        -> [String: String]
    {
        guard let value = root[key] else { return [:] }
        guard let map = value as? [String: Any] else { throw reader.error(key, "expected a mapping of names to values") }
        var out: [String: String] = [:]
        for (name, item) in map {
            switch item {
            case let text as String: out[name] = text
            case let flag as Bool: out[name] = flag ? "true" : "false"
            case let number as Int: out[name] = String(number)
            case let number as Double: out[name] = String(number)
            default: throw reader.error("\(key).\(name)", "expected a string, number or boolean")
            }
        }
        return out
    }

    private static func double(_ root: [String: Any], _ key: String, _ range: ClosedRange<Double>, _ reader: SectionReader)
        throws(ConfigError) -> Double?
    {
        guard let value = root[key] else { return nil }
        let number: Double
        if let integer = value as? Int { number = Double(integer) } else if let real = value as? Double { number = real } else {
            throw reader.error(key, "expected a number")
        }
        guard range.contains(number) else { throw reader.error(key, "expected a number in \(range.lowerBound)…\(range.upperBound)") }
        return number
    }

    private static func backpressure(_ value: Any, file: String) throws(ConfigError) -> Backpressure? {
        if let flag = value as? Bool {
            guard !flag else {
                throw ConfigError(file: file, path: "backpressure", reason: "give group and retention_bytes, or false to turn it off")
            }
            return nil
        }
        guard let fields = value as? [String: Any] else {
            throw ConfigError(file: file, path: "backpressure", reason: "expected a mapping (group, retention_bytes, headroom) or false")
        }
        let reader = SectionReader(file: file, section: "backpressure")
        try reader.keys(fields, ["group", "retention_bytes", "headroom"])
        var guardOptions = Backpressure()
        guardOptions.group = try reader.string(fields, "group") ?? guardOptions.group
        guardOptions.retentionBytes = try reader.int(fields, "retention_bytes", 4096...Int.max) ?? guardOptions.retentionBytes
        guardOptions.headroom = try double(fields, "headroom", 0.05...1, reader) ?? guardOptions.headroom
        return guardOptions
    }
}
