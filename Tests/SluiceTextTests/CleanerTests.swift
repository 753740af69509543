import Testing

@testable import SluiceText

@Suite("Cleaner")
struct CleanerTests {
    private func clean(_ text: String, _ configure: (inout CleanerConfiguration) -> Void = { _ in }) -> (String, StageVerdict, Document) {
        var configuration = CleanerConfiguration()
        configure(&configuration)
        var cleaner = Cleaner(configuration)
        var document = Document(text: Array(text.utf8))
        let verdict = cleaner.process(&document)
        return (document.textString, verdict, document)
    }

    @Test func convertsHTMLWithBlocksScriptsAndEntities() {
        let html = """
            <!DOCTYPE html><html><head><title>Title</title><style>p{color:red}</style>
            <script>if (a < b && c > d) { x = "</p>"; }</script></head>
            <body><nav><a href="/">Home</a> <a href="/news">News</a></nav>
            <h1>Heading</h1><p>First &amp; second&nbsp;line,
            wrapped.</p><p>&#x4E2D;&#25991; &lt;tag&gt; &eacute; &unknown; &#0;</p><br/><ul><li>one</li><li>two</li></ul>
            <!-- a comment --><footer>© Site</footer></body></html>
            """
        let (text, verdict, document) = clean(html)
        #expect(verdict == .keep)
        #expect(text == "Title\n\nHeading\n\nFirst & second line, wrapped.\n\n中文 <tag> é &unknown;\n\none\ntwo")
        #expect(document.signals["clean.html"] == 1)
    }

    @Test func leavesAngleBracketsInPlainTextAlone() {
        let text = "#include <stdio.h>\nif (a < b) return List<T>();\nx<y and y>z"
        #expect(clean(text).0 == text)
    }

    @Test func unclosedTagsAndComments() {
        #expect(clean("<p>one<p>two<div>three").0 == "one\n\ntwo\n\nthree")
        #expect(clean("<p>kept</p><p>text <b unclosed").0 == "kept\n\ntext <b unclosed")
        #expect(clean("<p>kept</p><p>x</p><!-- never closed <p>hidden</p>").0 == "kept\n\nx")
        #expect(clean("<p>a</p><script>var s = '<p>' + 1 < 2;").0 == "a")
    }

    @Test func removesInvisibleCharactersAndANSIEscapes() {
        let (text, _, document) = clean("\u{FEFF}Hello\u{200B} wor\u{00AD}ld\r\n\u{1B}[31mred\u{1B}[0m\u{0007} a\u{000B}b\u{202E}")
        #expect(text == "Hello world\nred ab")
        #expect((document.signals["clean.invisible"] ?? 0) > 0)
    }

    /// The scans find candidates sixteen bytes at a time: a change must be seen at every offset within and
    /// across those blocks, after ASCII and after Chinese text (whose full-width comma shares the lead byte 0xEF
    /// with the byte order mark).
    @Test(arguments: ["abcdefghij klmnopqrstuvwxyz 0123456789 ABCDEFGHIJ", "中文文本里面，一些字和标点还有更多的字"])
    func invisibleCharactersAndCombiningMarksAreFoundAtEveryOffset(filler: String) {
        let characters = Array(filler)
        for offset in 0...characters.count {
            let before = String(characters[..<offset])
            let after = String(characters[offset...])
            for invisible in ["\u{200B}", "\u{00AD}", "\u{FEFF}", "\u{0007}", "\u{007F}", "\u{0085}", "\u{2060}", "\u{180E}"] {
                let (text, _, document) = clean(before + invisible + after)
                #expect(text == filler, "U+\(String(invisible.unicodeScalars.first!.value, radix: 16)) at \(offset)")
                #expect(document.signals["clean.invisible"] == 1)
            }
            #expect(clean(before + "e\u{301}" + after).0 == before + "é" + after, "combining mark at \(offset)")
            // A line separator becomes a line feed (then trimmed like any line end).
            let separated = clean(before + "\u{2028}x" + after)
            #expect(separated.2.signals["clean.invisible"] == 1 && !separated.0.unicodeScalars.contains("\u{2028}"))
            #expect(separated.0.filter { !$0.isWhitespace } == (before + "x" + after).filter { !$0.isWhitespace })
        }
        #expect(clean(filler).2.signals["clean.invisible"] == nil)
        #expect(clean(filler).2.signals["clean.normalized"] == nil)
    }

    @Test func keepsEmojiJoinersAndChineseText() {
        let chinese = "你好，世界！这是（全角）标点：“引号”。\n\n第二段 👩‍💻 ok"
        #expect(clean(chinese).0 == chinese)
    }

    @Test func normalizesToNFCByDefaultAndNFKCOnRequest() {
        #expect(clean("Cafe\u{301}").0 == "Café")
        #expect(clean("ｆｕｌｌ，中文").0 == "ｆｕｌｌ，中文")
        #expect(clean("ｆｕｌｌ，中文 ﬁ") { $0.normalization = .nfkc }.0 == "full,中文 fi")
        #expect(clean("Cafe\u{301}") { $0.normalization = .none }.0 == "Cafe\u{301}")
    }

    @Test func whitespaceKeepsParagraphsAndIndentation() {
        let text = "\n\n  Title   with   spaces  \n\n\n\nPara\tone\t\tend   \n    indented  code\n\n\n"
        #expect(clean(text).0 == "  Title with spaces\n\nPara one end\n    indented code")
    }

    @Test func removesBoilerplateLines() {
        let text = """
            Night Tech
            Downloads / Sign up / About / Login
            Skip to content
            The actual article text stays here.
            Cookies help us deliver our services. OK
            Share this: Twitter | Facebook | LinkedIn | Email
            为了给您提供更好的服务，本网站会使用 Cookie。 我知道了
            分享到：微信 微博 QQ空间 豆瓣
            if a > b / c: return
            """
        let (output, _, document) = clean(text)
        #expect(output == "Night Tech\nThe actual article text stays here.\nif a > b / c: return")
        #expect(document.signals["clean.boilerplate_lines"] == 6)
    }

    @Test func repeatedLinesBecomeBoilerplateAfterTheThreshold() {
        var configuration = CleanerConfiguration()
        configuration.repeatedLineThreshold = 3
        var cleaner = Cleaner(configuration)
        var outputs: [String] = []
        for index in 0..<5 {
            var document = Document(text: Array("Article number \(index) body.\nPowered by the Example Site Engine\nok".utf8))
            _ = cleaner.process(&document)
            outputs.append(document.textString)
        }
        #expect(outputs[0].contains("Powered by"))
        #expect(outputs[1].contains("Powered by"))
        #expect(!outputs[2].contains("Powered by"))
        #expect(!outputs[4].contains("Powered by"))
        #expect(outputs[4].hasPrefix("Article number 4 body."))
    }

    @Test func lengthBounds() {
        #expect(clean("<p> </p><script>x</script>").1 == .drop(reason: "too_short"))
        #expect(clean("abc") { $0.minimumCharacters = 5 }.1 == .drop(reason: "too_short"))
        #expect(clean("abcdef") { $0.maximumCharacters = 5 }.1 == .drop(reason: "too_long"))
        #expect(clean("中文五个字") { $0.minimumCharacters = 5 }.1 == .keep)
    }
}
