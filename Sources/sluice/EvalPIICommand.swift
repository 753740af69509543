import ArgumentParser
import Foundation
import SluicePipeline
import SluiceText

extension EvalCommand {
    struct PII: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pii",
            abstract: "Score the desensitize stage against a ground-truth file; print recall, precision and speed.",
            discussion: """
                Every line of --corpus is decoded, cleaned and desensitized with the default settings. --truth has \
                one JSON object per corpus line with `pii` (values that must disappear), `decoys` (look-alikes that \
                must survive) and `pii_source` (real values found in the source text).

                Recall per type: a value counts as found when it no longer appears in the output text. Precision \
                per kind: a finding is correct when it overlaps a labelled value (`pii` or `pii_source`), wrong when \
                it overlaps a decoy, and unlabelled otherwise (counted against precision). A decoy is a false \
                positive when the output no longer contains it. Values that the clean stage already changed are \
                counted apart.

                Speed: a first pass runs decode + clean + desensitize over the whole corpus on one core, timed; \
                the scoring pass is not timed. Both files may be plain or .zst.
                """)

        @Option(name: .long, help: ArgumentHelp("The corpus: .jsonl or .jsonl.zst.", valueName: "file"))
        var corpus: String

        @Option(name: .long, help: ArgumentHelp("The ground truth: .jsonl or .jsonl.zst.", valueName: "file"))
        var truth: String

        @Option(name: .long, help: "Print up to this many missed values and altered decoys with their context.")
        var showMisses = 0

        @Option(name: .long, help: ArgumentHelp("Write every output text to this file, one JSON string per line.", valueName: "file"))
        var dumpOutput: String?

        func run() async throws {
            let corpusData = try CorpusFile.read(corpus)
            let truthData = try CorpusFile.read(truth)
            let speed = try measureSpeed(corpusData)
            Terminal.out(
                String(
                    format: "decode+clean+desensitize, one core: %.1f MB/s of text, %.0f docs/s (%d docs, %.1f MB of text, %.2f s)",
                    Double(speed.textBytes) / speed.seconds / 1e6, Double(speed.documents) / speed.seconds,
                    speed.documents, Double(speed.textBytes) / 1e6, speed.seconds))
            Terminal.out(
                String(
                    format: "  decode %.2f s, clean %.2f s (%.1f MB/s), desensitize %.2f s (%.1f MB/s of cleaned text, %.1f MB)",
                    speed.decodeSeconds, speed.cleanSeconds, Double(speed.textBytes) / speed.cleanSeconds / 1e6,
                    speed.desensitizeSeconds, Double(speed.cleanedBytes) / speed.desensitizeSeconds / 1e6,
                    Double(speed.cleanedBytes) / 1e6))
            let labels = try TruthFile.parse(truthData)
            var corpusLines = 0
            CorpusFile.forEachLine(corpusData) { _, _ in corpusLines += 1 }
            if corpusLines != labels.count {
                Terminal.err(
                    "warning: the corpus has \(corpusLines) lines and the truth \(labels.count); lines are matched by "
                        + "position, and lines without a label are not scored")
            }
            var score = PIIScore()
            var cleaner = Cleaner()
            var desensitizer = try Desensitizer()
            let decoder = EnvelopeDecoder()
            var misses = showMisses
            var dump = Data()
            CorpusFile.forEachLine(corpusData) { line, number in
                guard number <= labels.count, case .success(var document) = decoder.decode(line) else { return }
                let label = labels[number - 1]
                guard cleaner.process(&document) == .keep else {
                    score.droppedByCleaning += label.pii.count
                    return
                }
                let cleaned = document.text
                let findings = desensitizer.findings(in: cleaned)
                _ = desensitizer.process(&document)
                if dumpOutput != nil, let json = try? JSONSerialization.data(withJSONObject: [document.textString]) {
                    dump.append(json.dropFirst().dropLast())
                    dump.append(0x0A)
                }
                score.add(label: label, cleaned: cleaned, output: document.text, findings: findings, misses: &misses)
            }
            score.print()
            if let dumpOutput { try dump.write(to: URL(fileURLWithPath: dumpOutput)) }
        }

        private struct Speed {
            var documents = 0
            var textBytes = 0
            var cleanedBytes = 0
            var seconds = 0.0
            var decodeSeconds = 0.0
            var cleanSeconds = 0.0
            var desensitizeSeconds = 0.0
        }

        /// Times the whole chain, and each stage apart (clock reads around each call, about 1% of the time).
        private func measureSpeed(_ data: Data) throws -> Speed {
            var cleaner = Cleaner()
            var desensitizer = try Desensitizer()
            let decoder = EnvelopeDecoder()
            var speed = Speed()
            let clock = ContinuousClock()
            var decode = Duration.zero
            var clean = Duration.zero
            var desensitize = Duration.zero
            let started = clock.now
            CorpusFile.forEachLine(data) { line, _ in
                let t0 = clock.now
                guard case .success(var document) = decoder.decode(line) else { return }
                let t1 = clock.now
                speed.documents += 1
                speed.textBytes += document.text.count
                let keep = cleaner.process(&document) == .keep
                let t2 = clock.now
                if keep {
                    speed.cleanedBytes += document.text.count
                    _ = desensitizer.process(&document)
                }
                let t3 = clock.now
                decode += t1 - t0
                clean += t2 - t1
                desensitize += t3 - t2
            }
            speed.seconds = (clock.now - started).inSeconds
            speed.decodeSeconds = decode.inSeconds
            speed.cleanSeconds = clean.inSeconds
            speed.desensitizeSeconds = desensitize.inSeconds
            return speed
        }
    }
}

