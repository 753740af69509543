internal import CXXHash
internal import CSluiceScan

/// Decides whether one line is boilerplate: a configured phrase (cookie banners, "share this", "skip to content"),
/// a navigation line (three or more short items between `|`, `/`, `·`, `•`, `>`, `»`, `›`), or a line that many
/// earlier documents carried word for word (site frames, copyright footers).
///
/// The repetition evidence is a count-min sketch of exact line hashes (digits kept, so templated lines
/// that differ in a number, an order id or a phone number are not one line), counted once per
/// document, in fixed memory (1 MiB). It makes the decision depend on what came before: the first documents keep
/// a line that later ones lose. Set ``CleanerConfiguration/repeatedLineThreshold`` to 0 for order-free output.
struct BoilerplateFilter: Sendable {
    /// The lowercased phrases, one after another; phrase `p` is `phraseBytes[phraseStarts[p]..<phraseStarts[p + 1]]`.
    private var phraseBytes: [UInt8] = []
    private var phraseStarts: [Int] = [0]
    /// One bit per lowercased two-byte prefix that starts some phrase: one lookup per position.
    private var prefixBits = [UInt64](repeating: 0, count: 1024)
    /// The phrases by their lowercased two-byte prefix, flat: prefix `pair`'s are
    /// `prefixPhrases[prefixStarts[pair]..<prefixStarts[pair + 1]]` (a hit compares only those, with no lookup
    /// in a dictionary).
    private var prefixStarts: [UInt16] = []
    private var prefixPhrases: [UInt16] = []
    private let maximumLineBytes: Int
    private let menuLines: Bool
    private let repeatThreshold: Int
    private var sketch: [UInt16]
    private var seenInDocument = ScratchSet()

    private static let sketchBits = 18

    init(phrases: [String], maximumLineBytes: Int, menuLines: Bool, repeatThreshold: Int) {
        let lowered = phrases.map { Array($0.utf8).map(ByteClass.lower) }.filter { $0.count >= 2 }.prefix(Int(UInt16.max))
        var byPrefix = [[UInt16]](repeating: [], count: 65_536)
        for (index, phrase) in lowered.enumerated() {
            phraseBytes.append(contentsOf: phrase)
            phraseStarts.append(phraseBytes.count)
            let pair = Int(phrase[0]) << 8 | Int(phrase[1])
            prefixBits[pair >> 6] |= 1 << UInt64(pair & 63)
            byPrefix[pair].append(UInt16(index))
        }
        prefixStarts.reserveCapacity(65_537)
        for group in byPrefix {
            prefixStarts.append(UInt16(prefixPhrases.count))
            prefixPhrases.append(contentsOf: group)
        }
        prefixStarts.append(UInt16(prefixPhrases.count))
        self.maximumLineBytes = maximumLineBytes
        self.menuLines = menuLines
        self.repeatThreshold = repeatThreshold
        self.sketch = repeatThreshold > 0 ? [UInt16](repeating: 0, count: 2 << Self.sketchBits) : []
    }

    /// Call once before the lines of each document.
    mutating func startDocument() {
        seenInDocument.reset()
    }

    /// Whether the trimmed line `bytes[range]` is boilerplate. Counts it as seen in this document.
    mutating func isBoilerplate(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        guard range.count <= maximumLineBytes, !range.isEmpty else { return false }
        // A line short enough to be counted is hashed first, and its two sketch slots (random places in 1 MiB,
        // rarely cached) start loading while the line is scanned.
        let countable = repeatThreshold > 0 && range.count <= 200
        var hash: UInt64 = 0
        if countable {
            hash = XXH3_64bits(bytes.baseAddress! + range.lowerBound, range.count)
            let (first, second) = Self.sketchSlots(hash)
            sketch.withUnsafeBufferPointer { sketch in
                sluice_prefetch(sketch.baseAddress! + first)
                sluice_prefetch(sketch.baseAddress! + second)
            }
        }
        let scan = scanLine(bytes, range)
        if scan.phrase { return true }
        if menuLines && scan.separators >= 2 && isMenuLine(bytes, range) { return true }
        // Lines of three or more words, or six or more non-ASCII characters, up to 200 bytes: short code lines and
        // one-word headings never count as repeated boilerplate.
        if countable && (scan.spaces + 1 >= 3 || scan.leadBytes >= 6) {
            return countRepetition(hash) >= repeatThreshold
        }
        return false
    }

