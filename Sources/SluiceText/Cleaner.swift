/// The clean stage: HTML to text, invisible characters, Unicode normalization, whitespace, boilerplate lines and
/// length bounds, in that order, on UTF-8 bytes.
///
/// Signals: `clean.html` (1 when converted), `clean.invisible` (characters removed or replaced),
/// `clean.normalized` (1 when the form changed the text), `clean.boilerplate_lines`. Drop reasons: `too_short`,
/// `too_long`. Chinese text, full-width punctuation and emoji pass unchanged under the default NFC.
public struct Cleaner: TextStage {
    public let name = "clean"
    public let configuration: CleanerConfiguration
    private let html: HTMLText
    private var boilerplate: BoilerplateFilter
    private var scratch: [UInt8] = []

    public init(_ configuration: CleanerConfiguration = CleanerConfiguration()) {
        self.configuration = configuration
        self.html = HTMLText(droppedElements: configuration.htmlDroppedElements)
        self.boilerplate = BoilerplateFilter(
            phrases: configuration.removesBoilerplate ? configuration.boilerplatePhrases : [],
            maximumLineBytes: configuration.boilerplateMaximumLineBytes,
            menuLines: configuration.removesBoilerplate && configuration.removesMenuLines,
            repeatThreshold: configuration.removesBoilerplate ? configuration.repeatedLineThreshold : 0)
    }

    public mutating func process(_ document: inout Document) -> StageVerdict {
        let html = self.html
        let configuration = self.configuration
        if configuration.convertsHTML {
            let converted = document.text.withUnsafeBufferPointer { text -> Bool in
                guard html.looksLikeHTML(text) else { return false }
                scratch.removeAll(keepingCapacity: true)
                scratch.reserveCapacity(text.count)
                html.convert(text, into: &scratch)
                return true
            }
            if converted {
                swap(&document.text, &scratch)
                document.signals.set("clean.html", 1)
            }
        }
        if configuration.removesInvisibleCharacters {
            let changes = document.text.withUnsafeBufferPointer { InvisibleCharacters.clean($0, into: &scratch) }
            if changes > 0 {
                swap(&document.text, &scratch)
                document.signals.set("clean.invisible", Double(changes))
            }
        }
        if configuration.normalization != .none {
            let changed = document.text.withUnsafeBufferPointer {
                UnicodeNormalization.normalize($0, form: configuration.normalization, into: &scratch)
            }
            if changed {
                swap(&document.text, &scratch)
                document.signals.set("clean.normalized", 1)
            }
        }
        if configuration.normalizesWhitespace || configuration.removesBoilerplate {
            boilerplate.startDocument()
            var basis: [UInt8] = []
            let keepsBasis = configuration.removesBoilerplate && configuration.dedupKeepsBoilerplate
            let removed = document.text.withUnsafeBufferPointer { text in
                withUnsafeMutablePointer(to: &basis) { basis in
                    LineCleanup.clean(
                        text, collapsesWhitespace: configuration.normalizesWhitespace,
                        removesBoilerplate: configuration.removesBoilerplate, boilerplate: &boilerplate,
                        into: &scratch, basis: keepsBasis ? basis : nil)
                }
            }
            // Kept even when equal to the text: the text is desensitized later and this copy is not, and every
            // document must be compared in the same form.
            if keepsBasis { document.dedupText = basis }
            swap(&document.text, &scratch)
            if removed > 0 { document.signals.set("clean.boilerplate_lines", Double(removed)) }
        }
        return checkLength(document.text)
    }

    private func checkLength(_ text: [UInt8]) -> StageVerdict {
        let minimum = configuration.minimumCharacters
        let maximum = configuration.maximumCharacters
        var characters = 0
        for b in text where b & 0xC0 != 0x80 && !ByteClass.isSpace(b) {
            characters += 1
            if maximum == nil && characters >= minimum { return .keep }
        }
        if characters < minimum { return .drop(reason: "too_short") }
        if let maximum, characters > maximum { return .drop(reason: "too_long") }
        return .keep
    }
}
