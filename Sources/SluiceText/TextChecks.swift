/// Byte-level checks shared by the stages.
enum TextChecks {
    /// Whether UTF-8 text has anything besides whitespace (ASCII whitespace, NBSP, ideographic space, BOM and
    /// the other Unicode spaces).
    static func hasVisibleContent<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Bool {
        var sawNonASCII = false
        for byte in bytes {
            switch byte {
            case 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20: continue
            case 0..<0x80: return true
            default: sawNonASCII = true
            }
        }
        guard sawNonASCII else { return false }
        // Decode scalars in place and stop at the first visible one (no copy of the text).
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while case .scalarValue(let scalar) = decoder.decode(&iterator) {
            if !(scalar.properties.isWhitespace || scalar == "\u{FEFF}" || scalar == "\u{200B}") { return true }
        }
        return false
    }
}

/// UTF-8 validation per RFC 3629 (no overlongs, no surrogates, nothing above U+10FFFF), with an ASCII fast path.
enum UTF8Validation {
    /// The offset of the first byte that is not part of a valid sequence, or `nil` when all is valid.
    static func firstInvalidByte(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        var index = 0
        let count = bytes.count
        guard let base = bytes.baseAddress else { return nil }
        while index < count {
            // Eight ASCII bytes at a time.
            while index + 8 <= count {
                let word = UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)
                if word & 0x8080_8080_8080_8080 != 0 { break }
                index += 8
            }
            guard index < count else { return nil }
            if base[index] < 0x80 {
                index += 1
                continue
            }
            guard let length = sequenceLength(base, at: index, count: count) else { return index }
            index += length
        }
        return nil
    }

    /// The length of the valid multi-byte sequence starting at `index` (its lead byte is at least 0x80), or nil.
    @inline(__always)
    static func sequenceLength(_ base: UnsafePointer<UInt8>, at index: Int, count: Int) -> Int? {
        let lead = base[index]
        let length: Int
        var lower: UInt8 = 0x80
        var upper: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: return nil
        }
        guard index + length <= count else { return nil }
        let second = base[index + 1]
        guard second >= lower && second <= upper else { return nil }
        for offset in 2..<max(2, length) where base[index + offset] & 0xC0 != 0x80 { return nil }
        return length
    }
}
