internal import CXXHash
internal import CSluiceScan

/// What the quality rules measure, in one pass over lines and one over words.
///
/// Words are whitespace-separated, as Gopher defines them, except that every CJK character is a word of its
/// own (Chinese has no spaces). Lengths are in Unicode scalars.
struct TextStatistics: Sendable {
    var characters = 0  // scalars, whitespace included (datatrove's len(text))
    var visibleCharacters = 0
    var lines = 0
    var bulletLines = 0
    var endEllipsisLines = 0
    var terminalPunctuationLines = 0
    var shortLines = 0
    var duplicateLines = 0
    var duplicateLineCharacters = 0
    var paragraphs = 0
    var duplicateParagraphs = 0
    var duplicateParagraphCharacters = 0
    var words = 0
    var nonSymbolWords = 0
    var nonSymbolWordCharacters = 0
    var alphabeticWords = 0
    var hashes = 0
    var ellipses = 0
    var stopWords = 0  // distinct
    var sentences = 0
    var cjk = 0
    var cjkCommon = 0
    var latinLetters = 0
    var otherLetters = 0
    var latin1 = 0  // U+0080…U+00FF and the cp1252 punctuation typical of mojibake
    var longestLetterRun = 0
    var lorem = false
    /// Words from the lorem-ipsum vocabulary (placeholder Latin).
    var loremWords = 0
    var curlyBracket = false
    /// Characters of the most frequent 2-, 3- and 4-gram over the text's characters (index n − 2).
    /// (Inline arrays: statistics are made per document, and two heap arrays each would be two allocations.)
    var topNGram: InlineArray<3, Double> = .init(repeating: 0)
    /// Characters in duplicated 5- … 10-grams over the text's characters (index n − 5).
    var duplicatedNGram: InlineArray<6, Double> = .init(repeating: 0)

    var language: String {
        if cjk > 0 && cjk >= latinWordsEstimate { return "zh" }
        if latinLetters >= otherLetters && latinLetters > 0 { return "en" }
        return "other"
    }

    /// Latin-script words, estimated from letters (5 per word) so that a language vote needs no second pass.
    var latinWordsEstimate: Int { latinLetters / 5 }
}

/// Computes ``TextStatistics``; holds reusable scratch storage.
struct TextMeasurer: Sendable {
    var shortLineLength = 30
    private var lineSeen = ScratchSet()
    private var paragraphSeen = ScratchSet()
    /// The words of the text measured last: their hashes and lengths, `wordCount` of them (the arrays are
    /// scratch space, at least one entry per byte).
    private var wordHashes: [UInt64] = []
    private var wordLengths: [Int32] = []
    private var wordCount = 0
    private var rolling: [UInt64] = []
    private var counter = ScratchCounter()
    /// FNV-style running hash of a word's lowercased bytes, finished by ``finishWord(_:_:)``: no byte buffer.
    @inline(__always)
    static func feed(_ state: UInt64, _ byte: UInt8) -> UInt64 { (state ^ UInt64(byte)) &* 0x100_0000_01B3 }
    static let wordSeed: UInt64 = 0xCBF2_9CE4_8422_2325
    @inline(__always)
    static func finishWord(_ state: UInt64, _ length: Int) -> UInt64 { Shingler.mix(state ^ UInt64(length) << 56) }
    static func wordHash(_ text: String) -> UInt64 {
        var state = wordSeed
        for byte in text.utf8 { state = feed(state, ByteClass.lower(byte)) }
        return finishWord(state, text.utf8.count)
    }

    static let englishStopWords = SmallKeyIndex(["the", "be", "to", "of", "and", "that", "have", "with"].map(wordHash))

    /// - Parameter nGramMinimumWords: below this many words the n-gram statistics stay 0 (their rules do not
    ///   apply), which saves most of the work on short documents.
    mutating func measure(_ bytes: UnsafeBufferPointer<UInt8>, spacedNGrams: Bool, nGramMinimumWords: Int = 0)
        -> TextStatistics
    {
        var s = TextStatistics()
        measureLines(bytes, &s)
        measureWords(bytes, &s)
        s.lorem = sluice_has_lorem_ipsum(bytes.baseAddress, bytes.count) != 0
        if s.words >= nGramMinimumWords { measureNGrams(&s, spaced: spacedNGrams) }
        return s
    }

    // MARK: Lines and paragraphs

