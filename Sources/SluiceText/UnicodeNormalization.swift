internal import CSluiceScan
internal import Foundation

/// Unicode normalization form applied by the clean stage.
public enum NormalizationForm: String, Sendable, CaseIterable {
    /// Leave the text as it is.
    case none
    /// Canonical composition (the default): `e` + U+0301 becomes `é`; full-width punctuation stays.
    case nfc
    /// Compatibility composition: also folds full-width ASCII (`ｆｕｌｌ` → `full`, `，` → `,`), ligatures (`ﬁ`) and
    /// superscripts. Changes the look of Chinese text; off by default.
    case nfkc
}

/// Normalization with a fast path: a text whose every scalar is known to be stable under the form (ASCII,
/// Latin-1, Cyrillic, CJK ideographs, kana, common punctuation and emoji) is returned untouched without
/// decoding it into a `String`. Only the rest goes through Foundation.
enum UnicodeNormalization {
    /// Normalizes `input` into `output`; returns false without touching `output` when the text is already in
    /// the form.
    static func normalize(_ input: UnsafeBufferPointer<UInt8>, form: NormalizationForm, into output: inout [UInt8])
        -> Bool
    {
        guard form != .none, !isStable(input, form: form) else { return false }
        let string = String(decoding: input, as: UTF8.self)
        let normalized =
            form == .nfc ? string.precomposedStringWithCanonicalMapping : string.precomposedStringWithCompatibilityMapping
        output.removeAll(keepingCapacity: true)
        output.append(contentsOf: normalized.utf8)
        return !output.elementsEqual(input)
    }

    /// Whether every scalar is stable (quick check "yes" and canonical combining class 0) under the form.
    static func isStable(_ input: UnsafeBufferPointer<UInt8>, form: NormalizationForm) -> Bool {
        let n = input.count
        guard let base = input.baseAddress else { return true }
        var i = 0
        while i < n {
            let b = input[i]
            if b < 0x80 {
                i += 1 + sluice_ascii_run(base + i + 1, n - i - 1)
                continue
            }
            if b >= 0xE5 && b <= 0xE9 {
                i += 3  // U+5000…U+9FFF, CJK ideographs: stable in both forms
                continue
            }
            let (scalar, length) = decodeUTF8(input, at: i)
            guard form == .nfc ? isStableNFC(scalar) : isStableNFKC(scalar) else { return false }
            i += length
        }
        return true
    }

    private static func isStableNFC(_ s: UInt32) -> Bool {
        switch s {
        case 0..<0x300, 0x370..<0x374, 0x376..<0x37E, 0x388..<0x483, 0x48A..<0x591, 0x2010..<0x2060,
            0x2070..<0x20D0, 0x2100..<0x2126, 0x2127..<0x212A, 0x212C..<0x2300, 0x2460..<0x2800,
            0x3000..<0x302A, 0x3030..<0x3099, 0x309D..<0x3100, 0x3400..<0x4DC0, 0x4E00..<0xA000,
            0xAC00..<0xD7A4, 0xFE30..<0xFE50, 0xFF00..<0xFFF0, 0x1F000..<0x1FB00:
            return true
        default:
            return false
        }
    }

    private static func isStableNFKC(_ s: UInt32) -> Bool {
        switch s {
        case 0..<0xA0, 0xC0..<0x132, 0x134..<0x13F, 0x141..<0x149, 0x14A..<0x17F, 0x410..<0x450, 0x2010..<0x2011,
            0x2012..<0x2017, 0x2018..<0x2024, 0x2027..<0x202F, 0x2030..<0x2033, 0x3001..<0x302A, 0x3041..<0x3097, 0x30A1..<0x30FB, 0x4E00..<0xA000,
            0xAC00..<0xD7A4:
            return true
        default:
            return false
        }
    }
}
