/// The quality stage: a language label, Gopher / C4 / FineWeb rules with datatrove's thresholds and reason
/// names, Chinese-aware variants, and a score in 0…1.
///
/// Writes `document.language` (`en` for Latin-script text, `zh`, `other`), the signal `quality.score` (the
/// share of rules passed) and `quality.fail.<rule>` = 1 for each failed rule, enforced or not. A failed
/// enforced rule drops the document with the rule's name as the reason; in shadow mode the stage only sets
/// `quality.would_drop`.
public struct QualityFilter: TextStage {
    public let name = "quality"
    public let configuration: QualityConfiguration
    private var measurer = TextMeasurer()
    private var failed: [QualityRule] = []
    private let nGramMinimumWords: Int
    private static let failureSignals: [String] = QualityRule.allCases.map { "quality.fail.\($0.rawValue)" }
    /// ``QualityConfiguration/enforced`` by rule ordinal, and the same per source.
    private let enforcedMask: [Bool]
    private let enforcedMaskBySource: [String: [Bool]]

    public init(_ configuration: QualityConfiguration = QualityConfiguration()) {
        self.configuration = configuration
        self.nGramMinimumWords = configuration.thresholds.values.map(\.repetitionMinimumWords).min() ?? 0
        let mask = { (rules: Set<QualityRule>) in QualityRule.allCases.map { rules.contains($0) } }
        self.enforcedMask = mask(configuration.enforced)
        self.enforcedMaskBySource = configuration.enforcedBySource.mapValues(mask)
    }

    /// Every rule's outcome for a text, without changing anything (for evaluation).
    public mutating func evaluate(_ text: [UInt8]) -> (language: String, failed: [QualityRule], score: Double) {
        let (language, total) = text.withUnsafeBufferPointer { judge($0) }
        return (language, failed, 1 - Double(failed.count) / Double(total))
    }

    /// The raw measurements behind the rules, by name (for tuning thresholds offline).
    public mutating func measurements(_ text: [UInt8]) -> [String: Double] {
        let zh = text.withUnsafeBufferPointer { Shingler.isCharacterMode($0) }
        measurer.shortLineLength = zh ? 10 : 30
        let s = text.withUnsafeBufferPointer { measurer.measure($0, spacedNGrams: !zh) }
        let words = Double(max(1, s.words))
        let lines = Double(max(1, s.lines))
        let characters = Double(max(1, s.characters))
        var result: [String: Double] = [
            "zh": zh ? 1 : 0, "words": Double(s.words), "non_symbol_words": Double(s.nonSymbolWords),
            "mean_word_length": Double(s.nonSymbolWordCharacters) / Double(max(1, s.nonSymbolWords)),
            "hash_ratio": Double(s.hashes) / words, "ellipsis_ratio": Double(s.ellipses) / words,
            "bullet_lines": Double(s.bulletLines) / lines, "end_ellipsis_lines": Double(s.endEllipsisLines) / lines,
            "alpha_words": Double(s.alphabeticWords) / words, "stop_words": Double(s.stopWords),
            "dup_para_frac": Double(s.duplicateParagraphs) / Double(max(1, s.paragraphs)),
            "dup_para_char_frac": Double(s.duplicateParagraphCharacters) / characters,
            "dup_line_frac": Double(s.duplicateLines) / lines,
            "dup_line_char_frac": Double(s.duplicateLineCharacters) / characters,
            "sentences": Double(s.sentences), "line_punct": Double(s.terminalPunctuationLines) / lines,
            "short_lines": Double(s.shortLines) / lines, "list_ratio": Double(s.lines) / words,
            "mojibake": Double(s.latin1) / Double(max(1, s.visibleCharacters)),
            "cjk": Double(s.cjk), "cjk_common": s.cjk == 0 ? 1 : Double(s.cjkCommon) / Double(s.cjk),
            "char_run": Double(s.longestLetterRun), "lorem": s.lorem ? 1 : 0,
            "lorem_words": Double(s.loremWords) / words, "curly": s.curlyBracket ? 1 : 0,
            "lines": Double(s.lines),
        ]
        for n in 2...4 { result["top_\(n)"] = s.topNGram[n - 2] }
        for n in 5...10 { result["dup_\(n)"] = s.duplicatedNGram[n - 5] }
        result["language_zh"] = s.language == "zh" ? 1 : 0
        return result
    }

    public mutating func process(_ document: inout Document) -> StageVerdict {
        let (language, total) = document.text.withUnsafeBufferPointer { judge($0) }
        document.language = language
        document.signals.set("quality.score", 1 - Double(failed.count) / Double(total))
        for rule in failed { document.signals.set(Self.failureSignals[rule.ordinal], 1) }
        let enforced = document.source.flatMap { enforcedMaskBySource[$0] } ?? enforcedMask
        guard let first = failed.first(where: { enforced[$0.ordinal] }) else { return .keep }
        if configuration.shadow {
            document.signals.set("quality.would_drop", 1)
            return .keep
        }
        return .drop(reason: first.rawValue)
    }

