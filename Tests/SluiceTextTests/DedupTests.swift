import Foundation
import Testing

@testable import SluiceText

@Suite("MinHash and dedup")
struct DedupTests {
    /// A deterministic generator for test sets.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            return Shingler.mix(state)
        }
    }

    @Test(arguments: MinHashScheme.allCases)
    func estimatesStayWithinTheTheoreticalError(scheme: MinHashScheme) {
        var configuration = MinHashConfiguration()
        configuration.scheme = scheme
        var hasher = MinHasher(configuration)
        var random = SplitMix(state: 42)
        let k = Double(configuration.hashCount)
        var totalError = 0.0
        var expectedError = 0.0
        var a: [UInt32] = []
        var b: [UInt32] = []
        for pair in 0..<300 {
            let size = [20, 60, 200, 1000][pair % 4]
            let shared = Int.random(in: 0...size, using: &random)
            let common = (0..<shared).map { _ in random.next() }
            let left = common + (0..<(size - shared)).map { _ in random.next() }
            let right = common + (0..<(size - shared)).map { _ in random.next() }
            let exact = Double(shared) / Double(2 * size - shared)
            hasher.signature(of: left, into: &a)
            hasher.signature(of: right, into: &b)
            let estimate = a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { MinHasher.similarity(x, $0) } }
            let sigma = (exact * (1 - exact) / k).squareRoot()
            #expect(abs(estimate - exact) <= 5 * sigma + 0.02, "J \(exact) estimated \(estimate) (size \(size))")
            totalError += abs(estimate - exact)
            expectedError += sigma * (2 / Double.pi).squareRoot()
        }
        // On average no worse than 1.3× the error of k independent samples.
        #expect(totalError <= 1.3 * expectedError, "mean error \(totalError / 300), expected \(expectedError / 300)")
    }

    @Test func chineseTextIsShingledByCharactersAndEnglishByWords() {
        var shingler = Shingler()
        var hashes: [UInt64] = []
        let chinese = Array("数据输入表单是简化在电子表格中输入表格数据的工具。".utf8)
        let set = shingler.shingles(chinese, into: &hashes)
        #expect(set.tokenCount == 24)
        #expect(hashes.count == 20)
        let english = Array("The quick brown fox jumps over the lazy dog.".utf8)
        #expect(shingler.shingles(english, into: &hashes).tokenCount == 9)
        #expect(hashes.count == 5)
        // Case, punctuation width and whitespace do not matter.
        var other: [UInt64] = []
        _ = shingler.shingles(Array("数据输入表单，是简化在 电子表格中输入表格数据的工具.".utf8), into: &other)
        _ = shingler.shingles(chinese, into: &hashes)
        #expect(Set(other) == Set(hashes))
        _ = shingler.shingles(Array("THE QUICK  brown fox; jumps over the lazy dog".utf8), into: &other)
        _ = shingler.shingles(english, into: &hashes)
        #expect(other == hashes)
    }

    @Test func mixedTextFollowsItsMajorityScript() {
        let mostlyChinese = Array("这是一个关于数据库连接的说明文档，请参考 PostgreSQL 手册。".utf8)
        let mostlyEnglish = Array("This manual explains the connection settings of the database (数据库).".utf8)
        #expect(mostlyChinese.withUnsafeBufferPointer { Shingler.isCharacterMode($0) })
        #expect(!mostlyEnglish.withUnsafeBufferPointer { Shingler.isCharacterMode($0) })
    }

    private func document(_ id: String?, _ text: String) -> Document {
        var document = Document(text: Array(text.utf8), id: id)
        document.rawTextHash = ContentHash(text).value
        return document
    }

    private let article = """
        The name of the encoding used to decode the stream's bytes into strings, and to encode strings into bytes. \
        New features may be added to maintenance releases when the situation genuinely calls for it. Any such \
        additions must go through the enhancement proposal process and make a compelling case for why they \
        were not adequately addressed by either adding the new feature solely to the next release.
        """

    @Test func dropsExactAndNearDuplicatesAndNamesTheKeptDocument() throws {
        var stage = try Deduplicator()
        var first = document("a", article)
        var copy = document("b", article)
        var edited = document("c", article.replacingOccurrences(of: "genuinely", with: "really") + " Thanks.")
        var other = document("d", "A completely different text about sailing boats, winds and the harbour at dawn.")
        #expect(stage.process(&first) == .keep)
        #expect(stage.process(&copy) == .drop(reason: "duplicate"))
        #expect(copy.duplicateOf == "a")
        #expect(stage.process(&edited) == .drop(reason: "near_duplicate"))
        #expect(edited.duplicateOf == "a")
        #expect((edited.signals["dedup.similarity"] ?? 0) > 0.65)
        #expect(stage.process(&other) == .keep)
        #expect(stage.index.count == 2)
        #expect(stage.index.pendingCount == 2)
    }

    @Test func aReplayedDocumentIsNotADuplicateOfItself() throws {
        var stage = try Deduplicator()
        var first = document("a", article)
        #expect(stage.process(&first) == .keep)
        stage.index.commitPending()
        var again = document("a", article)
        #expect(stage.process(&again) == .keep)
        #expect(again.signals["dedup.replay"] == 1)
        var withoutID = document(nil, article)
        #expect(stage.process(&withoutID) == .drop(reason: "duplicate"))
    }

    @Test func discardingPendingForgetsTheOpenShard() throws {
        var stage = try Deduplicator()
        var first = document("a", article)
        _ = stage.process(&first)
        stage.index.commitPending()
        var second = document("b", "Completely unrelated words about mountains, rivers and the long road north.")
        _ = stage.process(&second)
        stage.index.discardPending()
        #expect(stage.index.count == 1)
        var replayed = document("c", "Completely unrelated words about mountains, rivers and the long road north.")
        #expect(stage.process(&replayed) == .keep)
    }

    /// Thousands of documents: the lookup tables grow many times (and are rebuilt by a discard), and every kept
    /// document is still found by an edited copy of it, under its own id, with the next document's probes
    /// started early as the drivers do.
    @Test func nearDuplicatesAreFoundAfterTheTablesGrow() throws {
        var generator = SplitMix(state: 42)
        let vocabulary = (0..<2_000).map { _ in String((0..<6).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement(using: &generator)! }) }
        let texts = (0..<3_000).map { _ in (0..<60).map { _ in vocabulary.randomElement(using: &generator)! }.joined(separator: " ") }
        var stage = try Deduplicator()
        for (i, text) in texts.enumerated() {
            var kept = document("doc-\(i)", text)
            if i + 1 < texts.count {
                let next = stage.fingerprint(of: document(nil, texts[i + 1]))
                stage.prefetch(next)
            }
            #expect(stage.process(&kept) == .keep)
            if i == 1_499 { stage.index.commitPending() }
        }
        func editedCopy(_ i: Int) -> Document {
            var words = texts[i].split(separator: " ")
            words[30] = "changed"
            return document("copy-\(i)", words.joined(separator: " "))
        }
        for i in stride(from: 0, to: 3_000, by: 37) {
            var edited = editedCopy(i)
            #expect(stage.process(&edited) == .drop(reason: "near_duplicate"))
            #expect(edited.duplicateOf == "doc-\(i)")
        }
        // The second half was never made durable: discarding it rebuilds the tables from the first.
        stage.index.discardPending()
        #expect(stage.index.count == 1_500)
        for i in stride(from: 0, to: 1_500, by: 41) {
            var edited = editedCopy(i)
            #expect(stage.process(&edited) == .drop(reason: "near_duplicate"))
            #expect(edited.duplicateOf == "doc-\(i)")
        }
        var unseen = editedCopy(2_999)
        #expect(stage.process(&unseen) == .keep)
    }

    @Test func rejectsImpossibleSettings() {
        var configuration = MinHashConfiguration()
        configuration.bands = 30
        #expect(throws: TextConfigurationError.self) { try Deduplicator(configuration) }
    }
}
