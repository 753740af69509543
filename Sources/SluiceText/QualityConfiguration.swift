/// Thresholds of the quality rules for one language. Rule names and the ``datatrove`` values follow datatrove's
/// Gopher, C4 and FineWeb filters; Sluice's defaults (``english``, ``chinese``) relax five of them for short,
/// technical and Chinese text (see docs/text-stages.md for the source of each number and the measurements).
public struct QualityThresholds: Sendable, Equatable {
    public var minimumWords = 50
    public var maximumWords = 100_000
    public var minimumMeanWordLength = 3.0
    public var maximumMeanWordLength = 10.0
    public var maximumHashRatio = 0.1
    public var maximumEllipsisRatio = 0.1
    public var maximumBulletLineRatio = 0.9
    public var maximumEndEllipsisLineRatio = 0.3
    public var minimumAlphabeticWordRatio = 0.8
    public var minimumStopWords = 2
    public var maximumDuplicateLineRatio = 0.3
    public var maximumDuplicateParagraphRatio = 0.3
    public var maximumDuplicateLineCharacterRatio = 0.2
    public var maximumDuplicateParagraphCharacterRatio = 0.2
    /// Top 2-, 3-, 4-gram character fractions.
    public var maximumTopNGramRatio = [0.20, 0.18, 0.16]
    /// Duplicated 5- … 10-gram character fractions.
    public var maximumDuplicatedNGramRatio = [0.15, 0.14, 0.13, 0.12, 0.11, 0.10]
    public var minimumSentences = 5
    public var minimumTerminalPunctuationLineRatio = 0.12
    public var shortLineLength = 30
    public var maximumShortLineRatio = 0.67
    public var maximumDuplicateLineCharacters = 0.01
    public var maximumNewlinesPerWord = 0.3
    /// Sluice: share of mojibake characters (Latin-1 and cp1252 punctuation) among visible characters.
    public var maximumMojibakeRatio = 0.2
    /// Sluice, Chinese: share of Han characters among the ~1,200 most common; garbled or random Han text has few.
    public var minimumCommonCJKRatio = 0.5
    /// Sluice: the longest run of one repeated letter or character.
    public var maximumCharacterRun = 20
    /// Sluice: the share of words from the lorem-ipsum vocabulary above which a text is filler (C4 only looks for
    /// the phrase "lorem ipsum").
    public var maximumLoremWordRatio = 0.5
    /// The top and duplicated n-gram rules apply from this many words on (datatrove: always). A short page whose
    /// title repeats in its heading and first line is not repetitive spam.
    public var repetitionMinimumWords = 0
    /// The stop-word rule applies from this many words on (datatrove: always); shorter texts fail it only when
    /// they also lack sentence punctuation (fewer than ``minimumTerminalPunctuationLineRatio`` of lines end in
    /// it), which is what boilerplate-only pages look like.
    public var stopWordsMinimumWords = 0

    public init() {}

    /// datatrove's values for every rule (Gopher quality and repetition, C4, FineWeb).
    public static let datatrove = QualityThresholds()

    /// Sluice's default for English and other space-separated scripts: datatrove's values except at least 15
    /// words instead of 50, 60% words with a letter instead of 80%, a mean word length up to 12 instead of 10,
    /// n-gram repetition rules from 150 words on, the stop-word rule from 150 words on (or without sentence
    /// punctuation), and the lorem-ipsum vocabulary rule. Measured on the bench corpus: these keep junk recall
    /// above 95% and cut the rejection of clean English documents of 200+ characters from 36% to under 10%.
    public static let english: QualityThresholds = {
        var t = QualityThresholds()
        t.minimumWords = 15
        t.minimumAlphabeticWordRatio = 0.6
        t.maximumMeanWordLength = 12
        t.repetitionMinimumWords = 150
        t.stopWordsMinimumWords = 150
        return t
    }()

    /// Chinese: characters count as words (at least 30); no mean word length; Chinese stop characters; the
    /// repetition limits of MAP-CC (duplicated 5–10-gram characters up to 0.6) since single characters repeat
    /// far more than words; short lines are up to 10 characters (a Chinese line of 30 is a full sentence).
    public static let chinese: QualityThresholds = {
        var t = QualityThresholds.english
        t.minimumWords = 30
        t.minimumMeanWordLength = 0
        t.maximumMeanWordLength = .infinity
        t.maximumDuplicatedNGramRatio = [0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
        t.shortLineLength = 10
        return t
    }()
}

/// Settings of the quality stage.
public struct QualityConfiguration: Sendable, Equatable {
    /// Thresholds by language label (`en`, `zh`, `other`); a missing label uses `en`.
    public var thresholds: [String: QualityThresholds] = [
        "en": .english, "zh": .chinese, "other": .english,
    ]
    /// Rules whose failure drops a document; the others are measured and reported only. Default: see
    /// ``QualityRule/defaultEnforced``.
    public var enforced: Set<QualityRule> = QualityRule.defaultEnforced
    /// Tag what would be dropped (`quality.would_drop`) without dropping: judge a new rule set on live traffic.
    public var shadow = false
    /// Per-source overrides of ``enforced`` (e.g. `chat` without `gopher_short_doc`).
    public var enforcedBySource: [String: Set<QualityRule>] = [:]

