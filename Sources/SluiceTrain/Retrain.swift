public import Foundation
public import SluiceKafka
public import Logging
internal import SluiceShards

/// When to ask for a new model. Every policy that is set is checked; a request lists each one that fired.
public struct RetrainPolicy: Sendable, Equatable, Codable {
    /// New tokens (bytes of curated text) since the last request.
    public var minNewTokens: Int? = 5_000_000
    /// Longest time between requests while new shards wait.
    public var maxIntervalSeconds: Double? = 86_400
    /// Population stability index of the quality-score or language distribution of the new shards against the
    /// data already covered; at or above this, the data has drifted.
    public var psiThreshold: Double? = 0.2
    /// Drift is judged only once this many new samples (and as many covered ones) are in.
    public var minDriftSamples = 200
    public init() {}

    enum CodingKeys: String, CodingKey {
        case minNewTokens = "min_new_tokens", maxIntervalSeconds = "max_interval_seconds", psiThreshold = "psi_threshold"
        case minDriftSamples = "min_drift_samples"
    }
}

/// Counts of quality scores (ten bins over 0…1) and languages.
public struct DataProfile: Sendable, Equatable, Codable {
    public var quality = [Int](repeating: 0, count: 10)
    public var languages: [String: Int] = [:]
    public var samples = 0
    public var tokens = 0
    public init() {}

    public mutating func add(score: Double?, language: String?, tokens: Int) {
        samples += 1
        self.tokens += tokens
        if let score, score.isFinite { quality[min(9, max(0, Int(score * 10)))] += 1 }
        languages[language ?? "unknown", default: 0] += 1
    }

    public mutating func merge(_ other: DataProfile) {
        for i in 0..<10 { quality[i] += other.quality[i] }
        for (language, count) in other.languages { languages[language, default: 0] += count }
        samples += other.samples
        tokens += other.tokens
    }

    /// The profile of one shard: `quality_score` and `lang` of every sample's JSON, text bytes as tokens.
    public static func of(shard url: URL, sha256: String?) throws(TrainError) -> DataProfile {
        let samples: [ShardSampleData]
        do throws(ShardError) {
            if let sha256 { samples = try ShardReader.samples(of: url, expectingSHA256: sha256) } else { samples = try ShardReader.samples(of: url) }
        } catch { throw TrainError("cannot read shard \(url.lastPathComponent): \(error.reason)") }
        var profile = DataProfile()
        for sample in samples {
            let json = (try? JSONSerialization.jsonObject(with: Data(sample.json))) as? [String: Any]
            profile.add(score: (json?["quality_score"] as? NSNumber)?.doubleValue, language: json?["lang"] as? String, tokens: sample.text.count)
        }
        return profile
    }

    /// Population stability index Σ (p − q)·ln(p / q) over the bins, proportions floored at 1e-4.
    public static func psi(_ expected: [String: Int], _ actual: [String: Int]) -> Double {
        let e = Double(max(1, expected.values.reduce(0, +))), a = Double(max(1, actual.values.reduce(0, +)))
        var sum = 0.0
        for key in Set(expected.keys).union(actual.keys) {
            let p = max(1e-4, Double(actual[key] ?? 0) / a), q = max(1e-4, Double(expected[key] ?? 0) / e)
            sum += (p - q) * Foundation.log(p / q)
        }
        return sum
    }

    var qualityBins: [String: Int] { Dictionary(uniqueKeysWithValues: quality.enumerated().map { ("\($0.offset)", $0.element) }) }
}

/// A request for a new model, published on `sluice.train`.
public struct RetrainRequest: Sendable, Equatable, Codable {
    /// `retrain-<offset after the last announcement it covers>`: the same request gets the same id after a restart.
    public var id: String
    public var reasons: [String]
    public var newTokens: Int
    public var newSamples: Int
    /// The new shards, in announcement order.
    public var shards: [ShardAnnouncement]
    /// Announcement offsets on the shards topic covered by this request: [from, to).
    public var fromOffset: Int64
    public var toOffset: Int64
    public var psiQuality: Double?
    public var psiLanguage: Double?
    public var createdAt: String

