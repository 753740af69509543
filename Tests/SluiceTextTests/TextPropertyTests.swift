import PropertyBased
import Testing

@testable import SluiceText

/// Generated inputs: valid card and ID numbers must be found, one changed check digit must not be, redaction
/// never leaves a secret behind, and output is always valid UTF-8.
@Suite("Text stage properties")
struct TextPropertyTests {
    private static func luhnCheckDigit(_ payload: [Int]) -> Int {
        var sum = 0
        for (index, digit) in payload.reversed().enumerated() {
            var d = digit
            if index % 2 == 0 {
                d *= 2
                if d > 9 { d -= 9 }
            }
            sum += d
        }
        return (10 - sum % 10) % 10
    }

    private static func found(_ kind: PIIKind, in text: String) -> Bool {
        var scanner = PIIScanner()
        return scanner.scan(Array(text.utf8)).contains { $0.kind == kind }
    }

    @Test func luhnValidCardsAreFoundAndInvalidOnesAreNot() async {
        await propertyCheck(input: Gen.int(in: 0...9).array(of: 15), Gen.int(in: 1...9)) { body, offset in
            let payload = [4] + body.dropFirst()
            let check = Self.luhnCheckDigit(payload)
            let valid = (payload + [check]).map(String.init).joined()
            let invalid = (payload + [(check + offset) % 10]).map(String.init).joined()
            #expect(Self.found(.bankCard, in: "paid with \(valid) twice"), "\(valid)")
            #expect(!Self.found(.bankCard, in: "paid with \(invalid) twice"), "\(invalid)")
        }
    }

    @Test func chineseIDsWithTheRightCheckCharacterAreFoundOnly() async {
        let regions = ["110101", "310104", "440305", "510107", "650102"]
        let bodies = Gen.int(in: 0...Int.max).map { seed -> String in
            let region = regions[seed % regions.count]
            let year = 1930 + (seed / 7) % 86
            let month = 1 + (seed / 701) % 12
            let day = 1 + (seed / 9011) % 28
            let sequence = (seed / 252_311) % 1000
            return region + String(year) + format2(month) + format2(day) + format3(sequence)
        }
        await propertyCheck(input: bodies) { body in
            let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
            var sum = 0
            for (character, weight) in zip(body, weights) { sum += Int(String(character))! * weight }
            let checks = Array("10X98765432")
            let right = checks[sum % 11]
            let wrong = checks[(sum + 1) % 11]
            #expect(Self.found(.cnID, in: "身份证号\(body)\(right)。"))
            #expect(!Self.found(.cnID, in: "身份证号\(body)\(wrong)。"))
        }
    }

    private static let secrets = [
        "AKIAIOSFODNN7EXAMPLE", "ghp_0123456789abcdefghijABCDEFGHIJ012345", "alice@example.org", "13987426658",
        "4324153250232509", "10.20.30.40", "2001:db8:85a3::8a2e:370:7334", "362-31-4397",
    ]
    private static let fillers = ["文本", " ", "word", "，", "\n", "。", "123", "-", ".", "x", "@", ":", "(", "+"]

    @Test func redactionNeverLeavesASecretBehind() async throws {
        let pool = Self.secrets + Self.fillers + Self.fillers
        let fragments = Gen.int(in: 0...(pool.count - 1)).array(of: 1...24).map { indexes in indexes.map { pool[$0] } }
        await propertyCheck(count: 300, input: fragments) { parts in
            let text = parts.joined(separator: " ")
            var stage = try Desensitizer()
            var document = Document(text: Array(text.utf8))
            _ = stage.process(&document)
            let output = document.textString
            for secret in Self.secrets where parts.contains(secret) {
                #expect(!output.contains(secret), "\(text) → \(output)")
            }
            // Placeholders never form a new finding: a second pass changes nothing.
            var again = document
            _ = stage.process(&again)
            #expect(again.text == document.text)
        }
    }