    public init() {}

    /// datatrove's FineWeb filter chain for comparison: its thresholds for every language and every rule
    /// enforced (Gopher quality and repetition, C4 lorem/curly bracket/sentences, FineWeb).
    public static var datatrove: QualityConfiguration {
        var configuration = QualityConfiguration()
        configuration.thresholds = ["en": .datatrove, "zh": .datatrove, "other": .datatrove]
        configuration.enforced = Set(QualityRule.allCases).subtracting([.mojibake, .rareCJK, .characterRun])
        return configuration
    }

    public func enforced(forSource source: String?) -> Set<QualityRule> {
        source.flatMap { enforcedBySource[$0] } ?? enforced
    }
}

/// One quality rule; raw values are datatrove's rejection reasons where datatrove has the rule.
public enum QualityRule: String, Sendable, CaseIterable, Comparable {
    case gopherShortDoc = "gopher_short_doc"
    case gopherLongDoc = "gopher_long_doc"
    case gopherBelowAverage = "gopher_below_avg_threshold"
    case gopherAboveAverage = "gopher_above_avg_threshold"
    case gopherTooManyHashes = "gopher_too_many_hashes"
    case gopherTooManyEllipsis = "gopher_too_many_ellipsis"
    case gopherTooManyBullets = "gopher_too_many_bullets"
    case gopherTooManyEndEllipsis = "gopher_too_many_end_ellipsis"
    case gopherBelowAlpha = "gopher_below_alpha_threshold"
    case gopherStopWords = "gopher_enough_stop_words"
    case dupParagraphFraction = "dup_para_frac"
    case dupParagraphCharacterFraction = "dup_para_char_frac"
    case dupLineFraction = "dup_line_frac"
    case dupLineCharacterFraction = "dup_line_char_frac"
    case top2Gram = "top_2_gram"
    case top3Gram = "top_3_gram"
    case top4Gram = "top_4_gram"
    case duplicated5 = "duplicated_5_n_grams"
    case duplicated6 = "duplicated_6_n_grams"
    case duplicated7 = "duplicated_7_n_grams"
    case duplicated8 = "duplicated_8_n_grams"
    case duplicated9 = "duplicated_9_n_grams"
    case duplicated10 = "duplicated_10_n_grams"
    case c4LoremIpsum = "lorem_ipsum"
    case c4CurlyBracket = "curly_bracket"
    case c4TooFewSentences = "too_few_sentences"
    case finewebLinePunctuation = "line_punct_ratio"
    case finewebShortLines = "short_line_ratio"
    case finewebCharacterDuplicates = "char_dup_ratio"
    case finewebListRatio = "list_ratio"
    case mojibake = "mojibake"
    case rareCJK = "cjk_rare_characters"
    case characterRun = "char_repetition"

    public static func < (lhs: QualityRule, rhs: QualityRule) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Position in ``allCases``, without hashing the raw value.
    var ordinal: Int {
        switch self {
        case .gopherShortDoc: 0
        case .gopherLongDoc: 1
        case .gopherBelowAverage: 2
        case .gopherAboveAverage: 3
        case .gopherTooManyHashes: 4
        case .gopherTooManyEllipsis: 5
        case .gopherTooManyBullets: 6
        case .gopherTooManyEndEllipsis: 7
        case .gopherBelowAlpha: 8
        case .gopherStopWords: 9
        case .dupParagraphFraction: 10
        case .dupParagraphCharacterFraction: 11
        case .dupLineFraction: 12
        case .dupLineCharacterFraction: 13
        case .top2Gram: 14
        case .top3Gram: 15
        case .top4Gram: 16
        case .duplicated5: 17
        case .duplicated6: 18
        case .duplicated7: 19
        case .duplicated8: 20
        case .duplicated9: 21
        case .duplicated10: 22
        case .c4LoremIpsum: 23
        case .c4CurlyBracket: 24
        case .c4TooFewSentences: 25
        case .finewebLinePunctuation: 26
        case .finewebShortLines: 27
        case .finewebCharacterDuplicates: 28
        case .finewebListRatio: 29
        case .mojibake: 30
        case .rareCJK: 31
        case .characterRun: 32
        }
    }


    /// The default drop policy: every Gopher quality and repetition rule, C4's lorem-ipsum rule, and Sluice's
    /// mojibake, rare-CJK and character-run rules. C4's curly-bracket and sentence rules and FineWeb's line rules
    /// are measured only: on this bilingual, technical corpus they reject most clean documentation, code and
    /// chat (numbers in docs/benchmarks.md).
    public static let defaultEnforced: Set<QualityRule> = Set(allCases).subtracting([
        .c4CurlyBracket, .c4TooFewSentences, .finewebLinePunctuation, .finewebShortLines,
        .finewebCharacterDuplicates, .finewebListRatio,
    ])
}
