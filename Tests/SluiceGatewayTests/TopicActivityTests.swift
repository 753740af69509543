import SluiceKafka
import Testing

@testable import SluiceGateway

@Suite("topic activity")
struct TopicActivityTests {
    @Test func ratesSpanTheWindowAndNewTopicsStartFromZero() throws {
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = "127.0.0.1:1"  // never contacted: samples are recorded by hand
        let activity = try TopicActivity(kafka: kafka, window: 60)
        #expect(activity.rates().isEmpty)
        activity.record(["raw.web": 100], at: 1000)
        #expect(activity.rates() == [.init(topic: "raw.web", perSecond: 0, total: 100)])
        activity.record(["raw.web": 400, "sluice.shards": 10], at: 1030)
        activity.record(["raw.web": 700, "sluice.shards": 20], at: 1060)
        #expect(activity.rates() == [.init(topic: "raw.web", perSecond: 10, total: 700), .init(topic: "sluice.shards", perSecond: 20.0 / 60, total: 20)])
        // A minute on, the base moves to the newest sample at least a window old.
        activity.record(["raw.web": 760, "sluice.shards": 20], at: 1090)
        #expect(activity.rates().first == .init(topic: "raw.web", perSecond: 6, total: 760))
    }
}
