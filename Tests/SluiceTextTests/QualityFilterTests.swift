import Testing

@testable import SluiceText

@Suite("QualityFilter")
struct QualityFilterTests {
    private let article = """
        The river that runs through the old town has been the subject of many studies over the years. Scientists \
        from the university have measured its flow, its temperature and the number of fish that live in it. They \
        found that the water is cleaner now than it was twenty years ago, and that the fish have come back to \
        places where they had not been seen for a long time. The town council wants to keep it that way, and it \
        has asked the people who live along the banks to help with the work.
        """

    private let chinese = """
        这条河流经老城区，多年来一直是许多研究的对象。大学的科学家们测量了它的流量、温度以及生活在其中的鱼类数量。\
        他们发现，现在的水比二十年前更干净了，鱼也回到了很久没有出现过的地方。市议会希望保持这种状况，\
        并请住在河岸边的人们帮助完成这项工作。
        """

    private func judge(_ text: String, _ configuration: QualityConfiguration = QualityConfiguration(), source: String? = nil)
        -> (StageVerdict, Document)
    {
        var stage = QualityFilter(configuration)
        var document = Document(text: Array(text.utf8), source: source)
        let verdict = stage.process(&document)
        return (verdict, document)
    }

    /// C4's rule: "lorem ipsum" anywhere in the lowercased text drops the document, however little of it there is;
    /// the phrase split by another space character or inside other words' letters does not count.
    @Test func loremIpsumAnywhereDropsTheDocument() {
        let placeholder = article + " The designer left Lorem Ipsum in the last paragraph of the brochure."
        #expect(judge(placeholder).0 == .drop(reason: "lorem_ipsum"))
        #expect(judge(article + " The designer left lorem\tipsum in the brochure.").0 == .keep)
        #expect(judge(article + " The designer left loremipsum in the brochure.").0 == .keep)
        #expect(judge(article).0 == .keep)
    }

    @Test func keepsCleanEnglishAndChineseProse() {
        let (english, englishDocument) = judge(article)
        #expect(english == .keep)
        #expect(englishDocument.language == "en")
        #expect((englishDocument.signals["quality.score"] ?? 0) > 0.9)
        let (zh, zhDocument) = judge(chinese)
        #expect(zh == .keep)
        #expect(zhDocument.language == "zh")
    }

    @Test func labelsMixedTextByItsMajorityScript() {
        #expect(judge(chinese + " See also the English summary.").1.language == "zh")
        #expect(judge(article + " 参见中文版。").1.language == "en")
        #expect(judge("Это длинный русский текст о реке, которая течёт через старый город и его окрестности.").1.language == "other")
    }

    @Test(arguments: [
        ("ok thanks", "gopher_short_doc"),
        ("buy cheap keygen crack download free vpn best price now online torrent hd full version coupon", "gopher_enough_stop_words"),
        ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud.", "lorem_ipsum"),
        ("±¾±¨Ñ¶¼ÇÕßÕÔÐËÁÖ±¨µÀ£º±±¾©ÊÐÕþÐ½ô½ôÎ§ÈÆ¼Ó¿ì·¢Õ¹¸ßÐÂ¼¼Êõ²úÒµ¡¢½¨Á¢¿Æ¼¼·¢Õ¹·çÏÕ»ù½ð£¬¾¡ÐÄ½ßÁ¦ÌáºÃÌá°¸", "mojibake"),
        ("榯屼蟊鬯戔虇偀振緣喰狏鬸韥眈虨籺跔痺鵊攁闯塹曹獮娂第嗺熞妴賟挣炃崲叉璙癚罭眘侀觭箟臯決勐关擣菾簡畸蛺矤臎澀", "cjk_rare_characters"),
        ("-■❤:\\❤!=^=■!#^.^^.-★:●❤\\■^\\+\\•☆★☆~|→•=•❤/.#+;→+\\■ =♪☆!!*☆-♪*;~★ *→/•^★♪\\→|;-☆*?❤●?:*.+=~|!☆#:^→+■→", "gopher_below_alpha_threshold"),
    ])
    func dropsJunkWithDatatroveReasonNames(text: String, reason: String) {
        let (verdict, document) = judge(text)
        #expect(document.signals["quality.fail.\(reason)"] == 1, "\(document.signals.values)")
        #expect(!verdict.isKeep)
    }

    @Test func dropsRepeatedLines() {
        let spam = Array(repeating: "Earn $1954 per day working from home, click http://example.info/abc now", count: 8)
            .joined(separator: "\n")
        let (verdict, _) = judge(spam)
        #expect(verdict == .drop(reason: "dup_line_frac"))
    }

    @Test func shadowModeTagsWithoutDropping() {
        var configuration = QualityConfiguration()
        configuration.shadow = true
        let (verdict, document) = judge("ok thanks", configuration)
        #expect(verdict == .keep)
        #expect(document.signals["quality.would_drop"] == 1)
    }

    @Test func perSourcePoliciesOverrideTheDefault() {
        var configuration = QualityConfiguration()
        configuration.enforcedBySource["chat"] = QualityRule.defaultEnforced.subtracting([.gopherShortDoc, .gopherStopWords])
        #expect(judge("sounds good, see you at the station tomorrow", configuration, source: "chat").0 == .keep)
        #expect(!judge("sounds good, see you at the station tomorrow", configuration, source: "web").0.isKeep)
    }

    @Test func datatrovePresetUsesItsThresholds() {
        // 44 words: enough for Sluice's default (15), not for Gopher's 50.
        let short = article.split(separator: " ").prefix(44).joined(separator: " ")
        #expect(judge(short).0 == .keep)
        #expect(judge(short, .datatrove).0 == .drop(reason: "gopher_short_doc"))
    }
}
