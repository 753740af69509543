internal import Foundation
internal import Logging
internal import SluiceKafka

/// Retention-aware backpressure. A broker keeps a bounded amount per partition (the embedded broker 5 MiB, a
/// real cluster its `retention.bytes`) and drops the oldest data beyond it, read or not. The guard compares what
/// is written with what the pipeline's group has committed and holds the producing thread while a partition's
/// unread backlog plus what is still in flight would pass `headroom × retention_bytes`.
///
/// Every refresh (4 a second) reads each partition's high watermark and the group's committed offset, turns the
/// worst backlog into bytes with the average size of the records this connector wrote, and grants the
/// remaining room as a byte allowance that sends draw down until the next refresh. If the broker cannot be
/// asked, the allowance is not renewed: the guard fails closed.
final class RetentionGuard: @unchecked Sendable {
    // @unchecked: mutable state is guarded by `condition`; `consumer` is thread-safe.
    private let options: ConnectorConfiguration.Backpressure
    private let consumer: KafkaConsumer
    private let logger: Logger
    private let condition = NSCondition()
    private var topics: [String: TopicState] = [:]
    private var stopped = false
    /// Per-record overhead in the log beyond key and value (batch and record headers), in bytes.
    static let recordOverhead = 70

    struct TopicState {
        var partitions: [Int32] = []
        var allowance = 0
        var sentSinceRefresh = 0
        var inFlightBytes = 0
        var producedBytes = 0
        var producedRecords = 0
        var worstBacklogBytes = 0
        var worstPartition: Int32 = -1
        var refreshed = false
    }

    var limit: Int { Int(Double(options.retentionBytes) * options.headroom) }

    init(options: ConnectorConfiguration.Backpressure, kafka: KafkaConfiguration, logger: Logger) throws {
        self.options = options
        self.logger = logger
        var configuration = kafka
        configuration["group.id"] = options.group
        for key in ["enable.idempotence", "linger.ms", "acks", "batch.size", "compression.type", "queue.buffering.max.messages",
                    "queue.buffering.max.kbytes", "message.timeout.ms", "retries", "batch.num.messages"] {
            configuration.properties.removeValue(forKey: key)
        }
        var consumerOptions = KafkaConsumer.Options()
        consumerOptions.requestTimeout = .seconds(5)
        consumer = try KafkaConsumer(configuration: configuration, options: consumerOptions, logger: logger)
    }

    /// Blocks the calling (producing) thread until `bytes` more for `topic` fit, or the guard stops.
    /// - Returns: how long it waited, in seconds.
    @discardableResult
    func admit(topic: String, bytes: Int) -> Double {
        let cost = bytes + Self.recordOverhead
        condition.lock()
        defer { condition.unlock() }
        var waited: Date?
        while !stopped {
            let state = topics[topic] ?? TopicState()
            if state.refreshed, state.sentSinceRefresh + cost <= state.allowance { break }
            // A record larger than the whole allowance passes when nothing is outstanding, or it would never pass.
            if state.refreshed, state.sentSinceRefresh == 0, state.inFlightBytes == 0, state.worstBacklogBytes == 0 { break }
            if topics[topic] == nil { topics[topic] = TopicState() }
            if waited == nil { waited = Date() }
            _ = condition.wait(until: Date().addingTimeInterval(0.2))
        }
        topics[topic, default: TopicState()].sentSinceRefresh += cost
        topics[topic, default: TopicState()].inFlightBytes += cost
        return waited.map { -$0.timeIntervalSinceNow } ?? 0
    }

    /// Takes room for `bytes` on `topic` without waiting: false when it does not fit now (the caller answers
    /// "retry later" instead of blocking).
    func tryAdmit(topic: String, bytes: Int, records: Int) -> Bool {
        let bytes = bytes + records * Self.recordOverhead
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else { return true }
        let state = topics[topic] ?? TopicState()
        if topics[topic] == nil { topics[topic] = state }
        let fits = state.refreshed && (state.sentSinceRefresh + bytes <= state.allowance
            || (state.sentSinceRefresh == 0 && state.inFlightBytes == 0 && state.worstBacklogBytes == 0))
        guard fits else { return false }
        topics[topic]!.sentSinceRefresh += bytes
        topics[topic]!.inFlightBytes += bytes
        return true
    }

    /// A record of `bytes` key and value bytes was acknowledged (or failed) on `topic`.
    func delivered(topic: String, bytes: Int, succeeded: Bool) {
        condition.lock()
        defer { condition.unlock() }
        let cost = bytes + Self.recordOverhead
        topics[topic, default: TopicState()].inFlightBytes -= cost
        if succeeded {
            topics[topic, default: TopicState()].producedBytes += cost
            topics[topic, default: TopicState()].producedRecords += 1
        }
    }

    /// Whether some producing thread is held now, and by which partition.
    var status: (holding: Bool, detail: String) {
        condition.lock()
        defer { condition.unlock() }
        for (topic, state) in topics where state.refreshed && state.sentSinceRefresh >= state.allowance {
            let backlog = String(format: "%.1f", Double(state.worstBacklogBytes) / 1_048_576)
            let limit = String(format: "%.1f", Double(self.limit) / 1_048_576)
            return (true, "\(topic)[\(state.worstPartition)] holds \(backlog) MiB unread by group \(options.group) (limit \(limit) MiB)")
        }
        return (false, "")
    }

    /// Re-reads watermarks and committed offsets for every topic that was sent to, and grants new allowances.
    func refresh() async {
        let names: [String] = condition.withLock { Array(topics.keys) }
        for topic in names {
            do {
                var partitions = condition.withLock { topics[topic]?.partitions ?? [] }
                if partitions.isEmpty {
                    partitions = try await consumer.partitions(of: topic)
                    condition.withLock { topics[topic]?.partitions = partitions }
                }
                // In flight is read before the broker is asked: a record delivered in between counts twice
                // (conservative), never zero times.
                let inFlight = condition.withLock {
                    let value = topics[topic]?.inFlightBytes ?? 0
                    topics[topic]?.sentSinceRefresh = 0
                    return value
                }
                let list = partitions.map { TopicPartition(topic: topic, partition: $0) }
                let committed = try await consumer.committed(list)
                var worst = (partition: Int32(-1), records: Int64(0))
                for partition in list {
                    let (low, high) = try await consumer.watermarks(of: partition)
                    let read = max((committed[partition] ?? nil) ?? low, low)
                    let backlog = max(0, high - read)
                    if backlog > worst.records || worst.partition < 0 { worst = (partition.partition, backlog) }
                }
                condition.withLock {
                    guard var state = topics[topic] else { return }
                    let average = state.producedRecords > 0 ? state.producedBytes / state.producedRecords : 1024
                    state.worstBacklogBytes = Int(worst.records) * average
                    state.worstPartition = worst.partition
                    state.allowance = max(0, limit - state.worstBacklogBytes - inFlight)
                    state.refreshed = true
                    topics[topic] = state
                    condition.broadcast()
                }
            } catch {
                logger.debug("backpressure refresh failed; holding the allowance", metadata: ["topic": "\(topic)", "error": "\(error)"])
            }
        }
    }

    /// Registers `topic` so that the next refresh measures it (sends wait for that first measurement).
    func watch(_ topic: String) {
        condition.withLock { if topics[topic] == nil { topics[topic] = TopicState() } }
    }

    /// Releases every waiting thread for good.
    func stop() {
        condition.withLock {
            stopped = true
            condition.broadcast()
        }
    }

    func close() async {
        stop()
        await consumer.close()
    }
}