    /// The language and how many rules applied; ``failed`` holds the failed rules in FineWeb's order (Gopher
    /// repetition, Gopher quality, C4, FineWeb), then Sluice's own; the first enforced one is the drop reason.
    private mutating func judge(_ bytes: UnsafeBufferPointer<UInt8>) -> (String, Int) {
        // The language decides the thresholds; it needs a first look at the scripts.
        let zh = Shingler.isCharacterMode(bytes)
        let provisional = zh ? QualityThresholds.chinese : QualityThresholds.english
        let guess = configuration.thresholds[zh ? "zh" : "en"] ?? provisional
        measurer.shortLineLength = guess.shortLineLength
        let s = measurer.measure(bytes, spacedNGrams: !zh, nGramMinimumWords: nGramMinimumWords)
        let language = s.language
        let t = configuration.thresholds[language] ?? configuration.thresholds["en"] ?? .english
        failed.removeAll(keepingCapacity: true)
        var total = 0
        func check(_ rule: QualityRule, _ fails: Bool) {
            total += 1
            if fails { failed.append(rule) }
        }
        let words = Double(max(1, s.words))
        let lines = Double(max(1, s.lines))
        // Gopher repetition.
        let characters = Double(max(1, s.characters))
        check(.dupParagraphFraction, Double(s.duplicateParagraphs) / Double(max(1, s.paragraphs)) > t.maximumDuplicateParagraphRatio)
        check(.dupParagraphCharacterFraction, Double(s.duplicateParagraphCharacters) / characters > t.maximumDuplicateParagraphCharacterRatio)
        check(.dupLineFraction, Double(s.duplicateLines) / lines > t.maximumDuplicateLineRatio)
        check(.dupLineCharacterFraction, Double(s.duplicateLineCharacters) / characters > t.maximumDuplicateLineCharacterRatio)
        let repetition = s.words >= t.repetitionMinimumWords
        for (index, rule) in [QualityRule.top2Gram, .top3Gram, .top4Gram].enumerated() {
            check(rule, repetition && s.topNGram[index] > t.maximumTopNGramRatio[index])
        }
        for (index, rule) in [QualityRule.duplicated5, .duplicated6, .duplicated7, .duplicated8, .duplicated9, .duplicated10].enumerated() {
            check(rule, repetition && s.duplicatedNGram[index] > t.maximumDuplicatedNGramRatio[index])
        }
        // Gopher quality.
        check(.gopherShortDoc, s.nonSymbolWords < t.minimumWords)
        check(.gopherLongDoc, s.nonSymbolWords > t.maximumWords)
        if language != "zh" {
            let mean = Double(s.nonSymbolWordCharacters) / Double(max(1, s.nonSymbolWords))
            check(.gopherBelowAverage, mean < t.minimumMeanWordLength)
            check(.gopherAboveAverage, mean > t.maximumMeanWordLength)
        }
        check(.gopherTooManyHashes, Double(s.hashes) / words > t.maximumHashRatio)
        check(.gopherTooManyEllipsis, Double(s.ellipses) / words > t.maximumEllipsisRatio)
        check(.gopherTooManyBullets, Double(s.bulletLines) / lines > t.maximumBulletLineRatio)
        check(.gopherTooManyEndEllipsis, Double(s.endEllipsisLines) / lines > t.maximumEndEllipsisLineRatio)
        check(.gopherBelowAlpha, Double(s.alphabeticWords) / words < t.minimumAlphabeticWordRatio)
        let punctuated = Double(s.terminalPunctuationLines) / lines >= t.minimumTerminalPunctuationLineRatio
        check(.gopherStopWords, s.stopWords < t.minimumStopWords && (s.words >= t.stopWordsMinimumWords || !punctuated))
        // C4 (document-level rules; the line rules are the clean stage's job).
        check(.c4LoremIpsum, s.lorem || Double(s.loremWords) / words > t.maximumLoremWordRatio)
        check(.c4CurlyBracket, s.curlyBracket)
        check(.c4TooFewSentences, s.sentences < t.minimumSentences)
        // FineWeb.
        check(.finewebLinePunctuation, Double(s.terminalPunctuationLines) / lines < t.minimumTerminalPunctuationLineRatio)
        check(.finewebShortLines, Double(s.shortLines) / lines > t.maximumShortLineRatio)
        check(.finewebCharacterDuplicates, Double(s.duplicateLineCharacters) / characters > t.maximumDuplicateLineCharacters)
        check(.finewebListRatio, Double(s.lines) / words > t.maximumNewlinesPerWord)
        // Sluice.
        check(.mojibake, Double(s.latin1) / Double(max(1, s.visibleCharacters)) > t.maximumMojibakeRatio)
        if s.cjk >= 20 { check(.rareCJK, Double(s.cjkCommon) / Double(s.cjk) < t.minimumCommonCJKRatio) }
        check(.characterRun, s.longestLetterRun > t.maximumCharacterRun)
        return (language, total)
    }
}
