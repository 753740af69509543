internal import Foundation
internal import SluiceText
internal import Synchronization

/// The `generator` source: synthetic but realistic English and Chinese records from several sources, with
/// configurable shares of exact and near duplicates, personal data, junk and undecodable records, so that every
/// pipeline stage has work. Record `i` is a pure function of (`seed`, `i`), so a restart continues the same
/// sequence from the checkpointed index, and two runs with one seed write the same records.
final class GeneratorSource: ConnectorSource, @unchecked Sendable {
    let configuration: ConnectorConfiguration
    private let stopFlag = Atomic<Bool>(false)
    private let checkpoint: Mutex<Int64>
    private let generated = Atomic<Int>(0)
    private let epoch: Date

    init(configuration: ConnectorConfiguration, state: [String: Any]) {
        self.configuration = configuration
        checkpoint = Mutex(state["next"] as? Int64 ?? (state["next"] as? Int).map(Int64.init) ?? 0)
        epoch = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01: timestamps are part of the record.
    }

    func stop() { stopFlag.store(true, ordering: .relaxed) }

    var progressNote: String? {
        let done = generated.load(ordering: .relaxed)
        if let count = configuration.count { return "\(done) of \(count) generated" }
        return "\(done) generated"
    }

    func acknowledged(_ positions: [Int32: SourcePosition]) -> [String: Any] {
        checkpoint.withLock { next in
            if let position = positions[0] { next = max(next, position.offset) }
            return ["next": next, "seed": configuration.seed]
        }
    }

    func run(emitter: Emitter, once: Bool) throws(ConnectorError) {
        if once && configuration.count == nil {
            throw ConnectorError(reason: "\(configuration.name): --once needs `count` for a generator (it has no end otherwise)", errno: nil)
        }
        var index = checkpoint.withLock { $0 }
        let start = Date()
        let firstIndex = index
        var model = SyntheticRecords(configuration: configuration, epoch: epoch)
        while !stopFlag.load(ordering: .relaxed), !emitter.isStopping {
            if let count = configuration.count, index >= Int64(count) { break }
            if let rate = configuration.rate {
                let due = start.addingTimeInterval(Double(index - firstIndex) / rate)
                let wait = due.timeIntervalSinceNow
                if wait > 0 { usleep(UInt32(min(wait, 0.5) * 1_000_000)); continue }
            }
            let record = model.record(index)
            let position = SourcePosition(slot: 0, offset: index + 1, line: index + 1)
            try withRawBytes(record.value) { (value) throws(ConnectorError) in
                try withRawBytes(Array(record.key.utf8)) { (key) throws(ConnectorError) in
                    try emitter.send(key: key, value: value, position: position, origin: [("sluice.source.index", "\(index)")])
                }
            }
            generated.add(1, ordering: .relaxed)
            index += 1
        }
    }
}

/// The record model behind the generator.
struct SyntheticRecords {
    let configuration: ConnectorConfiguration
    let epoch: Date

    struct Record {
        var key: String
        var value: [UInt8]
    }

    enum Kind { case plain, duplicate, nearDuplicate, pii, junk, bad }

