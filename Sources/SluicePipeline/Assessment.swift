internal import Foundation
internal import GRDB
internal import SluiceShards
public import SluiceText

/// A second rule set evaluated in tag-only mode (`shadow:` in the configuration); nil parts are the active ones.
public struct ShadowRules: Sendable {
    public var desensitizer: DesensitizerConfiguration?
    public var quality: QualityConfiguration?
    /// A near-duplicate threshold to compare with the active one (the shadow reuses the active fingerprints).
    public var dedupThreshold: Double?
}

/// Settings of the per-source data-quality assessment (`assessment:`).
public struct AssessmentConfiguration: Sendable, Equatable {
    /// Length of one rolling window.
    public var windowSeconds = 60.0
    /// Windows kept for the rolling view and as the baseline of alerts.
    public var windows = 10
    /// A record whose event time (`ts`) is older than this when it arrives is late.
    public var lateAfterSeconds = 3600.0
    /// An alert fires when a rate (drop, PII, a field's completeness, late share) of a window differs from the
    /// mean of the earlier windows by more than this (absolute, 0…1).
    public var alertChange = 0.2
    /// Rates of windows with fewer records than this raise no alert.
    public var alertMinRecords = 50
    public init() {}
}

/// Borderline records go to review (`sluice.quarantine`) instead of being kept or dropped (`quarantine:`).
public struct QuarantineConfiguration: Sendable, Equatable {
    /// A record whose quality score falls in this band (inclusive) is borderline.
    public var qualityScoreMin = 0.45
    public var qualityScoreMax = 0.55
    public init() {}
}

/// What a worker learned about a record beside its verdict, for shadow rules, the assessment and quarantine.
struct RecordProfile: Sendable {
    /// Bits of the optional envelope fields present: ``Field``.
    var present: UInt8 = 0
    var source: String?
    var language: String?
    var otherFields: [String]?
    /// The document time (`ts`), seconds since 1970, when given.
    var eventTime: Double?
    /// Personal-data findings in the record.
    var pii = 0
    /// Where the shadow rules would drop it (`stage/reason`); nil: they would keep it (or there are none).
    var shadow: String?
    var quality: Double?

    enum Field: UInt8, CaseIterable {
        case id = 1, source = 2, url = 4, ts = 8, meta = 16
        var name: String {
            switch self {
            case .id: "id"
            case .source: "source"
            case .url: "url"
            case .ts: "ts"
            case .meta: "meta"
            }
        }
    }

    init() {}

    init(_ document: Document) {
        if document.id != nil { present |= Field.id.rawValue }
        if document.source != nil { present |= Field.source.rawValue }
        if document.url != nil { present |= Field.url.rawValue }
        if document.timestamp != nil { present |= Field.ts.rawValue }
        if document.metaJSON != nil { present |= Field.meta.rawValue }
        source = document.source
        otherFields = document.otherFields
        eventTime = document.timestamp.flatMap(RFC3339Seconds.parse)
    }
}

/// Seconds since 1970 of RFC 3339 timestamps (already validated by the decoder).
enum RFC3339Seconds {
    /// The date and time as if they were UTC (the offset not applied); nil when they are not digits.
    static func civil(_ b: [UInt8]) -> Int? {
        guard b.count >= 19 else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range {
                guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
                value = value * 10 + Int(b[i] - 0x30)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        // Days from civil (proleptic Gregorian).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return (era * 146_097 + doe - 719_468) * 86_400 + hour * 3600 + minute * 60 + second
    }

    /// The instant, with the offset applied (fractions of a second dropped).
    static func parse(_ text: String) -> Double? {
        let b = Array(text.utf8)
        guard let civil = civil(b) else { return nil }
        var i = 19
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
        }
        var seconds = Double(civil)
        if i + 6 <= b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let digits = { (r: Range<Int>) -> Int in r.reduce(0) { $0 * 10 + Int(b[$1] &- 0x30) } }
            let offset = Double(digits((i + 1)..<(i + 3)) * 3600 + digits((i + 4)..<(i + 6)) * 60)
            seconds += b[i] == UInt8(ascii: "+") ? -offset : offset
        }
        return seconds
    }
}