    private mutating func measureLines(_ bytes: UnsafeBufferPointer<UInt8>, _ s: inout TextStatistics) {
        let n = bytes.count
        lineSeen.reset()
        paragraphSeen.reset()
        var start = 0
        var paragraphHash: UInt64 = 0
        var paragraphCharacters = 0
        func endParagraph(_ s: inout TextStatistics) {
            guard paragraphCharacters > 0 else { return }
            s.paragraphs &+= 1
            if !paragraphSeen.insert(paragraphHash) {
                s.duplicateParagraphs &+= 1
                s.duplicateParagraphCharacters &+= paragraphCharacters
            }
            paragraphHash = 0
            paragraphCharacters = 0
        }
        while start <= n {
            let end = indexOf(0x0A, in: bytes, from: start) ?? n
            var lo = start
            var hi = end
            while lo < hi && ByteClass.isSpace(bytes[lo]) { lo &+= 1 }
            while hi > lo && ByteClass.isSpace(bytes[hi - 1]) { hi -= 1 }
            if lo == hi {
                endParagraph(&s)
            } else {
                let line = UnsafeBufferPointer(rebasing: bytes[lo..<hi])
                let characters = scalarCount(line)
                s.lines &+= 1
                if characters <= shortLineLength { s.shortLines &+= 1 }
                if isBullet(line) { s.bulletLines &+= 1 }
                if endsWithEllipsis(line) { s.endEllipsisLines &+= 1 }
                if endsWithTerminalPunctuation(line) { s.terminalPunctuationLines &+= 1 }
                let hash = XXH3_64bits(line.baseAddress, line.count)
                if !lineSeen.insert(hash) {
                    s.duplicateLines &+= 1
                    s.duplicateLineCharacters &+= characters
                }
                paragraphHash = Shingler.mix(paragraphHash ^ hash)
                paragraphCharacters &+= characters + 1
            }
            start = end + 1
        }
        endParagraph(&s)
    }

    private func scalarCount(_ line: UnsafeBufferPointer<UInt8>) -> Int {
        var count = 0
        for b in line where b & 0xC0 != 0x80 { count += 1 }
        return count
    }

    /// datatrove's bullet symbols (•, ‣, ▶, ◀, ◦, ■, □, ▪, ▫, –) and the ASCII `-`/`*` list markers.
    private func isBullet(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        let b = line[0]
        if b == UInt8(ascii: "-") || b == UInt8(ascii: "*") { return line.count == 1 || line[1] == 0x20 }
        guard b >= 0xE2, line.count >= 3 else { return false }
        switch decodeUTF8(line, at: 0).scalar {
        case 0x2022, 0x2023, 0x25B6, 0x25C0, 0x25E6, 0x25A0, 0x25A1, 0x25AA, 0x25AB, 0x2013: return true
        default: return false
        }
    }

    private func endsWithEllipsis(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = line.count
        if n >= 3 && line[n - 1] == 0x2E && line[n - 2] == 0x2E && line[n - 3] == 0x2E { return true }
        return n >= 3 && line[n - 3] == 0xE2 && line[n - 2] == 0x80 && line[n - 1] == 0xA6  // …
    }

    /// FineWeb's stop characters (. ' " ! ?) and their Chinese counterparts (。！？”」…).
    private func endsWithTerminalPunctuation(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        let last = line[line.count - 1]
        if last < 0x80 {
            return last == UInt8(ascii: ".") || last == UInt8(ascii: "!") || last == UInt8(ascii: "?")
                || last == UInt8(ascii: "'") || last == UInt8(ascii: "\"")
        }
        var start = line.count - 1
        while start > 0 && line[start] & 0xC0 == 0x80 { start -= 1 }
        switch decodeUTF8(line, at: start).scalar {
        case 0x3002, 0xFF01, 0xFF1F, 0x201D, 0x300D, 0x2026, 0xFF0E: return true
        default: return false
        }
    }

    // MARK: Words and characters

    private mutating func measureWords(_ bytes: UnsafeBufferPointer<UInt8>, _ s: inout TextStatistics) {
        // At most one word per byte: room for all of them up front, written through pointers.
        if wordHashes.count < bytes.count + 1 {
            wordHashes = [UInt64](repeating: 0, count: bytes.count + 1 + bytes.count / 2)
            wordLengths = [Int32](repeating: 0, count: wordHashes.count)
        }
        wordCount = wordHashes.withUnsafeMutableBufferPointer { hashes in
            wordLengths.withUnsafeMutableBufferPointer { lengths in
                Self.measureWords(bytes, &s, hashes: hashes, lengths: lengths)
            }
        }
    }

