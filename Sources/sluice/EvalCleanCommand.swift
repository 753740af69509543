import ArgumentParser
import Foundation
import SluicePipeline
import SluiceText

extension EvalCommand {
    struct Clean: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "clean",
            abstract: "Check the clean stage against a corpus' noise labels; print residue per noise kind and speed.",
            discussion: """
                Every line of --corpus is decoded and cleaned with the default settings. With --truth (one JSON \
                object per corpus line with a `noise` list: html, boilerplate, control_chars, ansi, zero_width, bom, \
                whitespace, tabs, crlf_line_ending, fullwidth), prints for each kind how many labelled documents \
                still show it after cleaning, and how many documents were dropped and why. Speed is decode + clean \
                on one core, timed over the whole corpus before scoring. Both files may be plain or .zst.
                """)

        @Option(name: .long, help: ArgumentHelp("The corpus: .jsonl or .jsonl.zst.", valueName: "file"))
        var corpus: String

        @Option(name: .long, help: ArgumentHelp("Noise labels: .jsonl or .jsonl.zst.", valueName: "file"))
        var truth: String?

        func run() async throws {
            let data = try CorpusFile.read(corpus)
            let decoder = EnvelopeDecoder()
            var cleaner = Cleaner()
            var documents = 0
            var textBytes = 0
            var outputBytes = 0
            var drops: [String: Int] = [:]
            var signals: [String: Int] = [:]
            let clock = ContinuousClock()
            let started = clock.now
            CorpusFile.forEachLine(data) { line, _ in
                guard case .success(var document) = decoder.decode(line) else { return }
                documents += 1
                textBytes += document.text.count
                if case .drop(let reason) = cleaner.process(&document) { drops[reason, default: 0] += 1 }
                outputBytes += document.text.count
                for (name, value) in document.signals.values where value > 0 { signals[name, default: 0] += 1 }
            }
            let seconds = (clock.now - started).inSeconds
            Terminal.out(
                String(
                    format: "decode+clean, one core: %.1f MB/s of text, %.0f docs/s; %d docs, %.1f MB in, %.1f MB out",
                    Double(textBytes) / seconds / 1e6, Double(documents) / seconds, documents, Double(textBytes) / 1e6,
                    Double(outputBytes) / 1e6))
            for (name, count) in signals.sorted(by: { $0.key < $1.key }) { Terminal.out("  documents with \(name): \(count)") }
            for (reason, count) in drops.sorted(by: { $0.key < $1.key }) { Terminal.out("  dropped \(reason): \(count)") }
            guard let truth else { return }
            try score(data, labels: TruthFile.parse(try CorpusFile.read(truth)))
        }

        /// Residue checks per noise kind: what a reader would still see after cleaning.
        private static let residue: [String: @Sendable (String) -> Bool] = [
            "html": { text in ["<p>", "<div", "</a>", "<br", "<span", "&amp;", "&nbsp;", "&lt;"].contains { text.contains($0) } },
            "control_chars": { text in text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" && $0 != "\t" || $0.value == 0x7F } },
            "ansi": { $0.contains("\u{1B}") || $0.contains("[0m") || $0.contains("[31m") },
            "zero_width": { text in text.unicodeScalars.contains { [0x200B, 0x200C, 0x2060, 0xFEFF, 0xAD].contains($0.value) } },
            "bom": { $0.unicodeScalars.contains("\u{FEFF}") },
            "crlf_line_ending": { $0.utf8.contains(0x0D) },
            "whitespace": { text in text.contains("  \n") || text.contains(" \n") || text.contains("\n\n\n") || text.hasSuffix(" ") },
            "boilerplate": { text in
                ["Skip to content", "Share this:", "Cookies help us", "跳到主要内容", "使用 Cookie", "分享到", "Related posts"].contains {
                    text.contains($0)
                }
            },
        ]

        private static func visible(_ text: String) -> String {
            String(
                String.UnicodeScalarView(
                    text.unicodeScalars.filter {
                        !($0.properties.isWhitespace || $0.value < 0x20 || (0x7F...0x9F).contains($0.value)
                            || [0xAD, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF].contains($0.value))
                    }))
        }

        private func score(_ data: Data, labels: [TruthLabel]) throws {
            let decoder = EnvelopeDecoder()
            var cleaner = Cleaner()
            var labelled: [String: Int] = [:]
            var remaining: [String: Int] = [:]
            var chineseChanged = 0
            var chineseClean = 0
            var chineseLines = 0
            CorpusFile.forEachLine(data) { line, number in
                guard number <= labels.count, case .success(var document) = decoder.decode(line) else { return }
                let label = labels[number - 1]
                let input = document.textString
                _ = cleaner.process(&document)
                let output = document.textString
                for kind in label.noise {
                    labelled[kind, default: 0] += 1
                    if let check = Self.residue[kind], check(output) { remaining[kind, default: 0] += 1 }
                }
                // Chinese documents without noise keep every visible character, unless a whole line went as
                // boilerplate (counted apart).
                if label.language == "zh" && label.noise.isEmpty {
                    chineseClean += 1
                    if Self.visible(input) != Self.visible(output) {
                        if document.signals["clean.boilerplate_lines"] != nil { chineseLines += 1 } else { chineseChanged += 1 }
                    }
                }
            }
            Terminal.out("\nnoise kind            labelled docs   still visible after cleaning")
            for (kind, count) in labelled.sorted(by: { $0.key < $1.key }) {
                let left = Self.residue[kind] == nil ? "(no check)" : "\(remaining[kind, default: 0])"
                Terminal.out(
                    kind.padding(toLength: 22, withPad: " ", startingAt: 0)
                        + "\(count)".padding(toLength: 16, withPad: " ", startingAt: 0) + left)
            }
            Terminal.out(
                "\nChinese documents without noise labels: \(chineseClean); with boilerplate lines removed: "
                    + "\(chineseLines); otherwise changed (beyond whitespace and invisible characters): \(chineseChanged)")
        }
    }
}