    /// SplitMix64 seeded per record.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }
        mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
    }

    func random(_ index: Int64, _ salt: UInt64 = 0) -> Random {
        Random(state: configuration.seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(bitPattern: index) &* 0xD1B5_4A32_D192_ED03 ^ salt)
    }

    func kind(_ index: Int64) -> Kind {
        var random = random(index, 1)
        let u = random.unit()
        var edge = configuration.duplicateRate
        if index > 0 && u < edge { return .duplicate }
        edge += configuration.nearDuplicateRate
        if index > 0 && u < edge { return .nearDuplicate }
        edge += configuration.piiRate
        if u < edge { return .pii }
        edge += configuration.junkRate
        if u < edge { return .junk }
        edge += configuration.badRate
        if u < edge { return .bad }
        return .plain
    }

    mutating func record(_ index: Int64) -> Record {
        var random = random(index)
        let source = configuration.sources[Int(index % Int64(configuration.sources.count))]
        let id = "\(source)-\(configuration.seed)-\(index)"
        let timestamp = Self.rfc3339(epoch.timeIntervalSince1970 + Double(index) * 0.37)
        var text: String
        var chinese: Bool
        switch kind(index) {
        case .plain:
            (text, chinese) = baseText(index, source: source)
        case .duplicate:
            let original = earlier(index, &random)
            (text, chinese) = baseText(original, source: source)
        case .nearDuplicate:
            let original = earlier(index, &random)
            (text, chinese) = baseText(original, source: source)
            text = perturb(text, chinese: chinese, &random)
        case .pii:
            (text, chinese) = baseText(index, source: source)
            text += "\n\n" + personalData(chinese: chinese, &random)
        case .junk:
            chinese = false
            text = junk(&random)
        case .bad:
            return Record(key: id, value: badRecord(id: id, &random))
        }
        var value: [UInt8] = []
        value.append(contentsOf: "{\"id\":".utf8)
        JSONText.appendString(id, to: &value)
        value.append(contentsOf: ",\"source\":".utf8)
        JSONText.appendString(source, to: &value)
        value.append(contentsOf: ",\"url\":".utf8)
        JSONText.appendString("https://\(source).example.org/\(chinese ? "zh" : "en")/\(index)", to: &value)
        value.append(contentsOf: ",\"ts\":".utf8)
        JSONText.appendString(timestamp, to: &value)
        value.append(contentsOf: ",\"meta\":{\"lang\":\"\(chinese ? "zh" : "en")\",\"generator\":true},\"text\":".utf8)
        JSONText.appendString(text, to: &value)
        value.append(UInt8(ascii: "}"))
        return Record(key: id, value: value)
    }

    /// `seconds` since 1970 as an RFC 3339 UTC timestamp, without a formatter object per record.
    static func rfc3339(_ seconds: Double) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }

    private func earlier(_ index: Int64, _ random: inout Random) -> Int64 {
        var candidate = index - 1 - Int64(random.below(Int(min(index, 500))))
        // Follow back to a record that has its own base text.
        var steps = 0
        while candidate > 0, steps < 8, [.duplicate, .nearDuplicate, .junk, .bad].contains(kind(candidate)) {
            candidate -= 1
            steps += 1
        }
        return max(candidate, 0)
    }

    static let subjects = [
        "The city council", "A small team of volunteers", "The research group", "Our maintainers", "The river authority",
        "A local bakery", "The new library", "The school board", "An independent journalist", "The regional hospital",
        "A group of students", "The transit agency", "The open source foundation", "A family-run farm", "The museum staff",
    ]
    static let verbs = [
        "announced a plan to", "published a detailed guide on how to", "explained why it is hard to", "decided to",
        "is looking for help to", "spent the winter trying to", "asked residents whether to", "found a cheaper way to",
        "wrote a short report about efforts to", "will vote next month on a proposal to",
    ]
    static let objects = [
        "restore the old stone bridge before the spring floods", "measure water quality along the northern canal",
        "migrate the build system to a faster toolchain", "keep the archive open to everyone on weekends",
        "reduce the waiting time for new members", "replace the heating in the community hall",
        "plant trees along the main avenue", "translate the manuals into three more languages",
        "train new volunteers for the night shift", "publish the budget in a form anyone can read",
        "repair the roof of the covered market", "collect better data about cycling accidents",
    ]
    static let details = [
        "The cost is estimated at %d thousand euros.", "About %d people attended the first meeting.",
        "Work should take roughly %d weeks if the weather holds.", "A survey found that %d percent of residents agree.",
        "The first phase covers %d kilometres.", "Volunteers logged %d hours last month.",
        "The proposal received %d written comments.", "Prices rose by %d percent over two years.",
    ]
    static let connectives = [
        "Critics say the timeline is too optimistic.", "Supporters argue that waiting would cost more.",
        "Nobody expects the change to be finished quickly.", "The details will be published online.",
        "Several neighbours raised concerns about noise.", "The decision follows a long public consultation.",
        "Similar projects in other towns took longer than planned.", "Questions can be sent to the organisers.",
    ]
    static let chineseSubjects = ["市政府", "研究小组", "社区志愿者", "图书馆", "一家小公司", "学校", "开源社区", "医院", "交通部门", "博物馆"]
    static let chineseVerbs = ["宣布计划", "发布了指南，介绍如何", "正在讨论是否", "决定在明年", "希望居民一起", "花了三个月尝试"]
    static let chineseObjects = [
        "改造城市公园的步道", "监测河流的水质变化", "把构建系统迁移到更快的工具链", "延长周末的开放时间", "减少新成员的等待时间",
        "更换社区礼堂的供暖设备", "在主干道两旁种树", "把使用手册翻译成更多语言", "培训夜班的新志愿者", "公开预算的详细内容",
    ]
    static let chineseDetails = [
        "预计费用约为%d万元。", "第一次会议有%d人参加。", "如果天气允许，工程大约需要%d周。", "调查显示%d%%的居民表示支持。",
        "第一阶段覆盖%d公里。", "志愿者上个月共服务了%d小时。",
    ]
    static let chineseConnectives = [
        "也有人认为时间安排过于乐观。", "支持者表示，再等下去成本会更高。", "具体细节将在网上公布。", "一些邻居担心施工噪音。",
        "这一决定是在长时间征求意见之后做出的。", "有问题可以联系组织者。",
    ]
    static let boilerplate = ["Share this article", "Cookie policy", "All rights reserved.", "Subscribe to our newsletter", "Skip to main content"]

    /// A detail sentence with a plausible number: a share below 100 for percentages, up to 900 otherwise.
    static func detail(_ template: String, _ random: inout Random) -> String {
        let share = template.contains("percent") || template.contains("%%")
        return String(format: template, share ? 3 + random.below(95) : 3 + random.below(900))
    }

    /// A document of its own: 8–16 sentences in English or Chinese, sometimes in HTML or with boilerplate lines.
    func baseText(_ index: Int64, source: String) -> (String, Bool) {
        var random = random(index, 2)
        let chinese = random.unit() < configuration.chineseShare
        var paragraphs: [String] = []
        for _ in 0..<(2 + random.below(3)) {
            var sentences: [String] = []
            for _ in 0..<(3 + random.below(4)) {
                if chinese {
                    switch random.below(3) {
                    case 0: sentences.append(random.pick(Self.chineseSubjects) + random.pick(Self.chineseVerbs) + random.pick(Self.chineseObjects) + "。")
                    case 1: sentences.append(Self.detail(random.pick(Self.chineseDetails), &random))
                    default: sentences.append(random.pick(Self.chineseConnectives))
                    }
                } else {
                    switch random.below(3) {
                    case 0: sentences.append("\(random.pick(Self.subjects)) \(random.pick(Self.verbs)) \(random.pick(Self.objects)).")
                    case 1: sentences.append(Self.detail(random.pick(Self.details), &random))
                    default: sentences.append(random.pick(Self.connectives))
                    }
                }
            }
            paragraphs.append(sentences.joined(separator: chinese ? "" : " "))
        }
        if source == "web" && random.unit() < 0.3 {
            let body = paragraphs.map { "<p>\($0)</p>" }.joined(separator: "\n")
            return ("<html><head><title>Report \(index)</title><script>var t = 1;</script></head><body>\n<nav>Home | News</nav>\n\(body)\n<footer>\(random.pick(Self.boilerplate))</footer></body></html>", chinese)
        }
        if random.unit() < 0.2 { paragraphs.append(random.pick(Self.boilerplate)) }
        if random.unit() < 0.05 { paragraphs[0] = "\u{FEFF}\u{200B}" + paragraphs[0] + "\u{1B}[0m" }
        return (paragraphs.joined(separator: "\n\n"), chinese)
    }

    /// A near duplicate: a few words or characters changed, a line added or dropped.
    func perturb(_ text: String, chinese: Bool, _ random: inout Random) -> String {
        if chinese {
            var characters = Array(text)
            for _ in 0..<(1 + random.below(3)) where !characters.isEmpty {
                characters[random.below(characters.count)] = random.pick(Array("的一是在不了有和人这中大为上个国我以要他时来用们"))
            }
            return String(characters) + (random.unit() < 0.5 ? "（转载）" : "")
        }
        var words = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        for _ in 0..<(1 + random.below(3)) where words.count > 4 {
            words[random.below(words.count)] = random.pick(["new", "old", "local", "large", "recent", "public"])
        }
        return words.joined(separator: " ") + (random.unit() < 0.5 ? "\n\nUpdated." : "")
    }

    /// One or two sentences carrying personal data of several kinds, valid by their checksums.
    func personalData(chinese: Bool, _ random: inout Random) -> String {
        let names = ["anna.meyer", "li.wei", "j.smith", "maria.garcia", "chen.jing"]
        let email = "\(random.pick(names))\(random.below(100))@\(random.pick(["example.com", "mail.example.org", "corp.example.net"]))"
        let phone = "+1 415 555 \(String(format: "%04d", random.below(10_000)))"
        let mobile = "1\(random.pick(["38", "39", "58", "86"]))\(String(format: "%08d", random.below(100_000_000)))"
        let card = luhnNumber(prefix: "4", length: 16, &random)
        let identity = chineseID(&random)
        let address = "10.\(random.below(256)).\(random.below(256)).\(1 + random.below(254))"
        switch random.below(4) {
        case 0: return chinese ? "联系人邮箱：\(email)，手机：\(mobile)。" : "Contact \(email) or call \(phone) for details."
        case 1: return chinese ? "申请人身份证号\(identity)，请核对。" : "Payment was made with card \(card) on Monday."
        case 2: return chinese ? "服务器地址为\(address)，手机\(mobile)。" : "The admin console runs at \(address); mail \(email)."
        default: return chinese ? "银行卡号\(card)，邮箱\(email)。" : "Reach the clerk at \(phone) (card on file: \(card))."
        }
    }

    func luhnNumber(prefix: String, length: Int, _ random: inout Random) -> String {
        var digits = prefix.compactMap { $0.wholeNumberValue }
        while digits.count < length - 1 { digits.append(random.below(10)) }
        var sum = 0
        for (offset, digit) in digits.reversed().enumerated() {
            var value = digit
            if offset % 2 == 0 { value *= 2; if value > 9 { value -= 9 } }
            sum += value
        }
        digits.append((10 - sum % 10) % 10)
        return digits.map(String.init).joined()
    }

    func chineseID(_ random: inout Random) -> String {
        let region = random.pick(["110101", "310104", "440305", "510107"])
        let birth = String(format: "19%02d%02d%02d", 50 + random.below(50), 1 + random.below(12), 1 + random.below(28))
        let body = region + birth + String(format: "%03d", random.below(1000))
        let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        let sum = zip(body.compactMap { $0.wholeNumberValue }, weights).reduce(0) { $0 + $1.0 * $1.1 }
        return body + String(Array("10X98765432")[sum % 11])
    }

    /// Low-quality text the quality stage should drop.
    func junk(_ random: inout Random) -> String {
        switch random.below(4) {
        case 0: return "click here " + String(repeating: "buy now!!! ", count: 5 + random.below(20))
        case 1: return String(repeating: "#$%&*@! ", count: 10 + random.below(30))
        case 2: return "ok"
        default: return (0..<(20 + random.below(20))).map { _ in "lorem" }.joined(separator: " ")
        }
    }

    /// An undecodable record for the pipeline's DLQ: truncated JSON, a text of the wrong type, or invalid UTF-8.
    func badRecord(id: String, _ random: inout Random) -> [UInt8] {
        switch random.below(3) {
        case 0: return Array("{\"id\":\"\(id)\",\"text\":\"cut off in the midd".utf8)
        case 1: return Array("{\"id\":\"\(id)\",\"text\":42}".utf8)
        default: return Array("{\"id\":\"\(id)\",\"text\":\"bad ".utf8) + [0xC3, 0x28] + Array(" bytes\"}".utf8)
        }
    }
}
