import Foundation
@testable import SluiceConnectors
import SluiceConfig
@testable import SluiceKafka
import SluiceText
import Testing

@Suite("Connector parts")
struct ConnectorUnitTests {
    @Test func csvParserHandlesQuotesDelimitersAndLineBreaks() {
        let parser = CSVParser(delimiter: UInt8(ascii: ","))
        #expect(parser.parse(Array("a,b,c".utf8)) == ["a", "b", "c"])
        #expect(parser.parse(Array(#""x, y","say ""hi""",""\#r"#.utf8)) == ["x, y", #"say "hi""#, ""])
        #expect(parser.parse(Array("\"open field\nstill open".utf8)) == nil, "a quoted field that spans lines waits for more")
        #expect(parser.parse(Array("\"open field\nclosed\",z".utf8)) == ["open field\nclosed", "z"])
        #expect(CSVParser(delimiter: UInt8(ascii: ";")).parse(Array("1;2".utf8)) == ["1", "2"])
    }

    @Test func envelopeLineChecksAndRewrites() throws {
        func inspect(_ text: String, key: String? = "id") -> Result<EnvelopeLine.Inspection, DecodeFailure> {
            Array(text.utf8).withUnsafeBufferPointer { EnvelopeLine.inspect($0, keyField: key.map { Array($0.utf8) }) }
        }
        let good = try inspect(#"{"id":"a\u0062c","text":"hi","source":null}"#).get()
        #expect(good.decodedKey == Array("abc".utf8))
        #expect(!good.hasSource)
        let plain = #"{"id":42,"text":"x","source":"web"}"#
        #expect(try inspect(plain).get().keyRange.map { Array(Array(plain.utf8)[$0]) } == Array("42".utf8))
        let quoted = #"{"text":"x","url":"https://a.example/b"}"#
        #expect(try inspect(quoted, key: "url").get().keyRange.map { Array(Array(quoted.utf8)[$0]) } == Array("https://a.example/b".utf8))
        #expect(try inspect(#"{"id":42,"text":"x","source":"web"}"#).get().hasSource)
        for (line, reason) in [
            (#"{"text":1}"#, DecodeFailure.Reason.textWrongType), (#"{"body":"x"}"#, .missingText), ("[1]", .notAnObject),
            (#"{"text":"x""#, .invalidJSON), (#"{"text":"x"} trailing"#, .invalidJSON),
        ] {
            guard case .failure(let failure) = inspect(line) else {
                Issue.record("\(line) passed")
                continue
            }
            #expect(failure.reason == reason, "\(line)")
        }
        var out: [UInt8] = []
        let input = Array(#"{"body":"hello","doc":"d1","text":"old"}"#.utf8)
        let result = input.withUnsafeBufferPointer {
            EnvelopeLine.rewrite($0, renames: ["body": "text", "doc": "id"], additions: [("source", Array(#""web""#.utf8))], into: &out)
        }
        #expect((try? result.get()) != nil)
        #expect(String(decoding: out, as: UTF8.self) == #"{"text":"hello","id":"d1","source":"web"}"#, "a renamed member wins over one with the envelope name")
    }

    @Test func ackTrackerReleasesPositionsInSendOrderOnly() {
        let tracker = AckTracker()
        let first = tracker.register(SourcePosition(slot: 0, offset: 10, line: 1))
        let second = tracker.register(SourcePosition(slot: 0, offset: 20, line: 2))
        let third = tracker.register(SourcePosition(slot: 1, offset: 5, line: 1))
        tracker.acknowledge(second, error: nil)
        tracker.acknowledge(third, error: nil)
        #expect(tracker.takeReleased().isEmpty, "nothing before the first acknowledgement is released")
        tracker.acknowledge(first, error: nil)
        let released = tracker.takeReleased()
        #expect(released[0]?.offset == 20 && released[1]?.offset == 5)
        #expect(tracker.outstanding == 0)
        let failed = tracker.register(SourcePosition(slot: 0, offset: 30, line: 3))
        let after = tracker.register(SourcePosition(slot: 0, offset: 40, line: 4))
        tracker.acknowledge(after, error: nil)
        tracker.acknowledge(failed, error: .closed("the test's producer"))
        #expect(tracker.takeReleased().isEmpty, "a failed record holds every later position")
        #expect(tracker.failure != nil)
    }

    @Test func configurationErrorsNameTheKey() {
        func error(_ yaml: String) -> String {
            do {
                _ = try ConnectorConfiguration.load(yaml: yaml, file: "c.yaml", environment: [:])
                return ""
            } catch {
                return "\(error)"
            }
        }
        #expect(error("name: a\ntype: file\ntopic: t\npath: x\n").contains("state_dir"))
        #expect(error("name: a\ntype: pigeon\ntopic: t\n").contains("type"))
        #expect(error("name: a\ntype: stdin\ntopic: t\nbogus: 1\n").contains("bogus: unknown key"))
        #expect(error("name: a\ntype: generator\ntopic: t\njunk_rate: 0.9\nbad_rate: 0.5\n").contains("add up"))
        #expect(error("name: a\ntype: http\ntopic: t\ntokens: ${TOKEN}\n").contains("TOKEN"))
        #expect(error("name: a b\ntype: stdin\ntopic: t\n").contains("name"))
        #expect(error("name: a\ntype: stdin\ntopic: t\nfields: {body: text}\n").contains("fields.body"))
        let minimal = try? ConnectorConfiguration.load(
            yaml: "name: f\ntype: file\ntopic: raw.web\npath: in\nformat: csv\nstate_dir: s\n", file: "c.yaml", environment: [:])
        #expect(minimal?.format == .csv && minimal?.keyField == "id" && minimal?.backpressure == nil)
    }

    @Test func generatorIsDeterministicAndGivesEveryStageWork() throws {
        var configuration = ConnectorConfiguration(name: "g", type: .generator, topic: "t")
        configuration.seed = 11
        var model = SyntheticRecords(configuration: configuration, epoch: Date(timeIntervalSince1970: 0))
        var again = SyntheticRecords(configuration: configuration, epoch: Date(timeIntervalSince1970: 0))
        let records = (0..<4000).map { model.record(Int64($0)) }
        #expect(records[1234].value == again.record(1234).value, "record i depends on seed and i only")

        let decoder = EnvelopeDecoder()
        var scanner = PIIScanner()
        var quality = QualityFilter()
        var undecodable = 0
        var withPII = 0
        var chinese = 0
        var html = 0
        var lowQuality = 0
        var texts: [[UInt8]: Int] = [:]
        for record in records {
            guard case .success(let document) = decoder.decode(record.value) else {
                undecodable += 1
                continue
            }
            if !scanner.scan(document.text).isEmpty { withPII += 1 }
            if String(decoding: document.text, as: UTF8.self).contains("<html>") { html += 1 }
            if document.metaJSON.map({ String(decoding: $0, as: UTF8.self).contains("\"zh\"") }) == true { chinese += 1 }
            if !quality.evaluate(document.text).failed.isEmpty { lowQuality += 1 }
            texts[document.text, default: 0] += 1
        }
        let exactDuplicates = texts.values.reduce(0) { $0 + $1 - 1 }
        // Rates: 1% bad, 10% PII, 5% junk, 5% exact and 5% near duplicates, 35% Chinese.
        #expect((20...80).contains(undecodable), "undecodable \(undecodable)")
        #expect((280...600).contains(withPII), "with PII \(withPII)")
        #expect((900...1900).contains(chinese), "Chinese \(chinese)")
        #expect(html > 50, "HTML \(html)")
        #expect(lowQuality >= 150, "low quality \(lowQuality)")
        #expect((120...320).contains(exactDuplicates), "exact duplicates \(exactDuplicates)")
    }
}