/// Per-source counts of one window, as the assessment accumulates them and the index keeps them
/// (`quality_counts`, written with each checkpoint).
struct SourceCounts: Sendable, Equatable {
    var records = 0
    var dropped = 0
    var withPII = 0
    var quarantined = 0
    /// Records missing each optional field, by ``RecordProfile/Field`` order: id, source, url, ts, meta.
    var missing = [Int](repeating: 0, count: 5)
    var late = 0
    var lagSum = 0.0
    var lagCount = 0
    var languages: [String: Int] = [:]
    var newFields: Set<String> = []

    mutating func add(_ other: SourceCounts) {
        records += other.records
        dropped += other.dropped
        withPII += other.withPII
        quarantined += other.quarantined
        for i in missing.indices { missing[i] += other.missing[i] }
        late += other.late
        lagSum += other.lagSum
        lagCount += other.lagCount
        languages.merge(other.languages, uniquingKeysWith: +)
        newFields.formUnion(other.newFields)
    }

    /// The rates the assessment watches: drop, PII, quarantine, late, and each field's completeness.
    var rates: [String: Double] {
        guard records > 0 else { return [:] }
        let n = Double(records)
        var rates = ["drop_rate": Double(dropped) / n, "pii_rate": Double(withPII) / n, "quarantine_rate": Double(quarantined) / n]
        // Timeliness is measured over records that carry a time.
        let timed = records - missing[3]
        rates["late_rate"] = timed > 0 ? Double(late) / Double(timed) : 0
        for field in RecordProfile.Field.allCases {
            rates["completeness_\(field.name)"] = 1 - Double(missing[fieldIndex(field)]) / n
        }
        if lagCount > 0 { rates["mean_lag_seconds"] = lagSum / Double(lagCount) }
        return rates
    }

    func fieldIndex(_ field: RecordProfile.Field) -> Int { RecordProfile.Field.allCases.firstIndex(of: field)! }
}

/// Rolling per-source windows of the data-quality assessment: counts records, drops, PII, missing fields, late
/// arrivals and event-time lag; notices schema drift (a new envelope field, a new source or language) and sudden
/// changes of a rate against the earlier windows, each reported once as an alert.
final class QualityMonitor {
    struct Alert: Sendable, Equatable {
        var kind: String
        var source: String
        var detail: String
        var json: String
    }

    let configuration: AssessmentConfiguration
    private(set) var windows: [(start: Double, counts: [String: SourceCounts])] = []
    private var knownFields: Set<String>
    private var knownSources: Set<String>
    private var knownLanguages: Set<String>
    /// Drift is reported once there is a baseline: values known from the index, or a closed window.
    private var baseline: Bool

    init(configuration: AssessmentConfiguration, knownFields: Set<String>, knownSources: Set<String>, knownLanguages: Set<String>) {
        self.configuration = configuration
        self.knownFields = knownFields
        self.knownSources = knownSources
        self.knownLanguages = knownLanguages
        baseline = !(knownFields.isEmpty && knownSources.isEmpty && knownLanguages.isEmpty)
    }

    func windowStart(_ time: Double) -> Double { (time / configuration.windowSeconds).rounded(.down) * configuration.windowSeconds }