    enum CodingKeys: String, CodingKey {
        case id, reasons, newTokens = "new_tokens", newSamples = "new_samples", shards, fromOffset = "from_offset"
        case toOffset = "to_offset", psiQuality = "psi_quality", psiLanguage = "psi_language", createdAt = "created_at"
    }
}

/// The retrain decision, without I/O: feed it announcements with their profiles and the time.
public struct RetrainDecider: Sendable, Equatable, Codable {
    public var policy: RetrainPolicy
    /// Data covered by earlier requests.
    public var covered = DataProfile()
    /// Data since the last request.
    public var pending = DataProfile()
    public var pendingShards: [ShardAnnouncement] = []
    public var pendingFrom: Int64?
    /// The offset after the last announcement seen.
    public var nextOffset: Int64 = 0
    /// When the last request was made (or the decider started), seconds since 1970.
    public var lastRequestAt: Double
    public var requests = 0

    public init(policy: RetrainPolicy, now: Double) {
        self.policy = policy
        lastRequestAt = now
    }

    enum CodingKeys: String, CodingKey {
        case policy, covered, pending, pendingShards = "pending_shards", pendingFrom = "pending_from"
        case nextOffset = "next_offset", lastRequestAt = "last_request_at", requests
    }

    /// Records a new shard; returns a request when a policy fires.
    public mutating func observe(_ announcement: ShardAnnouncement, profile: DataProfile, offset: Int64, now: Double) -> RetrainRequest? {
        if pendingFrom == nil { pendingFrom = offset }
        nextOffset = offset + 1
        guard !pendingShards.contains(where: { $0.name == announcement.name }) else { return check(now: now) }
        pending.merge(profile)
        pendingShards.append(announcement)
        return check(now: now)
    }

    /// Steps over a topic event that is not an announcement.
    public mutating func skip(offset: Int64) { nextOffset = offset + 1 }

    /// Checks the policies now (the interval fires with no new announcement too).
    public mutating func check(now: Double) -> RetrainRequest? {
        guard !pendingShards.isEmpty else { return nil }
        var reasons: [String] = []
        if let minimum = policy.minNewTokens, pending.tokens >= minimum {
            reasons.append("new_tokens: \(pending.tokens) ≥ \(minimum)")
        }
        if let interval = policy.maxIntervalSeconds, now - lastRequestAt >= interval {
            reasons.append(String(format: "interval: %.0f s since the last request ≥ %.0f s", now - lastRequestAt, interval))
        }
        var psiQuality: Double?, psiLanguage: Double?
        if let threshold = policy.psiThreshold, pending.samples >= policy.minDriftSamples, covered.samples >= policy.minDriftSamples {
            let quality = DataProfile.psi(covered.qualityBins, pending.qualityBins)
            let language = DataProfile.psi(covered.languages, pending.languages)
            psiQuality = quality
            psiLanguage = language
            if quality >= threshold { reasons.append(String(format: "drift: quality-score PSI %.3f ≥ %.3f", quality, threshold)) }
            if language >= threshold { reasons.append(String(format: "drift: language PSI %.3f ≥ %.3f", language, threshold)) }
        }
        guard !reasons.isEmpty else { return nil }
        let request = RetrainRequest(
            id: "retrain-\(nextOffset)", reasons: reasons, newTokens: pending.tokens, newSamples: pending.samples,
            shards: pendingShards, fromOffset: pendingFrom ?? nextOffset, toOffset: nextOffset, psiQuality: psiQuality,
            psiLanguage: psiLanguage, createdAt: ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: now)))
        covered.merge(pending)
        pending = DataProfile()
        pendingShards = []
        pendingFrom = nil
        lastRequestAt = now
        requests += 1
        return request
    }
}

