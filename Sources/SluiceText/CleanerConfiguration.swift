/// Settings of the clean stage. Every step is on by default except NFKC (NFC is the default form).
public struct CleanerConfiguration: Sendable, Equatable {
    /// Unicode normalization form. Default `.nfc`.
    public var normalization: NormalizationForm = .nfc
    /// Remove control, zero-width and bidirectional formatting characters, ANSI escapes and BOMs; CRLF becomes LF.
    public var removesInvisibleCharacters = true
    /// Convert documents that look like HTML to text.
    public var convertsHTML = true
    /// Elements removed together with their content when converting HTML.
    public var htmlDroppedElements: Set<String> = [
        "script", "style", "noscript", "template", "svg", "math", "iframe", "object", "nav", "select", "footer",
    ]
    /// Collapse runs of spaces and tabs inside lines (leading indentation stays), trim line ends, keep at most one
    /// blank line between paragraphs.
    public var normalizesWhitespace = true
    /// Remove lines that contain one of ``boilerplatePhrases``, navigation lines, and lines repeated across
    /// documents (see ``repeatedLineThreshold``).
    public var removesBoilerplate = true
    /// Case-insensitive phrases that mark a line of at most ``boilerplateMaximumLineBytes`` as boilerplate.
    public var boilerplatePhrases: [String] = CleanerConfiguration.defaultBoilerplatePhrases
    /// Longer lines are never boilerplate. Default 300 bytes.
    public var boilerplateMaximumLineBytes = 300
    /// Keep, beside the cleaned text, a copy with the boilerplate lines still in (``Document/dedupText``) for
    /// near-duplicate detection. Site frames are evidence: two pages that share a paragraph but not a site are
    /// less alike than two mirrors of one page. Measured on the bench corpus: 96.0% of near duplicates found and
    /// 0.5% of hard negatives dropped, against 95.3% and 0.9% on the text without boilerplate. Default on.
    public var dedupKeepsBoilerplate = true
    /// Remove navigation lines: three or more short items between `|`, `/`, `·`, `•`, `>`, `»` or `›`.
    public var removesMenuLines = true
    /// A line of three or more words seen in this many earlier documents is boilerplate; 0 turns the
    /// cross-document evidence off (then the output depends on nothing but the document). Default 50.
    public var repeatedLineThreshold = 50
    /// Documents with fewer characters (Unicode scalars, whitespace excluded) after cleaning are dropped
    /// (`too_short`). Default 1: an empty result is dropped.
    public var minimumCharacters = 1
    /// Documents with more characters after cleaning are dropped (`too_long`); nil for no limit.
    public var maximumCharacters: Int?

    public init() {}

    /// Lines mentioning these are cookie banners, share bars, skip links and sign-up prompts in English and Chinese.
    public static let defaultBoilerplatePhrases = [
        "use cookies", "uses cookies", "use of cookies", "cookies help", "cookie policy", "cookie settings",
        "accept cookies", "accept all cookies", "使用 cookie", "使用cookie", "cookie 政策", "cookies 来", "skip to content", "skip to main content", "share this", "share it with", "share on facebook",
        "share: tweet", "related posts", "all rights reserved", "privacy policy", "terms of use", "terms of service",
        "subscribe to our newsletter", "enable javascript", "javascript is disabled", "back to top",
        "跳到主要内容", "跳转到主要内容", "分享到", "扫一扫", "点个赞", "相关文章", "版权所有", "返回顶部", "我知道了",
        "关注我们", "点击关注",
    ]
}
