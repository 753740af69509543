internal import Foundation
internal import GRDB
public import SluiceShards
internal import SluiceText

/// `sluice quality report`: the data-quality assessment per source and the shadow rule set's comparison with the
/// active rules, from a dataset's index.
public enum QualityReport {
    /// Each source's rates, as dataset versions summarise them.
    public static func summary(_ index: ShardIndex) throws(ShardError) -> [String: [String: Double]] {
        try ShardError.wrap("reading the assessment") { try AssessmentStore.summary(index) }
    }

    /// The report as one JSON object: per source (records, rates, completeness per field, languages), schema
    /// fields first seen, the last `windows` windows, and the shadow comparison (what the shadow rules would drop
    /// that the active rules keep, and the reverse, by rule, source and language).
    public static func json(_ index: ShardIndex, windows: Int = 10) throws(ShardError) -> String {
        try ShardError.wrap("building the quality report") {
            try index.writer.read { db in
                let totals = try AssessmentStore.totals(db)
                var sources: [String] = []
                for (source, counts) in totals.sorted(by: { $0.key < $1.key }) {
                    let rates = counts.rates
                    let completeness = RecordProfile.Field.allCases.map { "\"\($0.name)\":\(format(rates["completeness_\($0.name)"] ?? 0))" }
                    let languages = counts.languages.sorted { $0.key < $1.key }.map { "\(JSONText.string($0.key)):\($0.value)" }
                    var entry = "\(JSONText.string(source)):{\"records\":\(counts.records),\"dropped\":\(counts.dropped)"
                    for rate in ["drop_rate", "pii_rate", "quarantine_rate", "late_rate"] { entry += ",\"\(rate)\":\(format(rates[rate] ?? 0))" }
                    entry += ",\"mean_lag_seconds\":\(rates["mean_lag_seconds"].map(format) ?? "null")"
                    entry += ",\"completeness\":{\(completeness.joined(separator: ","))},\"languages\":{\(languages.joined(separator: ","))}}"
                    sources.append(entry)
                }
                let fields = try Row.fetchAll(db, sql: "SELECT * FROM schema_fields ORDER BY first_seen, field").map {
                    "{\"field\":\(JSONText.string($0["field"])),\"source\":\(JSONText.string($0["source"])),\"first_seen\":\(format($0["first_seen"]))}"
                }
                let recent = try Row.fetchAll(db, sql: """
                    SELECT window_start, source, SUM(records) AS records, SUM(dropped) AS dropped, SUM(with_pii) AS pii
                    FROM quality_counts GROUP BY window_start, source ORDER BY window_start DESC, source LIMIT ?
                    """, arguments: [windows * max(1, totals.count)]).reversed().map { row in
                    let records: Int = row["records"]
                    return "{\"start\":\(format(row["window_start"])),\"source\":\(JSONText.string(row["source"])),\"records\":\(records)"
                        + ",\"drop_rate\":\(format(Double(row["dropped"] as Int) / Double(max(1, records))))"
                        + ",\"pii_rate\":\(format(Double(row["pii"] as Int) / Double(max(1, records))))}"
                }
                return "{\"sources\":{\(sources.joined(separator: ","))},\"schema_fields\":[\(fields.joined(separator: ","))],"
                    + "\"windows\":[\(recent.joined(separator: ","))],\"shadow\":\(try shadow(db))}"
            }
        }
    }

    /// The shadow comparison: records compared, agreements, and per rule the records one side drops and the
    /// other keeps, by source and language.
    static func shadow(_ db: Database) throws -> String {
        let rows = try Row.fetchAll(db, sql: "SELECT source, lang, active, shadow, SUM(n) AS n FROM shadow_counts GROUP BY source, lang, active, shadow")
        guard !rows.isEmpty else { return "null" }
        var total = 0, agree = 0
        var wouldDrop: [String: (Int, [String: Int], [String: Int])] = [:]
        var wouldKeep: [String: (Int, [String: Int], [String: Int])] = [:]
        for row in rows {
            let n: Int = row["n"], active: String = row["active"], shadow: String = row["shadow"]
            let source: String = row["source"], language: String = row["lang"]
            total += n
            if active == shadow { agree += n; continue }
            func add(_ table: inout [String: (Int, [String: Int], [String: Int])], _ rule: String) {
                var entry = table[rule] ?? (0, [:], [:])
                entry.0 += n
                entry.1[source, default: 0] += n
                entry.2[language, default: 0] += n
                table[rule] = entry
            }
            if active == "kept" { add(&wouldDrop, shadow) } else if shadow == "kept" { add(&wouldKeep, active) } else { add(&wouldDrop, shadow) }
        }
        func render(_ table: [String: (Int, [String: Int], [String: Int])]) -> String {
            func counts(_ d: [String: Int]) -> String { "{" + d.sorted { $0.key < $1.key }.map { "\(JSONText.string($0.key)):\($0.value)" }.joined(separator: ",") + "}" }
            return "{" + table.sorted { $0.key < $1.key }.map { "\(JSONText.string($0.key)):{\"records\":\($0.value.0),\"by_source\":\(counts($0.value.1)),\"by_language\":\(counts($0.value.2))}" }
                .joined(separator: ",") + "}"
        }
        return "{\"records\":\(total),\"agree\":\(agree),\"would_drop\":\(render(wouldDrop)),\"would_keep\":\(render(wouldKeep))}"
    }

    static func format(_ value: Double) -> String { value.isFinite ? String(format: "%.4g", value) : "null" }
}
