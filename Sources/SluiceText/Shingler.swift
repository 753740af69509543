internal import CXXHash
internal import CSluiceScan

/// Turns a text into the 64-bit hashes of its shingles, the sets that MinHash compares.
///
/// A text is in *character mode* when CJK characters (Han, kana, Hangul) make up at least 25% of its CJK
/// characters and ASCII letters and digits, as in the bench corpus' reference metric; then every letter, digit
/// or CJK character is a token, so English passages inside Chinese text weigh by their characters too.
/// Otherwise (*word mode*) a run of letters or digits of a space-separated script (Latin, Cyrillic, Greek…) is one
/// token and a stray CJK character is a token of its own. ASCII is lowercased and full-width ASCII folded in
/// both modes; whitespace, punctuation and symbols only separate tokens. Shingles are `size` consecutive tokens
/// (default 5): word 5-grams for English, character 5-grams for Chinese. A text with fewer tokens than `size`
/// is one shingle. Shingle hashes are XXH3 over the
/// token hashes. The same stream gives ``ShingleSet/exactHash``, the hash of the normalized text (case,
/// whitespace and punctuation folded) used for exact-duplicate detection.
public struct Shingler: Sendable {
    /// Tokens per shingle. Default 5.
    public let size: Int
    /// Scratch space: a word's folded bytes, and the text's token hashes (`tokenCount` of them).
    private var word: [UInt8] = []
    private var tokens: [UInt64] = []
    private var tokenCount = 0

    public init(size: Int = 5) {
        precondition(size >= 1 && size <= 16, "shingle size must be 1…16")
        self.size = size
    }

    /// The shingle hashes of `text` (with repeats; MinHash does not care) and the exact-duplicate hash.
    public mutating func shingles(_ text: [UInt8], into hashes: inout [UInt64]) -> ShingleSet {
        text.withUnsafeBufferPointer { shingles($0, into: &hashes) }
    }

    public mutating func shingles(_ text: UnsafeBufferPointer<UInt8>, into hashes: inout [UInt64]) -> ShingleSet {
        tokenize(text)
        hashes.removeAll(keepingCapacity: true)
        let count = tokenCount
        var exact: UInt64 = 0x9E37_79B9_7F4A_7C15
        guard count > 0 else { return ShingleSet(tokenCount: 0, exactHash: 0) }
        tokens.withUnsafeBytes { raw in
            let tokens = raw.bindMemory(to: UInt64.self)
            for index in 0..<count { exact = mix(exact &* 0x1000_0000_01B3 ^ tokens[index]) }
            if count < size {
                hashes.append(XXH3_64bits(raw.baseAddress, count * 8))
                return
            }
            hashes.reserveCapacity(count - size + 1)
            let width = size * 8
            for start in 0...(count - size) {
                hashes.append(XXH3_64bits(raw.baseAddress! + start * 8, width))
            }
        }
        return ShingleSet(tokenCount: count, exactHash: exact)
    }

    /// Whether CJK characters are at least a quarter of CJK characters plus ASCII letters and digits (lead bytes
    /// 0xE3–0xE9 and 0xEA–0xED cover U+3000–U+D7FF).
    static func isCharacterMode(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        var cjk = 0
        var alnum = 0
        sluice_count_cjk_alnum(base, bytes.count, &cjk, &alnum)
        return cjk > 0 && cjk * 4 >= cjk + alnum
    }

    private mutating func tokenize(_ bytes: UnsafeBufferPointer<UInt8>) {
        // At most one token per byte, and a word's folded bytes never outgrow the text's: room for everything up
        // front, written through pointers.
        if tokens.count < bytes.count + 1 { tokens = [UInt64](repeating: 0, count: bytes.count + 1 + bytes.count / 2) }
        if word.count < bytes.count + 4 { word = [UInt8](repeating: 0, count: bytes.count + 4 + bytes.count / 2) }
        let characterMode = Self.isCharacterMode(bytes)
        tokenCount = tokens.withUnsafeMutableBufferPointer { tokens in
            word.withUnsafeMutableBufferPointer { word in
                characterMode
                    ? Self.tokenizeCharacters(bytes, into: tokens) : Self.tokenizeWords(bytes, into: tokens, word: word)
            }
        }
    }

