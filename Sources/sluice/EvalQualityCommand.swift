import ArgumentParser
import Foundation
import SluicePipeline
import SluiceText

extension EvalCommand {
    struct Quality: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "quality",
            abstract: "Score the quality stage against junk labels; print recall, false rejections per language, scores and speed.",
            discussion: """
                Every line of --corpus goes through decode, clean, desensitize, quality and dedup with the default \
                settings, on one core (the whole chain is timed). --truth has one JSON object per line with \
                `junk`, `junk_kind`, `lang` and `source`.

                Reported: recall of the junk flag (dropped by clean or quality) per junk kind; clean documents \
                rejected per language, for all and for those of 200 characters or more; precision of the drops; \
                how often each rule fails on clean and on junk documents (enforced or not); the score distribution \
                per source and language.
                """)

        @Option(name: .long, help: ArgumentHelp("The corpus: .jsonl or .jsonl.zst.", valueName: "file"))
        var corpus: String

        @Option(name: .long, help: ArgumentHelp("The ground truth: .jsonl or .jsonl.zst.", valueName: "file"))
        var truth: String

        @Option(name: .long, help: "Rule thresholds and drop policy: sluice (the defaults) or datatrove (its values, every rule enforced).")
        var preset = "sluice"

        @Option(name: .long, help: "Print up to this many clean documents of 200+ characters that were rejected.")
        var showMisses = 0

        @Option(name: .long, help: ArgumentHelp("Write each document's rule measurements to this JSON Lines file, for tuning thresholds.", valueName: "file"))
        var dumpMeasurements: String?

        /// The whole chain, timed, with nothing else in the loop.
        private func timeChain(_ data: Data) throws -> (seconds: Double, textBytes: Int, documents: Int, kept: Int) {
            let decoder = EnvelopeDecoder()
            var cleaner = Cleaner()
            var desensitizer = try Desensitizer()
            var quality = QualityFilter(try qualityConfiguration)
            var dedup = try Deduplicator()
            var textBytes = 0
            var documents = 0
            var kept = 0
            let clock = ContinuousClock()
            let started = clock.now
            CorpusFile.forEachLine(data) { line, _ in
                guard case .success(var document) = decoder.decode(line) else { return }
                documents += 1
                textBytes += document.text.count
                guard cleaner.process(&document) == .keep, desensitizer.process(&document) == .keep,
                    quality.process(&document) == .keep
                else { return }
                if dedup.process(&document) == .keep { kept += 1 }
                if dedup.index.pendingCount >= 10_000 { dedup.index.commitPending() }
            }
            return ((clock.now - started).inSeconds, textBytes, documents, kept)
        }

        private var qualityConfiguration: QualityConfiguration {
            get throws {
                switch preset {
                case "sluice": return QualityConfiguration()
                case "datatrove": return .datatrove
                default: throw CommandError("--preset must be sluice or datatrove, not \(preset)")
                }
            }
        }

        func run() async throws {
            _ = try qualityConfiguration
            let data = try CorpusFile.read(corpus)
            let chain = try timeChain(data)
            Terminal.out(
                String(
                    format: "decode+clean+desensitize+quality+dedup, one core: %.1f MB/s of text, %.0f docs/s (%.2f s); %d of %d documents kept",
                    Double(chain.textBytes) / chain.seconds / 1e6, Double(chain.documents) / chain.seconds, chain.seconds,
                    chain.kept, chain.documents))
            let labels = try TruthFile.parse(try CorpusFile.read(truth))
            let decoder = EnvelopeDecoder()
            var cleaner = Cleaner()
            var desensitizer = try Desensitizer()
            var quality = QualityFilter(try qualityConfiguration)
            var dedup = try Deduplicator()
            let clock = ContinuousClock()
            var qualityTime = Duration.zero
            var cleanTime = Duration.zero
            var dedupTime = Duration.zero
            var textBytes = 0
            var documents = 0
            var kept = 0

            var junkByKind: [String: (total: Int, dropped: Int)] = [:]
            var cleanByLanguage: [String: (total: Int, rejected: Int, long: Int, longRejected: Int)] = [:]
            var ruleFailures: [QualityRule: (clean: Int, junk: Int)] = [:]
            var dropReasons: [String: (clean: Int, junk: Int)] = [:]
            var scores: [String: [Double]] = [:]
            var misses = showMisses
            var dump = Data()
            let started = clock.now
            CorpusFile.forEachLine(data) { line, number in
                guard case .success(var document) = decoder.decode(line) else { return }
                documents += 1
                textBytes += document.text.count
                let label = number <= labels.count ? labels[number - 1] : TruthLabel()
                let characters = document.text.reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
                let c0 = clock.now
                var verdict = cleaner.process(&document)
                if verdict == .keep { verdict = desensitizer.process(&document) }
                cleanTime += clock.now - c0
                var failed: [QualityRule] = []
                if verdict == .keep && dumpMeasurements != nil && number <= labels.count {
                    var record: [String: Any] = quality.measurements(document.text)
                    record["line"] = number
                    record["junk"] = label.junk
                    record["kind"] = label.junkKind ?? ""
                    record["lang"] = label.language ?? ""
                    record["source"] = label.origin ?? ""
                    record["chars"] = characters
                    record["dup"] = label.duplicateOf != nil
                    if let json = try? JSONSerialization.data(withJSONObject: record) {
                        dump.append(json)
                        dump.append(0x0A)
                    }
                }
                if verdict == .keep {
                    let t0 = clock.now
                    verdict = quality.process(&document)
                    qualityTime += clock.now - t0
                    failed = QualityRule.allCases.filter { document.signals["quality.fail.\($0.rawValue)"] == 1 }
                    let key = "\(label.origin ?? "?")/\(document.language ?? "?")"
                    scores[key, default: []].append(document.signals["quality.score"] ?? 0)
                }
                let droppedByQuality = !verdict.isKeep
                if verdict == .keep {
                    let d0 = clock.now
                    verdict = dedup.process(&document)
                    if dedup.index.pendingCount >= 10_000 { dedup.index.commitPending() }
                    dedupTime += clock.now - d0
                    if verdict == .keep { kept += 1 }
                }
                guard number <= labels.count, !label.badInput else { return }
                for rule in failed {
                    var entry = ruleFailures[rule, default: (0, 0)]
                    if label.junk { entry.junk += 1 } else { entry.clean += 1 }
                    ruleFailures[rule] = entry
                }
                if droppedByQuality, case .drop(let reason) = verdict {
                    var entry = dropReasons[reason, default: (0, 0)]
                    if label.junk { entry.junk += 1 } else { entry.clean += 1 }
                    dropReasons[reason] = entry
                }
                if label.junk {
                    var entry = junkByKind[label.junkKind ?? "?", default: (0, 0)]
                    entry.total += 1
                    if droppedByQuality { entry.dropped += 1 }
                    junkByKind[label.junkKind ?? "?"] = entry
                } else if label.duplicateOf == nil {
                    let language = label.language ?? "?"
                    var entry = cleanByLanguage[language, default: (0, 0, 0, 0)]
                    entry.total += 1
                    if droppedByQuality { entry.rejected += 1 }
                    if characters >= 200 {
                        entry.long += 1
                        if droppedByQuality {
                            entry.longRejected += 1
                            if misses > 0, case .drop(let reason) = verdict {
                                misses -= 1
                                let text = document.textString.prefix(160).replacingOccurrences(of: "\n", with: "⏎")
                                Terminal.out("clean \(language) line \(number) dropped by \(reason): \(text)")
                            }
                        }
                    }
                    cleanByLanguage[language] = entry
                }
            }
            let seconds = (clock.now - started).inSeconds
            if let dumpMeasurements { try dump.write(to: URL(fileURLWithPath: dumpMeasurements)) }
            Terminal.out(
                String(
                    format: "  in the scoring pass: clean+desensitize %.2f s, quality %.2f s (%.1f MB/s of input text), dedup %.2f s, the rest (decode, scoring) %.2f s",
                    cleanTime.inSeconds, qualityTime.inSeconds,
                    Double(textBytes) / qualityTime.inSeconds / 1e6, dedupTime.inSeconds,
                    seconds - (cleanTime + qualityTime + dedupTime).inSeconds))
            func percent(_ a: Int, _ b: Int) -> String { b == 0 ? "-" : String(format: "%.1f%%", Double(a) * 100 / Double(b)) }
            let junkTotal = junkByKind.values.reduce(0) { $0 + $1.total }
            let junkDropped = junkByKind.values.reduce(0) { $0 + $1.dropped }
            Terminal.out("\njunk recall: \(junkDropped) of \(junkTotal) (\(percent(junkDropped, junkTotal)))")
            for (kind, entry) in junkByKind.sorted(by: { $0.key < $1.key }) {
                Terminal.out("  \(kind.padding(toLength: 18, withPad: " ", startingAt: 0)) \(entry.dropped) of \(entry.total) (\(percent(entry.dropped, entry.total)))")
            }
            let cleanDropped = dropReasons.values.reduce(0) { $0 + $1.clean }
            Terminal.out("precision of quality drops: \(junkDropped) junk of \(junkDropped + cleanDropped) dropped (\(percent(junkDropped, junkDropped + cleanDropped)))")
            Terminal.out("\nclean originals rejected    all                     200+ characters")
            for (language, entry) in cleanByLanguage.sorted(by: { $0.key < $1.key }) {
                Terminal.out("  \(language.padding(toLength: 8, withPad: " ", startingAt: 0)) \("\(entry.rejected) of \(entry.total) (\(percent(entry.rejected, entry.total)))".padding(toLength: 26, withPad: " ", startingAt: 0)) \(entry.longRejected) of \(entry.long) (\(percent(entry.longRejected, entry.long)))")
            }
            Terminal.out("\nrule                          fails on clean   on junk    enforced   drops clean  drops junk")
            let enforced = try qualityConfiguration.enforced
            for rule in QualityRule.allCases {
                let entry = ruleFailures[rule, default: (0, 0)]
                let drops = dropReasons[rule.rawValue, default: (0, 0)]
                Terminal.out("  \(rule.rawValue.padding(toLength: 28, withPad: " ", startingAt: 0)) \("\(entry.clean)".padding(toLength: 16, withPad: " ", startingAt: 0)) \("\(entry.junk)".padding(toLength: 10, withPad: " ", startingAt: 0)) \((enforced.contains(rule) ? "yes" : "no").padding(toLength: 10, withPad: " ", startingAt: 0)) \("\(drops.clean)".padding(toLength: 12, withPad: " ", startingAt: 0)) \(drops.junk)")
            }
            Terminal.out("\nscore per source/language: documents, mean, p10, median, p90")
            for (key, values) in scores.sorted(by: { $0.key < $1.key }) {
                let sorted = values.sorted()
                let mean = values.reduce(0, +) / Double(values.count)
                Terminal.out(String(format: "  %-14@ %6d  %.3f  %.3f  %.3f  %.3f", key, values.count, mean, sorted[sorted.count / 10], sorted[sorted.count / 2], sorted[sorted.count * 9 / 10]))
            }
        }
    }
}