    private static func measureWords(
        _ bytes: UnsafeBufferPointer<UInt8>, _ s: inout TextStatistics, hashes: UnsafeMutableBufferPointer<UInt64>,
        lengths: UnsafeMutableBufferPointer<Int32>
    ) -> Int {
        // Tables read once per call: every access to a static goes through its lazy initialization check.
        let stopWords = Self.englishStopWords
        let loremFilter = Self.loremFilter
        let loremVocabulary = Self.loremVocabulary
        let chinese = ChineseCharacters.lookup
        var count = 0
        var wordState = Self.wordSeed
        var wordBytes = 0
        var trimmedState = Self.wordSeed
        var trimmedBytes = 0
        var stopMask: UInt32 = 0
        var wordHasAlpha = false
        var wordHasNonSymbol = false
        var wordCharacters = 0
        var run = 0
        var previous: UInt32 = 0

        func endWord(_ s: inout TextStatistics) {
            guard wordBytes > 0 else { return }
            s.words &+= 1
            if wordHasAlpha { s.alphabeticWords &+= 1 }
            if wordHasNonSymbol {
                s.nonSymbolWords &+= 1
                s.nonSymbolWordCharacters &+= wordCharacters
            }
            let hash = Self.finishWord(wordState, wordBytes)
            if wordBytes >= 2 && wordBytes <= 4, let index = stopWords.position(of: hash) {
                stopMask |= 1 << UInt32(index)
            }
            // Without trailing punctuation ("laborum." → "laborum") when there is some.
            let loremHash = trimmedBytes > 0 && trimmedBytes < wordBytes ? Self.finishWord(trimmedState, trimmedBytes) : hash
            if loremFilter[Int(loremHash & 1023)], loremVocabulary.contains(loremHash) { s.loremWords &+= 1 }
            hashes[count] = hash
            lengths[count] = Int32(wordCharacters)
            count &+= 1
            wordState = Self.wordSeed
            wordBytes = 0
            trimmedState = Self.wordSeed
            trimmedBytes = 0
            wordHasAlpha = false
            wordHasNonSymbol = false
            wordCharacters = 0
        }

        let n = bytes.count
        var i = 0
        while i < n {
            if ByteClass.isAlnum(bytes[i]) {
                // A run of ASCII letters and digits (most of English text): the same bookkeeping as the general
                // path below, without its dispatch per character.
                var count = 0
                var letters = 0
                var repeated = 0
                let state = sluice_ascii_word_run(bytes.baseAddress! + i, n &- i, wordState, &count, &letters, &repeated)
                // The byte before the run is not a letter or digit, so no chain reaches into the run or out of it.
                if repeated > s.longestLetterRun { s.longestLetterRun = repeated }
                s.characters &+= count
                s.visibleCharacters &+= count
                s.latinLetters &+= letters
                if letters > 0 { wordHasAlpha = true }
                wordHasNonSymbol = true
                wordState = state
                wordBytes &+= count
                trimmedState = state
                trimmedBytes = wordBytes
                wordCharacters &+= count
                previous = UInt32(bytes[i &+ count &- 1])
                run = 1
                i &+= count
                continue
            }
            let (scalar, length) = bytes[i] < 0x80 ? (UInt32(bytes[i]), 1) : decodeUTF8(bytes, at: i)
            i &+= length
            s.characters &+= 1
            if scalar == previous && (scalar >= 0x80 || ByteClass.isAlnum(UInt8(truncatingIfNeeded: scalar))) {
                run &+= 1
                s.longestLetterRun = max(s.longestLetterRun, run)
            } else {
                run = 1
            }
            previous = scalar
            if scalar == 0x20 || scalar == 0x0A || scalar == 0x09 || scalar == 0x0D || scalar == 0x3000 {
                endWord(&s)
                continue
            }
            s.visibleCharacters &+= 1
            if scalar < 0x80 {
                let b = UInt8(scalar)
                let lowered = ByteClass.lower(b)
                if ByteClass.isLetter(b) {
                    s.latinLetters &+= 1
                    wordHasAlpha = true
                    wordHasNonSymbol = true
                } else if ByteClass.isDigit(b) {
                    wordHasNonSymbol = true
                } else if b == UInt8(ascii: "#") {
                    s.hashes &+= 1
                } else if b == UInt8(ascii: "{") {
                    s.curlyBracket = true
                } else if b == UInt8(ascii: ".") || b == UInt8(ascii: "!") || b == UInt8(ascii: "?") {
                    if i >= n || ByteClass.isSpace(bytes[i]) { s.sentences &+= 1 }
                    if b == UInt8(ascii: ".") && i + 1 < n && bytes[i] == 0x2E && bytes[i + 1] == 0x2E && (i < 2 || bytes[i - 2] != 0x2E) {
                        s.ellipses &+= 1
                    }
                } else if b == UInt8(ascii: "_") {
                    wordHasNonSymbol = true
                }
                wordState = Self.feed(wordState, lowered)
                wordBytes &+= 1
                if ByteClass.isAlnum(b) {
                    trimmedState = wordState
                    trimmedBytes = wordBytes
                }
                wordCharacters &+= 1
                continue
            }
            switch Shingler.classify(scalar) {
            case .cjk:
                endWord(&s)
                s.cjk &+= 1
                if chinese.isCommon(scalar) {
                    s.cjkCommon &+= 1
                    if let index = chinese.stopIndex(scalar) {
                        stopMask |= 1 << UInt32(8 + index)
                    }
                }
                s.words &+= 1
                s.alphabeticWords &+= 1
                s.nonSymbolWords &+= 1
                s.nonSymbolWordCharacters &+= 1
                hashes[count] = Shingler.mix(UInt64(scalar))
                lengths[count] = 1
                count &+= 1
                continue
            case .letter:
                if scalar >= 0x80 && scalar <= 0xFF { s.latin1 &+= 1 } else { s.otherLetters &+= 1 }
                wordHasAlpha = true
                wordHasNonSymbol = true
            case .separator:
                switch scalar {
                case 0x80...0xBF, 0x20AC, 0x201A, 0x0192, 0x201E, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
                    0x0152, 0x017D, 0x2122, 0x0161, 0x203A, 0x0153, 0x017E, 0x0178:
                    s.latin1 &+= 1  // cp1252 punctuation that mojibake is full of (not ‘’“”, which real text uses)
                default:
                    break
                }
                if scalar == 0x2026 { s.ellipses &+= 1 }
                if scalar == 0x3002 || scalar == 0xFF01 || scalar == 0xFF1F { s.sentences &+= 1 }
            }
            // The scalar's UTF-8 bytes, as they stand in the text.
            let start = i - length
            for k in start..<i { wordState = Self.feed(wordState, bytes[k]) }
            wordBytes &+= length
            wordCharacters &+= 1
        }
        endWord(&s)
        s.stopWords = (stopMask & 0xFF).nonzeroBitCount + (stopMask >> 8).nonzeroBitCount
        return count
    }

