import ArgumentParser
import Foundation
import SluicePipeline
import SluiceText

extension EvalCommand {
    struct Dedup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dedup",
            abstract: "Score exact and near-duplicate detection against a ground-truth file; print recall, false drops and speed.",
            discussion: """
                Every line of --corpus goes through decode, clean, desensitize and dedup with the default settings \
                (or the MinHash options below), in file order, on one core. --truth has one JSON object per corpus \
                line with `dup_of`, `dup_kind` (exact or near), `jaccard` and `hard_negative_of`.

                Reported: recall on exact and near duplicates (dropped by the dedup stage), recall per Jaccard band, \
                hard negatives and distinct originals wrongly dropped, the exact Jaccard of missed pairs under \
                Sluice's own shingles, throughput of shingling + signatures and of the whole chain, and the index \
                memory per document.
                """)

        @Option(name: .long, help: ArgumentHelp("The corpus: .jsonl or .jsonl.zst.", valueName: "file"))
        var corpus: String

        @Option(name: .long, help: ArgumentHelp("The ground truth: .jsonl or .jsonl.zst.", valueName: "file"))
        var truth: String

        @Option(name: .long, help: "Signature length.") var hashes = MinHashConfiguration().hashCount
        @Option(name: .long, help: "LSH bands.") var bands = MinHashConfiguration().bands
        @Option(name: .long, help: "LSH rows per band.") var rows = MinHashConfiguration().rows
        @Option(name: .long, help: "Minimum estimated Jaccard similarity of a near duplicate.")
        var threshold = MinHashConfiguration().threshold
        @Option(name: .long, help: "one-hashing or permutations.") var scheme = MinHashConfiguration().scheme.rawValue

        @Option(name: .long, help: "The clean stage's repeated-line threshold (0: no cross-document boilerplate evidence).")
        var repeatedLineThreshold = CleanerConfiguration().repeatedLineThreshold

        @Option(name: .long, help: "Print up to this many missed duplicates and false drops.")
        var showMisses = 0

        func run() async throws {
            var settings = MinHashConfiguration()
            settings.hashCount = hashes
            settings.bands = bands
            settings.rows = rows
            settings.threshold = threshold
            guard let parsed = MinHashScheme(rawValue: scheme) else {
                throw CommandError("--scheme must be one-hashing or permutations, not \(scheme)")
            }
            settings.scheme = parsed
            do { try settings.validate() } catch { throw CommandError("\(error)") }

            let data = try CorpusFile.read(corpus)
            let labels = try TruthFile.parse(try CorpusFile.read(truth))
            let decoder = EnvelopeDecoder()
            var cleaning = CleanerConfiguration()
            cleaning.repeatedLineThreshold = repeatedLineThreshold
            var cleaner = Cleaner(cleaning)
            var desensitizer = try Desensitizer()
            var dedup = try Deduplicator(settings)
            var fingerprinter = try Deduplicator(settings)

            struct Outcome {
                var dropped = false
                var exact = false
                var duplicateOf: String?
                var similarity = 0.0
            }
            var outcomes = [Outcome?](repeating: nil, count: labels.count)
            var texts: [String: [UInt8]] = [:]  // cleaned texts of documents that others are labelled duplicates of
            let targets = Set(labels.compactMap(\.duplicateOf) + labels.compactMap(\.hardNegativeOf))
            let clock = ContinuousClock()
            var textBytes = 0
            var dedupTime = Duration.zero
            var fingerprintTime = Duration.zero
            var shingledBytes = 0
            var documents = 0
            let started = clock.now
            CorpusFile.forEachLine(data) { line, number in
                guard case .success(var document) = decoder.decode(line) else { return }
                documents += 1
                textBytes += document.text.count
                guard cleaner.process(&document) == .keep, desensitizer.process(&document) == .keep else { return }
                let t0 = clock.now
                let verdict = dedup.process(&document)
                // A shard seal every 10,000 documents makes the pending entries durable, as the pipeline does.
                if dedup.index.pendingCount >= 10_000 { dedup.index.commitPending() }
                dedupTime += clock.now - t0
                if number <= labels.count {
                    let t1 = clock.now
                    let basis = document.dedupText ?? document.text
                    shingledBytes += basis.count
                    _ = fingerprinter.fingerprint(basis)
                    fingerprintTime += clock.now - t1
                    if let id = labels[number - 1].id, targets.contains(id) { texts[id] = basis }
                    if labels[number - 1].duplicateOf != nil || labels[number - 1].hardNegativeOf != nil {
                        texts[labels[number - 1].id ?? ""] = basis
                    }
                    outcomes[number - 1] = Outcome(
                        dropped: !verdict.isKeep, exact: verdict == .drop(reason: "duplicate"),
                        duplicateOf: document.duplicateOf, similarity: document.signals["dedup.similarity"] ?? 0)
                }
            }
            let seconds = (clock.now - started).inSeconds
            Terminal.out(
                String(
                    format: "decode+clean+desensitize+dedup, one core: %.1f MB/s of text, %.0f docs/s (%d docs)",
                    Double(textBytes) / seconds / 1e6, Double(documents) / seconds, documents))
            Terminal.out(
                String(
                    format: "  dedup stage %.2f s (%.1f MB/s of input text); shingling + signature alone %.2f s (%.1f MB/s of the %.1f MB of cleaned text it reads)",
                    dedupTime.inSeconds, Double(textBytes) / dedupTime.inSeconds / 1e6,
                    fingerprintTime.inSeconds, Double(shingledBytes) / fingerprintTime.inSeconds / 1e6,
                    Double(shingledBytes) / 1e6))
            Terminal.out(
                "  index: \(dedup.index.count) documents, \(dedup.index.memoryBytes / max(1, dedup.index.count)) bytes per document in memory")
            report(labels: labels, outcomes: outcomes.map { $0.map { ($0.dropped, $0.exact, $0.duplicateOf, $0.similarity) } },
                texts: texts, settings: settings)
        }

        private func report(
            labels: [TruthLabel], outcomes: [(dropped: Bool, exact: Bool, duplicateOf: String?, similarity: Double)?],
            texts: [String: [UInt8]], settings: MinHashConfiguration
        ) {
            var exactTotal = 0, exactFound = 0, nearTotal = 0, nearFound = 0
            var hardTotal = 0, hardDropped = 0, originalTotal = 0, originalDropped = 0, grayDropped = 0
            var bands: [Int: (total: Int, found: Int)] = [:]
            var missedJaccard: [Double] = []
            var misses = showMisses
            var shingler = Shingler(size: settings.shingleSize)
            func ownJaccard(_ a: String?, _ b: String?) -> Double? {
                guard let a, let b, let ta = texts[a], let tb = texts[b] else { return nil }
                var sa: [UInt64] = [], sb: [UInt64] = []
                _ = shingler.shingles(ta, into: &sa)
                _ = shingler.shingles(tb, into: &sb)
                let setA = Set(sa), setB = Set(sb)
                return Double(setA.intersection(setB).count) / Double(max(1, setA.union(setB).count))
            }
            for (index, label) in labels.enumerated() {
                guard let outcome = outcomes[index] else { continue }
                switch label.duplicateKind {
                case "exact":
                    exactTotal += 1
                    if outcome.dropped {
                        exactFound += 1
                    } else if misses > 0 {
                        misses -= 1
                        Terminal.out("missed exact duplicate line \(index + 1) of \(label.duplicateOf ?? "?")")
                    }
                case "near":
                    nearTotal += 1
                    let band = Int(((label.jaccard ?? 0) * 10).rounded(.down))
                    var entry = bands[band, default: (0, 0)]
                    entry.total += 1
                    if outcome.dropped {
                        nearFound += 1
                        entry.found += 1
                    } else if let own = ownJaccard(label.id, label.duplicateOf) {
                        missedJaccard.append(own)
                        if misses > 0 {
                            misses -= 1
                            Terminal.out(String(format: "missed near duplicate line %d: truth J %.3f, own J %.3f", index + 1, label.jaccard ?? 0, own))
                        }
                    }
                    bands[band] = entry
                default:
                    if label.badInput { continue }
                    if label.hardNegativeOf != nil {
                        hardTotal += 1
                        if outcome.dropped {
                            hardDropped += 1
                            if misses > 0 {
                                misses -= 1
                                let own = ownJaccard(label.id, outcome.duplicateOf) ?? -1
                                Terminal.out(String(format: "hard negative dropped line %d as a duplicate of %@ (its template: %@): estimated %.3f, own J %.3f", index + 1, outcome.duplicateOf ?? "?", label.hardNegativeOf ?? "?", outcome.similarity, own))
                            }
                        }
                    } else {
                        originalTotal += 1
                        if outcome.dropped {
                            if label.gray.contains(outcome.duplicateOf ?? "") { grayDropped += 1 } else { originalDropped += 1 }
                            if misses > 0 {
                                misses -= 1
                                let own = ownJaccard(label.id, outcome.duplicateOf) ?? -1
                                Terminal.out(String(format: "original dropped line %d as a duplicate of %@: estimated %.3f, own J %.3f", index + 1, outcome.duplicateOf ?? "?", outcome.similarity, own))
                            }
                        }
                    }
                }
            }
            func percent(_ part: Int, _ whole: Int) -> String {
                whole == 0 ? "-" : String(format: "%.2f%%", Double(part) * 100 / Double(whole))
            }
            Terminal.out("\nexact duplicates: \(exactFound) of \(exactTotal) dropped (\(percent(exactFound, exactTotal)))")
            Terminal.out("near duplicates: \(nearFound) of \(nearTotal) dropped (\(percent(nearFound, nearTotal)))")
            for (band, entry) in bands.sorted(by: { $0.key < $1.key }) {
                Terminal.out(String(format: "  truth Jaccard %.1f-%.1f: %d of %d (%@)", Double(band) / 10, Double(band + 1) / 10, entry.found, entry.total, percent(entry.found, entry.total)))
            }
            Terminal.out("hard negatives wrongly dropped: \(hardDropped) of \(hardTotal) (\(percent(hardDropped, hardTotal)))")
            Terminal.out("distinct originals wrongly dropped: \(originalDropped) of \(originalTotal) (\(percent(originalDropped, originalTotal))); \(grayDropped) more were gray pairs (0.5 ≤ J < 0.8, unlabelled)")
            // Estimation error on the labelled near-duplicate pairs: estimated vs exact Jaccard of Sluice's shingles.
            var hasher = MinHasher(settings)
            var errors: [Double] = []
            var a: [UInt32] = [], b: [UInt32] = []
            for label in labels where label.duplicateKind == "near" {
                guard let x = label.id.flatMap({ texts[$0] }), let y = label.duplicateOf.flatMap({ texts[$0] }) else { continue }
                var sa: [UInt64] = [], sb: [UInt64] = []
                _ = shingler.shingles(x, into: &sa)
                _ = shingler.shingles(y, into: &sb)
                let exact = Double(Set(sa).intersection(Set(sb)).count) / Double(max(1, Set(sa).union(Set(sb)).count))
                hasher.signature(of: sa, into: &a)
                hasher.signature(of: sb, into: &b)
                let estimate = a.withUnsafeBufferPointer { p in b.withUnsafeBufferPointer { MinHasher.similarity(p, $0) } }
                errors.append(estimate - exact)
            }
            if !errors.isEmpty {
                let mean = errors.reduce(0) { $0 + abs($1) } / Double(errors.count)
                let rmse = (errors.reduce(0) { $0 + $1 * $1 } / Double(errors.count)).squareRoot()
                let p95 = errors.map(abs).sorted()[errors.count * 95 / 100]
                Terminal.out(String(format: "estimated vs exact Jaccard on %d near-duplicate pairs: mean |error| %.4f, RMSE %.4f, p95 %.4f", errors.count, mean, rmse, p95))
            }
            if !missedJaccard.isEmpty {
                let sorted = missedJaccard.sorted()
                Terminal.out(String(format: "missed near duplicates, Jaccard under Sluice's shingles: median %.3f, p90 %.3f, max %.3f", sorted[sorted.count / 2], sorted[sorted.count * 9 / 10], sorted.last!))
            }
        }
    }
}