    /// ASCII phrases match at word starts only ("cookies help" in "Cookies help us…", not inside a word); others
    /// (Chinese) anywhere. Also counts candidate menu separators, so most lines skip the menu check, and the
    /// spaces and non-ASCII lead bytes the repetition check needs (no second pass over the line).
    private func scanLine(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>)
        -> (phrase: Bool, separators: Int, spaces: Int, leadBytes: Int)
    {
        var separators = 0
        var spaces = 0
        var leadBytes = 0
        let end = range.upperBound
        return prefixBits.withUnsafeBufferPointer { bits in
            var i = range.lowerBound
            var previousIsAlnum = false
            while i + 1 < end {
                let raw = bytes[i]
                let isAlnum = ByteClass.isAlnum(raw)
                if isAlnum && previousIsAlnum {
                    // Inside a word nothing starts: skip to its end.
                    i &+= 1
                    if i &+ 1 < end { i &+= sluice_alnum_run(bytes.baseAddress! + i, end &- 1 &- i) }
                    continue
                }
                if raw == 0x20 {
                    spaces &+= 1
                    let next = bytes[i + 1]
                    if next == UInt8(ascii: "|") || next == UInt8(ascii: "/") || next == UInt8(ascii: ">") || next == 0xC2
                        || next == 0xE2
                    {
                        separators += 1
                    }
                } else if raw & 0xC0 == 0x80 {
                    // A UTF-8 continuation byte: no phrase starts inside a character (most bytes of CJK text).
                } else {
                    if raw >= 0xC0 { leadBytes &+= 1 }
                    let pair = Int(ByteClass.lower(raw)) << 8 | Int(ByteClass.lower(bytes[i + 1]))
                    if bits[pair >> 6] & (1 << UInt64(pair & 63)) != 0 && matchesPhrase(bytes, at: i, end: end, prefix: pair) {
                        return (true, separators, spaces, leadBytes)
                    }
                }
                previousIsAlnum = isAlnum
                i += 1
            }
            // The loop stops before the last byte (a phrase needs two).
            let last = bytes[end - 1]
            if last == 0x20 { spaces &+= 1 } else if last >= 0xC0 { leadBytes &+= 1 }
            return (false, separators, spaces, leadBytes)
        }
    }

    private func matchesPhrase(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int, end: Int, prefix: Int) -> Bool {
        prefixPhrases.withUnsafeBufferPointer { candidates in
            phraseBytes.withUnsafeBufferPointer { phraseBytes in
                for slot in Int(prefixStarts[prefix])..<Int(prefixStarts[prefix + 1]) {
                    let index = Int(candidates[slot])
                    let start = phraseStarts[index]
                    let count = phraseStarts[index + 1] - start
                    guard i + count <= end else { continue }
                    var k = 2  // the prefix matched already
                    while k < count && ByteClass.lower(bytes[i + k]) == phraseBytes[start + k] { k += 1 }
                    if k == count { return true }
                }
                return false
            }
        }
    }

    /// Three or more items between menu separators, each short and without sentence punctuation at its end.
    private func isMenuLine(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        var items = 1
        var itemStart = range.lowerBound
        var i = range.lowerBound
        var separator: UInt8 = 0
        while i < range.upperBound {
            let separatorLength = menuSeparator(bytes, at: i, end: range.upperBound)
            if separatorLength > 0 {
                // One kind of separator per menu: "if a > b / c" is code.
                let kind = bytes[i + separatorLength - 2]
                if separator != 0 && kind != separator { return false }
                separator = kind
                guard isMenuItem(bytes, itemStart..<i) else { return false }
                items += 1
                i += separatorLength
                itemStart = i
            } else {
                i += 1
            }
        }
        return items >= 3 && isMenuItem(bytes, itemStart..<range.upperBound)
    }

    /// Length of a separator (with its surrounding spaces) at `i`, or 0.
    private func menuSeparator(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int, end: Int) -> Int {
        guard bytes[i] == 0x20, i + 2 < end else { return 0 }
        let b = bytes[i + 1]
        if (b == UInt8(ascii: "|") || b == UInt8(ascii: "/") || b == UInt8(ascii: ">")) && bytes[i + 2] == 0x20 {
            return 3
        }
        // · (C2 B7), » (C2 BB), • (E2 80 A2), › (E2 80 BA)
        if b == 0xC2 && i + 3 < end && (bytes[i + 2] == 0xB7 || bytes[i + 2] == 0xBB) && bytes[i + 3] == 0x20 {
            return 4
        }
        if b == 0xE2 && i + 4 < end && bytes[i + 2] == 0x80 && (bytes[i + 3] == 0xA2 || bytes[i + 3] == 0xBA)
            && bytes[i + 4] == 0x20
        {
            return 5
        }
        return 0
    }

    private func isMenuItem(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        guard !range.isEmpty, range.count <= 32 else { return false }
        var spaces = 0
        let first = bytes[range.lowerBound]
        guard ByteClass.isLetter(first) || first >= 0x80 else { return false }
        for i in range {
            let b = bytes[i]
            if b == 0x20 { spaces += 1 }
            // Shell pipelines and code are not menus: "cat /proc/mounts | grep /mnt | sed …".
            if "=(){};#$*/\\<>\"'|&".utf8.contains(b) { return false }
        }
        let last = bytes[range.upperBound - 1]
        return spaces <= 3 && last != UInt8(ascii: ".") && last != UInt8(ascii: ",") && last != UInt8(ascii: ":")
    }

    /// The line's two counters in the sketch, one in each half.
    private static func sketchSlots(_ hash: UInt64) -> (first: Int, second: Int) {
        let mask = (1 << Self.sketchBits) - 1
        let first = Int(truncatingIfNeeded: hash) & mask
        return (first, (1 << Self.sketchBits) + (Int(truncatingIfNeeded: hash >> 32) & mask))
    }

    /// Counts the line with hash `hash` (XXH3 of its bytes) once per document; returns its count.
    private mutating func countRepetition(_ hash: UInt64) -> Int {
        let (first, second) = Self.sketchSlots(hash)
        if seenInDocument.insert(hash) {
            if sketch[first] < .max { sketch[first] += 1 }
            if sketch[second] < .max { sketch[second] += 1 }
        }
        return Int(min(sketch[first], sketch[second]))
    }
}
