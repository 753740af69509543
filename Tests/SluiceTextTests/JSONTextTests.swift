import Foundation
import SluiceText
import Testing

@Suite("JSONText")
struct JSONTextTests {
    /// The fast decimal formatter writes what printf's `%.Nf` writes: ties of exactly representable values round
    /// to even (0.0625 → "0.062"), near-ties of inexact products (0.0005) round as the exact binary value does,
    /// and everything else agrees on a million pseudo-random scores and a sweep of magnitudes.
    @Test func fixedDecimalsMatchPrintf() {
        func check(_ value: Double, _ digits: Int) {
            #expect(JSONText.fixed(value, digits: digits) == String(format: "%.\(digits)f", value), "\(value) with \(digits) digits")
        }
        let special: [Double] = [
            0, 1, 0.5, 0.0625, 0.1875, 0.9375, 0.90625, 0.0005, 0.0015, 0.0025, 1.0005, 0.9995, 0.9999999, 4.0e12 + 0.5,
            4_503_599_627_370_496.5 / 1000, 4.0e15, 4.5e15, 9.0e15 - 1,
            2.5, 3.5, 0.125, 0.375, 123_456.789, 1e-9, 0.3, 0.7, 1e15, 8.9e15, 1e16, 1e300,
            -0.0, -0.25, -1.5, .infinity, -.infinity, .nan,
        ]
        for value in special {
            for digits in 0...6 { check(value, digits) }
        }
        for k in 0...4096 {
            for digits in 1...4 { check(Double(k) / 4096, digits) }
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<200_000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let unit = Double(state >> 11) / Double(1 << 53)
            check(unit, 3)
            check(unit * 1000, 2)
            check(Double(Int(unit * 2000)) / 2000, 3)  // near the ties of three decimals
            check(unit * 1e12, 3)  // large: the product's rounding error approaches the distance to a tie
            check(Double(Int(unit * 2e12)) / 2000 + 0.0005, 3)
        }
    }

    /// Contiguous bytes (escapes found by a scan, plain runs copied whole) and any other sequence (byte by byte)
    /// give the same JSON string, which JSONSerialization reads back as the original text.
    @Test func stringEscapesAgreeOnBothPathsAndRoundTrip() throws {
        let texts = [
            "", "plain", "\"quoted\"", "back\\slash", "line\nbreak\r\n\ttab", "\u{01}\u{1F}ctl", "中文 and ünïcode",
            "\"", "\\", "a\"b\\c\nd\u{7}e", String(repeating: "x\"", count: 100),
        ]
        for text in texts {
            var contiguous: [UInt8] = []
            JSONText.appendString(Array(text.utf8), to: &contiguous)
            var general: [UInt8] = []
            JSONText.appendString(text.utf8.lazy.map { $0 }, to: &general)
            #expect(contiguous == general, "\(text)")
            #expect(JSONText.string(text) == String(decoding: contiguous, as: UTF8.self))
            let parsed = try JSONSerialization.jsonObject(with: Data(contiguous), options: .fragmentsAllowed) as? String
            #expect(parsed == text)
        }
    }
}