    /// The words of the standard lorem-ipsum filler, hashed.
    static let loremVocabulary: Set<UInt64> = Set(
        """
        lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore \
        magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea commodo \
        consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint \
        occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est laborum
        """.split(separator: " ").map { wordHash(String($0)) })

    /// A 1,024-entry prefilter of ``loremVocabulary`` by the hash's low bits: most words skip the set lookup.
    static let loremFilter: [Bool] = {
        var filter = [Bool](repeating: false, count: 1024)
        for hash in loremVocabulary { filter[Int(hash & 1023)] = true }
        return filter
    }()

    // MARK: Repetition of word n-grams

    private mutating func measureNGrams(_ s: inout TextStatistics, spaced: Bool) {
        let count = wordCount
        guard count >= 2, s.characters > 0 else { return }
        let total = Double(s.characters)
        // rolling[i] holds the hash of the n-gram starting at word i, extended by one word per round (n = 2…10).
        rolling.removeAll(keepingCapacity: true)
        rolling.append(contentsOf: wordHashes[0..<count])
        for n in 2...10 where count >= n {
            let positions = count - n + 1
            wordHashes.withUnsafeBufferPointer { hashes in
                rolling.withUnsafeMutableBufferPointer { rolling in
                    for i in 0..<positions {
                        // Polynomial in the word hashes: order matters ("a b" is not "b a").
                        rolling[i] = rolling[i] &* 0x9E37_79B9_7F4A_7C15 &+ hashes[i + n - 1]
                    }
                }
            }
            counter.reset()
            let salt = UInt64(n)
            if n <= 4 {
                // Most frequent n-gram (datatrove: len(ngram) × count / len(text)).
                let (best, bestStart) = rolling.withUnsafeBufferPointer { rolling in
                    counter.counting(atMost: positions) { counter in
                        var best = 0
                        var bestStart = 0
                        for start in 0..<positions {
                            let c = counter.increment(rolling[start] ^ salt)
                            if c > best {
                                best = c
                                bestStart = start
                            }
                        }
                        return (best, bestStart)
                    }
                }
                var characters = spaced ? n - 1 : 0
                for k in 0..<n { characters += Int(wordLengths[bestStart + k]) }
                s.topNGram[n - 2] = Double(characters * best) / total
            } else {
                // Characters in duplicated n-grams, skipping past each duplicate as datatrove does.
                let repeated = rolling.withUnsafeBufferPointer { rolling in
                    wordLengths.withUnsafeBufferPointer { lengths in
                        counter.counting(atMost: positions) { counter in
                            var repeated = 0
                            var index = 0
                            while index < positions {
                                if counter.increment(rolling[index] ^ salt) > 1 {
                                    for k in 0..<n { repeated &+= Int(lengths[index + k]) }
                                    index &+= n
                                } else {
                                    index &+= 1
                                }
                            }
                            return repeated
                        }
                    }
                }
                s.duplicatedNGram[n - 5] = Double(repeated) / total
                // No n-gram repeats, so no longer one can (it would repeat its first n words): the rest stay 0.
                if repeated == 0 { break }
            }
        }
    }
}

