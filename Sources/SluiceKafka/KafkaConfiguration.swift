internal import CRdKafka

/// librdkafka properties for one client, passed through unchanged as strings.
///
/// Every property librdkafka knows works here (SASL, TLS, tuning); the typed conveniences only write into
/// ``properties``. Unknown keys and invalid values are rejected when a client is created, with librdkafka's
/// own message.
public struct KafkaConfiguration: Sendable, Equatable {
    /// The raw librdkafka properties.
    public var properties: [String: String]

    /// An empty configuration: librdkafka's defaults apply.
    public init() { properties = [:] }

    /// A configuration with the given librdkafka properties.
    public init(_ properties: [String: String]) { self.properties = properties }

    /// Reads or writes one librdkafka property.
    public subscript(key: String) -> String? {
        get { properties[key] }
        set { properties[key] = newValue }
    }

    /// `bootstrap.servers`: comma-separated `host:port` list.
    public var bootstrapServers: String? {
        get { properties["bootstrap.servers"] }
        set { properties["bootstrap.servers"] = newValue }
    }

    /// `group.id` of a consumer group.
    public var groupID: String? {
        get { properties["group.id"] }
        set { properties["group.id"] = newValue }
    }

    /// `client.id`, shown in broker logs.
    public var clientID: String? {
        get { properties["client.id"] }
        set { properties["client.id"] = newValue }
    }

    /// `linger.ms`: how long the producer waits to fill a batch.
    public var lingerMilliseconds: Int? {
        get { properties["linger.ms"].flatMap { Int($0) } }
        set { properties["linger.ms"] = newValue.map(String.init) }
    }

    /// Sets a property only when the user has not set it.
    public mutating func setDefault(_ key: String, _ value: String) {
        if properties[key] == nil { properties[key] = value }
    }

    /// Settings that make tests and the embedded broker responsive: short fetch waits and session timeouts.
    ///
    /// The embedded broker holds empty fetches for the whole `fetch.wait.max.ms` and waits up to
    /// `session.timeout.ms - 1000` before a rebalance; these values keep both short.
    public mutating func applyLowLatencyDefaults() {
        setDefault("fetch.wait.max.ms", "20")
        setDefault("session.timeout.ms", "6000")
        setDefault("heartbeat.interval.ms", "200")
        setDefault("topic.metadata.refresh.interval.ms", "2000")
    }

    /// Merges `other` over this configuration; `other` wins.
    public func merging(_ other: KafkaConfiguration) -> KafkaConfiguration {
        KafkaConfiguration(properties.merging(other.properties) { _, new in new })
    }

    /// Parses Java-properties style text (`key=value` lines, `#` comments), as kcat's `-F` and Kafka's tools read.
    ///
    /// - Throws: ``KafkaError`` with code `.invalidConfiguration` naming the line that has no `=`.
    public static func parseProperties(_ text: String, origin: String) throws -> KafkaConfiguration {
        var config = KafkaConfiguration()
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix("!") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw KafkaError.invalidConfiguration(
                    "\(origin):\(index + 1): expected key=value, found a line without '='")
            }
            let key = line[..<equals].trimmingWhitespace()
            let value = line[line.index(after: equals)...].trimmingWhitespace()
            guard !key.isEmpty else {
                throw KafkaError.invalidConfiguration("\(origin):\(index + 1): empty property name")
            }
            config.properties[String(key)] = String(value)
        }
        return config
    }

    /// Builds a librdkafka configuration object, validating every property.
    ///
    /// - Throws: ``KafkaError`` `.invalidConfiguration` with librdkafka's message for the first bad property.
    func makeNative() throws -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var errorBuffer = [CChar](repeating: 0, count: 512)
        // Sorted so that the reported error is deterministic.
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, key, value, &errorBuffer, errorBuffer.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let message = decodeCString(errorBuffer)
                throw KafkaError.invalidConfiguration("invalid librdkafka property '\(key)': \(message)")
            }
        }
        return conf
    }
}

/// Decodes a NUL-terminated C string held in a buffer.
func decodeCString(_ buffer: [CChar]) -> String {
    let end = buffer.firstIndex(of: 0) ?? buffer.count
    return String(decoding: buffer[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension StringProtocol {
    func trimmingWhitespace() -> SubSequence {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !isSpace($0) })!
        return self[first...last]
    }
}