    /// Word mode: a run of letters or digits is one token (its folded bytes hashed), a CJK character another.
    private static func tokenizeWords(
        _ bytes: UnsafeBufferPointer<UInt8>, into tokens: UnsafeMutableBufferPointer<UInt64>,
        word: UnsafeMutableBufferPointer<UInt8>
    ) -> Int {
        var count = 0
        var length = 0
        @inline(__always) func flushWord() {
            guard length > 0 else { return }
            tokens[count] = XXH3_64bits(word.baseAddress, length)
            count += 1
            length = 0
        }
        let n = bytes.count
        var i = 0
        while i < n {
            let b = bytes[i]
            if b < 0x80 {
                if ByteClass.isAlnum(b) {
                    // The whole run of letters and digits at once, lowercased (`| 0x20` leaves digits as they are).
                    let run = sluice_alnum_run(bytes.baseAddress! + i, n - i)
                    for k in 0..<run { word[length &+ k] = bytes[i &+ k] | 0x20 }
                    length &+= run
                    i &+= run
                    continue
                }
                if b == UInt8(ascii: "_") {
                    word[length] = b
                    length += 1
                } else {
                    flushWord()
                }
                i += 1
                continue
            }
            let (scalar, scalarLength) = decodeUTF8(bytes, at: i)
            i += scalarLength
            switch classify(scalar) {
            case .cjk:
                flushWord()
                tokens[count] = mix(UInt64(scalar) | 0xC1C0_0000_0000)
                count += 1
            case .letter(let folded):
                if folded < 0x80 {
                    word[length] = UInt8(folded)
                    length += 1
                } else {
                    length += writeUTF8(folded, to: word.baseAddress! + length)
                }
            case .separator:
                flushWord()
            }
        }
        flushWord()
        return count
    }

    /// Character mode: every letter, digit and CJK character is a token.
    private static func tokenizeCharacters(
        _ bytes: UnsafeBufferPointer<UInt8>, into tokens: UnsafeMutableBufferPointer<UInt64>
    ) -> Int {
        var count = 0
        let n = bytes.count
        var i = 0
        while i < n {
            let b = bytes[i]
            if b < 0x80 {
                if ByteClass.isAlnum(b) {
                    tokens[count] = mix(UInt64(ByteClass.lower(b)) | 0xC1C0_0000_0000)
                    count += 1
                }
                i += 1
                continue
            }
            let (scalar, length) = decodeUTF8(bytes, at: i)
            i += length
            switch classify(scalar) {
            case .cjk:
                tokens[count] = mix(UInt64(scalar) | 0xC1C0_0000_0000)
                count += 1
            case .letter(let folded):
                tokens[count] = mix(UInt64(folded) | 0xC1C0_0000_0000)
                count += 1
            case .separator: break
            }
        }
        return count
    }

    enum ScalarClass: Equatable {
        case cjk
        /// A letter or digit of a space-separated script, case-folded where cheap.
        case letter(UInt32)
        case separator
    }

    static func classify(_ s: UInt32) -> ScalarClass {
        // CJK unified ideographs first: most non-ASCII characters of the corpus, and the switch below tests its
        // ranges in order.
        if s &- 0x4E00 < 0x5200 { return .cjk }
        switch s {
        case 0x3040...0x30FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xAC00...0xD7AF, 0xF900...0xFAFF,
            0x20000...0x2FFFF:
            return .cjk
        case 0xFF10...0xFF19, 0xFF41...0xFF5A:
            return .letter(s - 0xFEE0)
        case 0xFF21...0xFF3A:
            return .letter(s - 0xFEE0 + 0x20)
        case 0xC0...0xDE where s != 0xD7:
            return .letter(s + 0x20)
        case 0xDF...0xFF where s != 0xF7:
            return .letter(s)
        case 0x100...0x24F:
            return .letter(s)  // Latin Extended: kept as written
        case 0x410...0x42F:
            return .letter(s + 0x20)  // Cyrillic capitals
        case 0x400...0x40F:
            return .letter(s + 0x50)
        case 0x370...0x3FF, 0x430...0x52F, 0x531...0x587, 0x5D0...0x5EA, 0x620...0x64A, 0x660...0x669,
            0x900...0x97F, 0xE00...0xE7F, 0x1E00...0x1FFF:
            return .letter(s)
        default:
            return .separator
        }
    }

    /// The 64-bit finalizer of MurmurHash3: a cheap, well-mixed bijection.
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var x = value
        x ^= x >> 33
        x = x &* 0xFF51_AFD7_ED55_8CCD
        x ^= x >> 33
        x = x &* 0xC4CE_B9FE_1A85_EC53
        x ^= x >> 33
        return x
    }

    private func mix(_ value: UInt64) -> UInt64 { Self.mix(value) }
}

/// What ``Shingler`` learned about one text besides its shingles.
public struct ShingleSet: Sendable, Equatable {
    /// Tokens in the text (words and CJK characters).
    public var tokenCount: Int
    /// Hash of the normalized token sequence; equal for texts that differ only in case, whitespace or punctuation.
    public var exactHash: UInt64
}