    /// Counts one record seen at `now` (seconds since 1970); returns the counts to add to the open checkpoint and
    /// any alerts (schema drift at once; rate changes when a window closes).
    func observe(_ profile: RecordProfile, dropped: Bool, quarantined: Bool, now: Double) -> (window: Double, counts: SourceCounts, alerts: [Alert]) {
        var alerts: [Alert] = []
        let start = windowStart(now)
        if let last = windows.last?.start, start > last {
            alerts += closeWindow()
            baseline = true
        }
        if windows.last?.start != start {
            windows.append((start, [:]))
            if windows.count > configuration.windows { windows.removeFirst() }
        }
        let source = profile.source ?? "unknown"
        var counts = SourceCounts()
        counts.records = 1
        counts.dropped = dropped ? 1 : 0
        counts.quarantined = quarantined ? 1 : 0
        counts.withPII = profile.pii > 0 ? 1 : 0
        for (i, field) in RecordProfile.Field.allCases.enumerated() where profile.present & field.rawValue == 0 { counts.missing[i] = 1 }
        if let event = profile.eventTime {
            let lag = now - event
            counts.lagSum = lag
            counts.lagCount = 1
            if lag > configuration.lateAfterSeconds { counts.late = 1 }
        }
        if let language = profile.language {
            counts.languages[language] = 1
            if knownLanguages.insert(language).inserted && baseline { alerts.append(drift("new_language", source: source, value: language)) }
        }
        if profile.source != nil, knownSources.insert(source).inserted, baseline {
            alerts.append(drift("new_source", source: source, value: source))
        }
        for field in profile.otherFields ?? [] where knownFields.insert(field).inserted {
            counts.newFields.insert(field)
            if baseline { alerts.append(drift("new_field", source: source, value: field)) }
        }
        windows[windows.count - 1].counts[source, default: SourceCounts()].add(counts)
        return (start, counts, alerts)
    }

    private func drift(_ kind: String, source: String, value: String) -> Alert {
        Alert(
            kind: "schema_drift", source: source, detail: "\(kind) \(value)",
            json: "{\"type\":\"schema_drift\",\"change\":\"\(kind)\",\"value\":\(JSONText.string(value)),\"source\":\(JSONText.string(source))}")
    }

    /// Compares the window that just ended with the mean of the earlier ones, per source and rate.
    private func closeWindow() -> [Alert] {
        guard let (start, latest) = windows.last, windows.count >= 2 else { return [] }
        var alerts: [Alert] = []
        for (source, counts) in latest.sorted(by: { $0.key < $1.key }) where counts.records >= configuration.alertMinRecords {
            let earlier = windows.dropLast().compactMap { $0.counts[source] }.filter { $0.records >= configuration.alertMinRecords }
            guard !earlier.isEmpty else { continue }
            let now = counts.rates
            for (rate, value) in now.sorted(by: { $0.key < $1.key }) where rate != "mean_lag_seconds" {
                let baseline = earlier.map { $0.rates[rate] ?? 0 }.reduce(0, +) / Double(earlier.count)
                guard abs(value - baseline) > configuration.alertChange else { continue }
                alerts.append(Alert(
                    kind: "quality_change", source: source, detail: "\(rate) \(baseline) → \(value)",
                    json: String(
                        format: "{\"type\":\"quality_change\",\"source\":%@,\"rate\":\"%@\",\"baseline\":%.4f,\"value\":%.4f,\"window_start\":%.0f,\"records\":%d}",
                        JSONText.string(source), rate, baseline, value, start, counts.records)))
            }
        }
        return alerts
    }

    /// The latest window's rates per source (for metrics).
    var latestRates: [String: [String: Double]] {
        guard let latest = windows.last else { return [:] }
        return latest.counts.mapValues(\.rates)
    }
}

/// Where an assessment count belongs in a checkpoint: its window and source.
struct QualityKey: Hashable, Sendable {
    var window: Double
    var source: String
}

/// One shadow-rule comparison of a checkpoint: the record's source and language, and both verdicts.
struct ShadowKey: Hashable, Sendable {
    var source: String
    var language: String
    var active: String
    var shadow: String
}

