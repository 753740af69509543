public import Foundation

/// A small, seeded source of realistic sample envelopes (English and Chinese web pages, forum posts and docs)
/// for the demo and for smoke tests. Deterministic for a given seed.
public struct SampleEnvelopes: Sendable {
    /// One generated record: the raw topic it belongs in, its key and its JSON envelope.
    public struct Sample: Sendable {
        public var topic: String
        public var key: String
        public var value: [UInt8]
    }

    private var state: UInt64

    /// A generator seeded with `seed`.
    public init(seed: UInt64) {
        state = seed
    }

    private mutating func nextRandom() -> UInt64 {
        // SplitMix64: tiny, fast and good enough for sample selection.
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private mutating func pick<T>(_ items: [T]) -> T { items[Int(nextRandom() % UInt64(items.count))] }

    private static let englishSubjects = [
        "The city council", "A small team of volunteers", "The research group", "Our maintainers",
        "The river authority", "A local bakery", "The new library",
    ]
    private static let englishVerbs = [
        "announced a plan to", "published a guide on how to", "explained why it is hard to", "decided to",
        "is looking for help to",
    ]
    private static let englishObjects = [
        "restore the old bridge before winter", "measure water quality along the canal",
        "migrate the build system to a faster toolchain", "keep the archive open to everyone",
        "reduce the waiting time for new members",
    ]
    private static let chineseSentences = [
        "今天的会议讨论了城市公园的改造计划。", "研究小组发布了关于水质监测的新报告。", "志愿者们在周末清理了河岸的垃圾。",
        "这篇文档介绍了如何配置数据管道。", "论坛里有人分享了学习编程的经验。", "图书馆将延长开放时间，方便学生复习。",
    ]

    /// The next sample, cycling over `raw.web`, `raw.forum` and `raw.docs`.
    public mutating func next(index: Int, timestamp: Date) -> Sample {
        let kinds = [("raw.web", "web"), ("raw.forum", "forum"), ("raw.docs", "docs")]
        let (topic, source) = kinds[index % kinds.count]
        let chinese = nextRandom() % 3 == 0
        var text = ""
        for _ in 0..<(3 + Int(nextRandom() % 4)) {
            if chinese {
                text += pick(Self.chineseSentences)
            } else {
                text += "\(pick(Self.englishSubjects)) \(pick(Self.englishVerbs)) \(pick(Self.englishObjects)). "
            }
        }
        let id = "\(source)-\(String(format: "%012x", nextRandom() & 0xFFFF_FFFF_FFFF))"
        let envelope: [String: Any] = [
            "id": id, "source": source, "url": "https://example.org/\(source)/\(index)",
            "ts": ISO8601DateFormatter().string(from: timestamp), "text": text.trimmingCharacters(in: .whitespaces),
            "meta": ["lang": chinese ? "zh" : "en"],
        ]
        let data = (try? JSONSerialization.data(withJSONObject: envelope, options: [.sortedKeys])) ?? Data()
        return Sample(topic: topic, key: id, value: Array(data))
    }
}
