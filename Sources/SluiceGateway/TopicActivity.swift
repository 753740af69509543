internal import Foundation
public import SluiceKafka
internal import Synchronization

/// Records written to each topic, sampled from the partitions' high watermarks, for the dashboard's ingestion
/// and curation rates and `/metrics`. Works on any Kafka cluster (metadata and ListOffsets only); internal
/// topics (`__…`) are left out.
public final class TopicActivity: Sendable {
    /// Records per second over the sampled window, and records written in all.
    public struct Rate: Sendable, Equatable {
        public var topic: String
        public var perSecond: Double
        public var total: Int64
    }

    private let admin: KafkaAdmin
    /// How far back rates look.
    public let window: Double
    private let samples = Mutex<[(time: Double, totals: [String: Int64])]>([])

    public init(kafka: KafkaConfiguration, window: Double = 60) throws {
        admin = try KafkaAdmin(configuration: kafka)
        self.window = window
    }

    deinit { admin.close() }

    /// Reads every topic's high watermarks once and keeps the sample.
    public func sample() async throws {
        var totals: [String: Int64] = [:]
        for topic in try await admin.listTopics() where topic.errorCode == nil && !topic.name.hasPrefix("__") {
            var total: Int64 = 0
            for partition in topic.partitions {
                total += try await admin.watermarks(topic: topic.name, partition: partition.id).high
            }
            totals[topic.name] = total
        }
        record(totals, at: Date().timeIntervalSince1970)
    }

    /// Adds a sample (topic → records written) taken at `time`, dropping those older than the window needs.
    func record(_ totals: [String: Int64], at time: Double) {
        samples.withLock { samples in
            samples.append((time, totals))
            // Keep the newest sample at least `window` old, as the base of the rates.
            while samples.count > 2, samples[1].time <= time - window { samples.removeFirst() }
        }
    }

    /// Each topic's rate between the oldest kept sample and the newest (0 with one sample), sorted by topic.
    public func rates() -> [Rate] {
        samples.withLock { samples in
            guard let newest = samples.last, let oldest = samples.first else { return [] }
            let elapsed = newest.time - oldest.time
            return newest.totals.sorted { $0.key < $1.key }.map { topic, total in
                let before = oldest.totals[topic] ?? 0
                return Rate(topic: topic, perSecond: elapsed > 0 ? Double(max(0, total - before)) / elapsed : 0, total: total)
            }
        }
    }

    /// Samples every `interval` seconds until the task is cancelled; a failed sample is logged by the caller's
    /// `onError` and retried at the next tick.
    public func run(every interval: Duration = .seconds(5), onError: @escaping @Sendable (any Error) -> Void = { _ in }) async {
        while !Task.isCancelled {
            do { try await sample() } catch { onError(error) }
            try? await Task.sleep(for: interval)
        }
    }
}