    @Test func outputIsAlwaysValidUTF8() async throws {
        let scalar = Gen.int(in: 0...0x2FFFF).map { value -> String in
            // Mostly the bytes the detectors and the HTML converter branch on, some of anything.
            let picks: [Int] = Array("0123456789 .-@:/<>&#;()+=\"xX_A\n".unicodeScalars.map { Int($0.value) })
                + [0x4E2D, 0x200B, 0x1F600, 0xFF1A, 0x1B]
            let code = value % 4 == 0 ? value : picks[value % picks.count]
            guard let scalar = Unicode.Scalar(UInt32(code)), code != 0 else { return "?" }
            return String(Character(scalar))
        }
        let texts = scalar.array(of: 0...120).map { $0.joined() }
        await propertyCheck(count: 1000, input: texts) { text in
            var cleaner = Cleaner()
            var stage = try Desensitizer()
            var document = Document(text: Array(("<p>" + text + " 13987426658 &#x4E2D;</p>").utf8))
            if cleaner.process(&document) == .keep { _ = stage.process(&document) }
            let valid = document.text.withUnsafeBufferPointer { UTF8Validation.firstInvalidByte($0) == nil }
            #expect(valid)
        }
    }

    /// The quality measurements' word pass (ASCII words measured sixteen bytes at a time) agrees with a plain
    /// reference: the longest chain of one repeated letter, digit or non-ASCII character, and the word count.
    @Test func wordMeasurementsMatchAPlainReference() async throws {
        let alphabet = Array("aaaabbbZZ00119 .,'-_\n\té\u{3000}xyzQ")
        let character = Gen.int(in: 0...(alphabet.count * 3 - 1)).map { value -> String in
            // A third of the picks are long runs of one letter, so words cross sixteen bytes.
            value < alphabet.count * 2 ? String(alphabet[value % alphabet.count]) : String(repeating: "k", count: value % 20)
        }
        let texts = character.array(of: 1...200).map { $0.joined() }
        await propertyCheck(count: 1000, input: texts) { text in
            var filter = QualityFilter()
            let measured = filter.measurements(Array(text.utf8))
            var longest = 0
            var chain = 0
            var previous: Unicode.Scalar?
            for scalar in text.unicodeScalars {
                let counts = scalar.value >= 0x80 || (scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)))
                chain = scalar == previous && counts ? chain + 1 : 1
                if chain >= 2 { longest = max(longest, chain) }
                previous = scalar
            }
            let words = text.split(whereSeparator: { " \n\t\r\u{3000}".contains($0) }).count
            #expect(measured["char_run"] == Double(longest), "\(text.debugDescription)")
            #expect(measured["words"] == Double(words), "\(text.debugDescription)")
        }
    }

    /// The duplicated n-gram measurements (n = 5…10) agree with datatrove's `find_all_duplicate` run plainly
    /// (a set of word tuples, skipping past each duplicate), rolling hashes, early stop and all. Small vocabularies
    /// make repeats of every length common.
    @Test func duplicatedNGramsMatchAPlainReference() async throws {
        let vocabulary = ["a", "bb", "the", "cat", "x1", "é", "dog", "zz9"]
        let texts = Gen.int(in: 0...999).array(of: 0...300).map { picks -> String in
            let size = 2 + (picks.first ?? 0) % 7  // 2…8 distinct words
            return picks.enumerated().map { pick in
                vocabulary[pick.element % size] + (pick.offset % 17 == 16 ? "\n" : " ")
            }.joined()
        }
        await propertyCheck(count: 400, input: texts) { text in
            var filter = QualityFilter()
            let measured = filter.measurements(Array(text.utf8))
            let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
            let characters = Double(text.unicodeScalars.count)
            for n in 5...10 {
                var seen = Set<[String]>()
                var index = 0
                var repeated = 0
                while index < words.count - n + 1 {
                    let gram = Array(words[index..<(index + n)])
                    if seen.contains(gram) {
                        repeated += gram.map(\.unicodeScalars.count).reduce(0, +)
                        index += n
                    } else {
                        seen.insert(gram)
                        index += 1
                    }
                }
                let expected = characters == 0 ? 0 : Double(repeated) / characters
                #expect(measured["dup_\(n)"] == expected, "n = \(n): \(text.debugDescription)")
            }
        }
    }
}

private func format2(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
private func format3(_ value: Int) -> String { value < 10 ? "00\(value)" : value < 100 ? "0\(value)" : "\(value)" }