/// The assessment's and shadow rules' rows of the index, written in the transaction of each checkpoint (so they
/// count every record exactly once), and read back by `sluice quality report` and dataset versions.
enum AssessmentStore {
    static func write(quality: [QualityKey: SourceCounts], shadow: [ShadowKey: Int], checkpoint: PartitionCheckpoint, in db: Database) throws {
        if !quality.isEmpty {
            let insert = try db.cachedStatement(sql: """
                INSERT INTO quality_counts (topic, partition, first_offset, window_start, source, records, dropped, with_pii, quarantined,
                    missing_id, missing_source, missing_url, missing_ts, missing_meta, late, lag_sum, lag_count, languages, new_fields)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let field = try db.cachedStatement(sql: "INSERT OR IGNORE INTO schema_fields (field, source, first_seen) VALUES (?, ?, ?)")
            for (key, c) in quality {
                let window = key.window, source = key.source
                let languages = "{" + c.languages.sorted { $0.key < $1.key }.map { "\(JSONText.string($0.key)):\($0.value)" }.joined(separator: ",") + "}"
                let fields = "[" + c.newFields.sorted().map(JSONText.string).joined(separator: ",") + "]"
                try insert.execute(arguments: [
                    checkpoint.topic, checkpoint.partition, checkpoint.firstOffset, window, source, c.records, c.dropped, c.withPII,
                    c.quarantined, c.missing[0], c.missing[1], c.missing[2], c.missing[3], c.missing[4], c.late, c.lagSum, c.lagCount,
                    languages, fields,
                ])
                for name in c.newFields { try field.execute(arguments: [name, source, window]) }
            }
        }
        if !shadow.isEmpty {
            let insert = try db.cachedStatement(sql: """
                INSERT INTO shadow_counts (topic, partition, first_offset, source, lang, active, shadow, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for (key, n) in shadow {
                try insert.execute(arguments: [checkpoint.topic, checkpoint.partition, checkpoint.firstOffset, key.source, key.language, key.active, key.shadow, n])
            }
        }
    }

    /// Per-source totals over all checkpoints (or windows at or after `since`).
    static func totals(_ db: Database, since: Double = -.infinity) throws -> [String: SourceCounts] {
        var totals: [String: SourceCounts] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT * FROM quality_counts WHERE window_start >= ?", arguments: [since]) {
            var c = SourceCounts()
            c.records = row["records"]
            c.dropped = row["dropped"]
            c.withPII = row["with_pii"]
            c.quarantined = row["quarantined"]
            c.missing = [row["missing_id"], row["missing_source"], row["missing_url"], row["missing_ts"], row["missing_meta"]]
            c.late = row["late"]
            c.lagSum = row["lag_sum"]
            c.lagCount = row["lag_count"]
            if let languages = (try? JSONSerialization.jsonObject(with: Data((row["languages"] as String).utf8))) as? [String: Int] { c.languages = languages }
            if let fields = (try? JSONSerialization.jsonObject(with: Data((row["new_fields"] as String).utf8))) as? [String] { c.newFields = Set(fields) }
            totals[row["source"] as String, default: SourceCounts()].add(c)
        }
        return totals
    }

    /// The dataset-version summary: each source's rates.
    static func summary(_ index: ShardIndex) throws -> [String: [String: Double]] {
        try index.writer.read { db in try totals(db).mapValues(\.rates) }
    }
}

extension ShardIndex {
    /// Fields, sources and languages the assessment has seen before (its drift baseline after a restart).
    func assessmentBaseline() throws -> (fields: Set<String>, sources: Set<String>, languages: Set<String>) {
        try writer.read { db in
            let fields = Set(try String.fetchAll(db, sql: "SELECT field FROM schema_fields"))
            let sources = Set(try String.fetchAll(db, sql: "SELECT DISTINCT source FROM quality_counts WHERE source != 'unknown'"))
            var languages = Set<String>()
            for text in try String.fetchAll(db, sql: "SELECT DISTINCT languages FROM quality_counts") {
                if let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] { languages.formUnion(object.keys) }
            }
            return (fields, sources, languages)
        }
    }
}