/// The labels of one corpus line.
struct TruthLabel {
    var pii: [(type: String, value: [UInt8])] = []
    var source: [(type: String, value: [UInt8])] = []
    var decoys: [(type: String, value: [UInt8])] = []
    var noise: [String] = []
    var language: String?
    var id: String?
    var origin: String?
    var duplicateOf: String?
    var duplicateKind: String?
    var jaccard: Double?
    var hardNegativeOf: String?
    var junk = false
    var junkKind: String?
    var badInput = false
    var gray: [String] = []
}

enum TruthFile {
    static func parse(_ data: Data) throws -> [TruthLabel] {
        var labels: [TruthLabel] = []
        try CorpusFile.forEachLine(data) { line, number in
            guard !line.isEmpty else { return }
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw CommandError("truth line \(number) is not a JSON object")
            }
            func items(_ key: String) -> [(String, [UInt8])] {
                (object[key] as? [[String: Any]] ?? []).compactMap { item in
                    guard let type = item["type"] as? String, let value = item["value"] as? String else { return nil }
                    return (type, Array(value.utf8))
                }
            }
            labels.append(
                TruthLabel(
                    pii: items("pii"), source: items("pii_source"), decoys: items("decoys"),
                    noise: object["noise"] as? [String] ?? [], language: object["lang"] as? String,
                    id: object["id"] as? String, origin: object["source"] as? String,
                    duplicateOf: object["dup_of"] as? String, duplicateKind: object["dup_kind"] as? String,
                    jaccard: object["jaccard"] as? Double, hardNegativeOf: object["hard_negative_of"] as? String,
                    junk: object["junk"] as? Bool ?? false, junkKind: object["junk_kind"] as? String,
                    badInput: object["bad_input"] as? Bool ?? false,
                    gray: (object["gray"] as? [[Any]] ?? []).compactMap { $0.first as? String }))
        }
        return labels
    }
}

/// Counts for `sluice eval pii`.
struct PIIScore {
    struct Recall { var total = 0, found = 0, changedByCleaning = 0 }
    struct Precision { var findings = 0, labelled = 0, decoys = 0, unlabelled = 0 }
    struct Decoys { var total = 0, altered = 0, changedByCleaning = 0 }

    var recall: [String: Recall] = [:]
    var precision: [PIIKind: Precision] = [:]
    var decoys: [String: Decoys] = [:]
    var droppedByCleaning = 0

    mutating func add(
        label: TruthLabel, cleaned: [UInt8], output: [UInt8], findings: [PIIFinding], misses: inout Int
    ) {
        for (type, value) in label.pii {
            var entry = recall[type, default: Recall()]
            entry.total += 1
            if !contains(output, value) {
                entry.found += 1
                if !contains(cleaned, value) { entry.changedByCleaning += 1 }
            } else if misses > 0 {
                misses -= 1
                Terminal.out("missed \(type): \(context(cleaned, value))")
            }
            recall[type] = entry
        }
        for (type, value) in label.decoys {
            var entry = decoys[type, default: Decoys()]
            entry.total += 1
            if !contains(cleaned, value) {
                entry.changedByCleaning += 1
            } else if !contains(output, value) {
                entry.altered += 1
                if misses > 0 {
                    misses -= 1
                    Terminal.out("altered decoy \(type): \(context(cleaned, value))")
                }
            }
            decoys[type] = entry
        }
        for finding in findings {
            var entry = precision[finding.kind, default: Precision()]
            entry.findings += 1
            if overlaps(finding.range, cleaned, label.pii) || overlaps(finding.range, cleaned, label.source) {
                entry.labelled += 1
            } else if overlaps(finding.range, cleaned, label.decoys) {
                entry.decoys += 1
            } else {
                entry.unlabelled += 1
                if misses > 0 {
                    misses -= 1
                    let text = String(decoding: cleaned[finding.range], as: UTF8.self)
                    Terminal.out("unlabelled \(finding.kind.rawValue): \(text)")
                }
            }
            precision[finding.kind] = entry
        }
    }