/// A set of 64-bit hashes, cleared in O(1) by a generation stamp.
struct ScratchSet: Sendable {
    private var counter = ScratchCounter()
    mutating func reset() { counter.reset() }
    /// Inserts; false when already present.
    mutating func insert(_ key: UInt64) -> Bool { counter.increment(key) == 1 }
}

/// Counts 64-bit hashes (already well mixed); cleared in O(1) by a generation stamp, grows as needed.
struct ScratchCounter: Sendable {
    fileprivate struct Slot {
        var key: UInt64
        var count: UInt32
        var stamp: UInt32
    }

    private var slots = [Slot](repeating: Slot(key: 0, count: 0, stamp: 0), count: 256)
    private var generation: UInt32 = 1
    private var used = 0

    mutating func reset() {
        generation &+= 1
        used = 0
        if generation == 0 {
            slots = [Slot](repeating: Slot(key: 0, count: 0, stamp: 0), count: slots.count)
            generation = 1
        }
    }

    /// Runs `body` with a counter over the slots themselves (no checks per key), sized first for `keys` more
    /// distinct keys.
    mutating func counting<R>(atMost keys: Int, _ body: (inout Direct) -> R) -> R {
        while (used + keys) * 2 > slots.count { grow() }
        let generation = self.generation
        let (result, added) = slots.withUnsafeMutableBufferPointer { slots in
            var direct = Direct(slots: slots, mask: slots.count - 1, generation: generation)
            let result = body(&direct)
            return (result, direct.added)
        }
        used += added
        return result
    }

    /// ``increment(_:)`` on slots known to have room.
    struct Direct {
        fileprivate let slots: UnsafeMutableBufferPointer<Slot>
        fileprivate let mask: Int
        fileprivate let generation: UInt32
        fileprivate var added = 0

        @inline(__always)
        mutating func increment(_ key: UInt64) -> Int {
            var slot = Int(truncatingIfNeeded: key >> 7) & mask
            while true {
                if slots[slot].stamp != generation {
                    slots[slot] = Slot(key: key, count: 1, stamp: generation)
                    added &+= 1
                    return 1
                }
                if slots[slot].key == key {
                    slots[slot].count &+= 1
                    return Int(slots[slot].count)
                }
                slot = (slot &+ 1) & mask
            }
        }
    }

    mutating func increment(_ key: UInt64) -> Int {
        if (used + 1) * 2 > slots.count { grow() }
        let generation = self.generation
        let result = slots.withUnsafeMutableBufferPointer { slots -> Int in
            let mask = slots.count - 1
            var slot = Int(truncatingIfNeeded: key >> 7) & mask
            while true {
                if slots[slot].stamp != generation {
                    slots[slot] = Slot(key: key, count: 1, stamp: generation)
                    return 1
                }
                if slots[slot].key == key {
                    slots[slot].count += 1
                    return Int(slots[slot].count)
                }
                slot = (slot + 1) & mask
            }
        }
        if result == 1 { used += 1 }
        return result
    }

    private mutating func grow() {
        let old = slots
        let oldGeneration = generation
        slots = [Slot](repeating: Slot(key: 0, count: 0, stamp: 0), count: old.count * 2)
        generation = 1
        used = 0
        let mask = slots.count - 1
        for entry in old where entry.stamp == oldGeneration {
            var slot = Int(truncatingIfNeeded: entry.key >> 7) & mask
            while slots[slot].stamp == generation { slot = (slot + 1) & mask }
            slots[slot] = Slot(key: entry.key, count: entry.count, stamp: generation)
            used += 1
        }
    }
}
