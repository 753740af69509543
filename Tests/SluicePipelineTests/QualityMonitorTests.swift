import Testing

@testable import SluicePipeline

@Suite("data-quality assessment")
struct QualityMonitorTests {
    static func profile(source: String = "web", ts: Double? = nil, fields: [String]? = nil, pii: Int = 0) -> RecordProfile {
        var profile = RecordProfile()
        profile.source = source
        profile.present = RecordProfile.Field.id.rawValue | RecordProfile.Field.source.rawValue | (ts == nil ? 0 : RecordProfile.Field.ts.rawValue)
        profile.eventTime = ts
        profile.otherFields = fields
        profile.pii = pii
        profile.language = "en"
        return profile
    }

    @Test func aSuddenRateChangeRaisesOneAlertWhenItsWindowCloses() {
        var configuration = AssessmentConfiguration()
        configuration.windowSeconds = 10
        configuration.alertMinRecords = 5
        configuration.alertChange = 0.2
        let monitor = QualityMonitor(configuration: configuration, knownFields: [], knownSources: [], knownLanguages: [])
        var alerts: [QualityMonitor.Alert] = []
        for t in 0..<10 { alerts += monitor.observe(Self.profile(ts: Double(t) - 5), dropped: false, quarantined: false, now: Double(t)).alerts }
        for t in 10..<20 { alerts += monitor.observe(Self.profile(ts: Double(t) - 7200), dropped: true, quarantined: false, now: Double(t)).alerts }
        #expect(alerts.isEmpty, "nothing closes before the second window ends")
        alerts += monitor.observe(Self.profile(), dropped: false, quarantined: false, now: 21).alerts
        let kinds = alerts.map { $0.detail.split(separator: " ").first.map(String.init) ?? "" }
        #expect(kinds.contains("drop_rate") && kinds.contains("late_rate"), "\(alerts.map(\.detail))")
        #expect(alerts.allSatisfy { $0.kind == "quality_change" && $0.source == "web" && $0.json.hasPrefix("{\"type\":\"quality_change\"") })
        let rates = monitor.windows.dropLast().last?.counts["web"]?.rates ?? [:]
        #expect(rates["drop_rate"] == 1 && rates["late_rate"] == 1 && rates["completeness_url"] == 0 && rates["completeness_id"] == 1)
        #expect(rates["mean_lag_seconds"] == 7200)
    }

    @Test func schemaDriftIsReportedOnceABaselineExists() {
        let monitor = QualityMonitor(configuration: AssessmentConfiguration(), knownFields: ["license"], knownSources: ["web"], knownLanguages: ["en"])
        let first = monitor.observe(Self.profile(fields: ["license", "author"]), dropped: false, quarantined: false, now: 0).alerts
        #expect(first.map(\.detail) == ["new_field author"])
        let second = monitor.observe(Self.profile(source: "forum", fields: ["author"]), dropped: false, quarantined: false, now: 1).alerts
        #expect(second.map(\.detail) == ["new_source forum"])
        let fresh = QualityMonitor(configuration: AssessmentConfiguration(), knownFields: [], knownSources: [], knownLanguages: [])
        #expect(fresh.observe(Self.profile(fields: ["x"]), dropped: false, quarantined: false, now: 0).alerts.isEmpty, "no baseline yet")
    }

    @Test func timestampsParseWithOffsets() {
        #expect(RFC3339Seconds.parse("1970-01-02T00:00:00Z") == 86_400)
        #expect(RFC3339Seconds.parse("2024-01-01T01:00:00+01:00") == RFC3339Seconds.parse("2024-01-01T00:00:00Z"))
        #expect(RFC3339Seconds.parse("2024-01-01T00:00:00.250-00:30") == RFC3339Seconds.parse("2024-01-01T00:30:00Z"))
    }
}