    func print() {
        Terminal.out("\nrecall per labelled type (found = no longer in the output)")
        Terminal.out(pad(["type", "values", "found", "recall", "changed by clean"]))
        var all = Recall()
        for (type, entry) in recall.sorted(by: { $0.key < $1.key }) {
            Terminal.out(pad([type, "\(entry.total)", "\(entry.found)", percent(entry.found, entry.total), "\(entry.changedByCleaning)"]))
            all.total += entry.total
            all.found += entry.found
        }
        Terminal.out(pad(["all", "\(all.total)", "\(all.found)", percent(all.found, all.total), ""]))
        if droppedByCleaning > 0 { Terminal.out("(\(droppedByCleaning) values in documents the clean stage dropped are not counted)") }

        Terminal.out("\nprecision per detector kind")
        Terminal.out(pad(["kind", "findings", "labelled", "decoys", "unlabelled", "vs decoys", "strict"]))
        for (kind, entry) in precision.sorted(by: { $0.key < $1.key }) {
            Terminal.out(pad([
                kind.rawValue, "\(entry.findings)", "\(entry.labelled)", "\(entry.decoys)", "\(entry.unlabelled)",
                percent(entry.findings - entry.decoys, entry.findings), percent(entry.labelled, entry.findings),
            ]))
        }
        Terminal.out("(vs decoys: only decoy hits count as false positives; strict: unlabelled findings count too)")

        Terminal.out("\ndecoys (must survive unchanged)")
        Terminal.out(pad(["type", "decoys", "altered", "preserved", "changed by clean"]))
        for (type, entry) in decoys.sorted(by: { $0.key < $1.key }) {
            let checked = entry.total - entry.changedByCleaning
            Terminal.out(pad([type, "\(entry.total)", "\(entry.altered)", percent(checked - entry.altered, checked), "\(entry.changedByCleaning)"]))
        }
    }

    private func pad(_ columns: [String]) -> String {
        columns.enumerated().map { index, column in
            let width = index == 0 ? 22 : 12
            return column.count >= width ? column + " " : column + String(repeating: " ", count: width - column.count)
        }.joined()
    }

    private func percent(_ part: Int, _ whole: Int) -> String {
        whole == 0 ? "-" : String(format: "%.2f%%", Double(part) * 100 / Double(whole))
    }

    private func contains(_ text: [UInt8], _ value: [UInt8]) -> Bool {
        occurrences(text, value).first != nil
    }

    private func occurrences(_ text: [UInt8], _ value: [UInt8]) -> [Range<Int>] {
        guard let first = value.first, text.count >= value.count else { return [] }
        var result: [Range<Int>] = []
        var i = 0
        while i + value.count <= text.count {
            if text[i] == first && text[i..<(i + value.count)].elementsEqual(value) { result.append(i..<(i + value.count)) }
            i += 1
        }
        return result
    }

    private func overlaps(_ range: Range<Int>, _ text: [UInt8], _ values: [(type: String, value: [UInt8])]) -> Bool {
        values.contains { item in occurrences(text, item.value).contains { $0.overlaps(range) } }
    }

    private func context(_ text: [UInt8], _ value: [UInt8]) -> String {
        guard let range = occurrences(text, value).first else { return String(decoding: value, as: UTF8.self) }
        var lower = max(0, range.lowerBound - 50)
        while lower > 0 && text[lower] & 0xC0 == 0x80 { lower -= 1 }
        var upper = min(text.count, range.upperBound + 30)
        while upper < text.count && text[upper] & 0xC0 == 0x80 { upper += 1 }
        let snippet = String(decoding: text[lower..<upper], as: UTF8.self)
        return snippet.replacingOccurrences(of: "\n", with: "⏎")
    }
}
