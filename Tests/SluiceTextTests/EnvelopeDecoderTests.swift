import SluiceText
import Testing

@Suite("EnvelopeDecoder")
struct EnvelopeDecoderTests {
    let decoder = EnvelopeDecoder()

    func decode(_ text: String) -> Result<Document, DecodeFailure> { decoder.decode(Array(text.utf8)) }

    func reason(_ text: String) -> DecodeFailure.Reason? {
        if case .failure(let failure) = decode(text) { return failure.reason }
        return nil
    }

    @Test func decodesEveryEnvelopeField() throws {
        let line = #"{"id":"web-1","source":"web","url":null,"ts":"2024-03-01T12:00:00.123Z","text":"Hé \"q\" \u4e2d\ud83d\ude00\n","meta":{"crawl":"cc","n":[1,2.5e3]},"extra":true}"# + "\r"
        let document = try decode(line).get()
        #expect(document.textString == "Hé \"q\" 中😀\n")
        #expect(document.id == "web-1")
        #expect(document.source == "web")
        #expect(document.url == nil)
        #expect(document.timestamp == "2024-03-01T12:00:00.123Z")
        #expect(document.metaJSON.map { String(decoding: $0, as: UTF8.self) } == #"{"crawl":"cc","n":[1,2.5e3]}"#)
    }

    @Test(arguments: [
        (#"{"text": "a",}"#, DecodeFailure.Reason.invalidJSON),
        (#"{'text': 'a'}"#, .invalidJSON),
        (#"{text: "a"}"#, .invalidJSON),
        (#"{"text": "a""#, .invalidJSON),
        (#"{"text": "a"}{"text": "b"}"#, .invalidJSON),
        (#"{"text": "a", "n": NaN}"#, .invalidJSON),
        ("\u{FEFF}{\"text\": \"a\"}", .invalidJSON),
        (#"["text"]"#, .notAnObject),
        (#"{"id": "x"}"#, .missingText),
        (#"{"Text": "x"}"#, .missingText),
        (#"{"text": 3}"#, .textWrongType),
        (#"{"text": null}"#, .textWrongType),
        (#"{"text": ["a"]}"#, .textWrongType),
        (#"{"text": "a", "id": 17}"#, .fieldWrongType),
        (#"{"text": "a", "meta": "x"}"#, .fieldWrongType),
        (#"{"text": "  \n\t\u3000 "}"#, .emptyText),
        (#"{"text": ""}"#, .emptyText),
        (#"{"text": "a\u0000b"}"#, .nulCharacter),
        (#"{"text": "a\ud800b"}"#, .loneSurrogate),
        (#"{"text": "a\udc00"}"#, .loneSurrogate),
        (#"{"text": "a", "ts": "05/03/2024 12:00"}"#, .invalidTimestamp),
        (#"{"text": "a", "ts": "2024-13-45T99:00:00Z"}"#, .invalidTimestamp),
        (#"{"text": "a", "ts": ""}"#, .invalidTimestamp),
        (#"{"text": "a", "ts": 1712345678}"#, .fieldWrongType),
        ("", .invalidJSON),
    ])
    func rejectsWithATypedReason(_ line: String, _ expected: DecodeFailure.Reason) {
        #expect(reason(line) == expected, "\(line)")
    }

    @Test(arguments: [
        [0x7B, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x7D] as [UInt8],  // bad byte
        [0x7B, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3A, 0x22, 0xC0, 0xAF, 0x22, 0x7D],  // overlong '/'
        [0x7B, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3A, 0x22, 0xED, 0xA0, 0x80, 0x22, 0x7D],  // UTF-8 surrogate
        [0x7B, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3A, 0x22, 0xE4, 0xB8, 0x22, 0x7D],  // truncated sequence
        [0x7B, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3A, 0x22, 0xD6, 0xD0, 0xCE, 0xC4, 0x22, 0x7D],  // GBK
    ])
    func rejectsInvalidUTF8(_ bytes: [UInt8]) {
        guard case .failure(let failure) = decoder.decode(bytes) else {
            Issue.record("accepted invalid UTF-8")
            return
        }
        #expect(failure.reason == .invalidUTF8)
    }

    /// Runs of multi-byte characters are validated apart from the ASCII scan: a bad sequence anywhere in or after
    /// such a run, or cut off by the closing quote, is still caught, and valid mixed text comes back unchanged.
    @Test func invalidUTF8InsideRunsOfChineseIsCaught() {
        let bad: [[UInt8]] = [
            [0xE4, 0xB8], [0xE4, 0x41, 0xAD], [0xE4, 0xB8, 0x41], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xFF],
            [0xC0, 0xAF], [0xF0, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xBF],
        ]
        for run in 0..<20 {
            let chinese = Array(String(repeating: "中", count: run).utf8)
            for sequence in bad {
                for tail in [[], Array("文".utf8), Array("abc".utf8)] {
                    let line = Array(#"{"text":"x"#.utf8) + chinese + sequence + tail + Array(#""}"#.utf8)
                    guard case .failure(let failure) = decoder.decode(line) else {
                        Issue.record("accepted \(sequence) after \(run) Chinese characters")
                        continue
                    }
                    #expect(failure.reason == .invalidUTF8)
                }
            }
            let valid = "x" + String(repeating: "中", count: run) + "é€😀\u{E000}\u{FFFD}文 and ASCII"
            guard case .success(let document) = decoder.decode(Array(#"{"text":""#.utf8) + Array(valid.utf8) + Array(#""}"#.utf8))
            else {
                Issue.record("rejected valid text after \(run) Chinese characters")
                continue
            }
            #expect(document.textString == valid)
        }
    }

    @Test func limitsAndPolicies() throws {
        var small = EnvelopeDecoder()
        small.maximumBytes = 10
        guard case .failure(let failure) = small.decode(Array(#"{"text":"abcdefgh"}"#.utf8)) else {
            Issue.record("accepted an oversize record")
            return
        }
        #expect(failure.reason == .oversize)

        guard case .failure(let rawNul) = decoder.decode(Array(#"{"text":"a"#.utf8) + [0] + Array(#"b"}"#.utf8)) else {
            Issue.record("accepted a raw NUL")
            return
        }
        #expect(rawNul.reason == .nulCharacter)

        var stripping = EnvelopeDecoder()
        stripping.nulPolicy = .strip
        #expect(try stripping.decode(Array(#"{"text":"a\u0000b"}"#.utf8)).get().textString == "ab")

        var plain = EnvelopeDecoder()
        plain.format = .text
        #expect(try plain.decode(Array("纯文本 text".utf8)).get().textString == "纯文本 text")
        #expect(throws: DecodeFailure.self) { try plain.decode(Array(" \n".utf8)).get() }
    }
}