/// Follows the shards topic, profiles every new shard and publishes ``RetrainRequest``s on the train topic.
/// Its state (a ``RetrainDecider``) is written to `stateFile` after each request is acknowledged and every few
/// announcements, so a restart continues where it stopped; a request re-sent after a crash keeps its id.
public final class RetrainController: @unchecked Sendable {
    // @unchecked: one task runs the controller; `stopFlag` is a lock-guarded flag.
    public struct Settings: Sendable {
        public var kafka: KafkaConfiguration
        public var shardsTopic = "sluice.shards"
        public var trainTopic = "sluice.train"
        public var shardsRoot: URL?
        public var stateFile: URL
        public var policy = RetrainPolicy()
        public var exitAtEnd = false
        public init(kafka: KafkaConfiguration, stateFile: URL) {
            self.kafka = kafka
            self.stateFile = stateFile
        }
    }

    public let settings: Settings
    public private(set) var decider: RetrainDecider
    private let logger: Logger
    private let stopFlag = StopFlag()
    private let now: @Sendable () -> Double

    public init(settings: Settings, logger: Logger, now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) throws(TrainError) {
        self.settings = settings
        self.logger = logger
        self.now = now
        if let data = try? Data(contentsOf: settings.stateFile) {
            guard var saved = try? JSONDecoder().decode(RetrainDecider.self, from: data) else {
                throw TrainError("\(settings.stateFile.path) is not a retrain controller state; move it away to start over")
            }
            saved.policy = settings.policy
            decider = saved
        } else {
            decider = RetrainDecider(policy: settings.policy, now: now())
        }
    }

    public func requestStop() { stopFlag.set() }

    /// Runs until stopped (or, with `exitAtEnd`, until the shards topic is drained). Returns the requests sent.
    @discardableResult
    public func run() async throws -> [RetrainRequest] {
        var sent: [RetrainRequest] = []
        let feed = try await ShardAnnouncementFeed(configuration: settings.kafka, topic: settings.shardsTopic, from: decider.nextOffset, logger: logger)
        var producerConfiguration = settings.kafka
        producerConfiguration.setDefault("enable.idempotence", "true")
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        defer { Task { await feed.close() } }
        var sinceSave = 0
        while !stopFlag.isSet {
            if decider.nextOffset >= (try await feed.end()) {
                if let request = decider.check(now: now()) { try await publish(request, producer); sent.append(request) }
                if settings.exitAtEnd { break }
                try saveState()
                try await Task.sleep(nanoseconds: 500_000_000)
                continue
            }
            guard let (offset, result) = try await feed.next() else { break }
            switch result {
            case .failure(let error):
                logger.warning("skipping shards-topic event at offset \(offset): \(error.reason)")
                decider.skip(offset: offset)
            case .success(let announcement):
                let url = announcement.path.hasPrefix("/") || settings.shardsRoot == nil
                    ? URL(fileURLWithPath: announcement.path) : settings.shardsRoot!.appendingPathComponent(announcement.path)
                let profile: DataProfile
                do { profile = try DataProfile.of(shard: url, sha256: announcement.sha256) } catch {
                    logger.warning("shard \(announcement.name) is not counted: \(error.reason)")
                    decider.skip(offset: offset)
                    continue
                }
                if let request = decider.observe(announcement, profile: profile, offset: offset, now: now()) {
                    try await publish(request, producer)
                    sent.append(request)
                    sinceSave = 0
                }
            }
            sinceSave += 1
            if sinceSave >= 20 {
                try saveState()
                sinceSave = 0
            }
        }
        try saveState()
        await producer.shutdown()
        return sent
    }

    private func publish(_ request: RetrainRequest, _ producer: KafkaProducer) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let value = try encoder.encode(request)
        _ = try await producer.send(ProducerMessage(topic: settings.trainTopic, key: Array(request.id.utf8), value: Array(value)))
        logger.notice("retrain request \(request.id): \(request.reasons.joined(separator: "; "))")
        try saveState()
    }

    private func saveState() throws(TrainError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(decider) else { throw TrainError("cannot encode the controller state") }
        try? FileManager.default.createDirectory(at: settings.stateFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Durable.writeAtomically(data, to: settings.stateFile)
    }
}
