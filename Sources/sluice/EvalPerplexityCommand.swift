import ArgumentParser
import Foundation
import SluiceText
import SluiceTrain

extension EvalCommand {
    struct Perplexity: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ppl",
            abstract: "Report a model's perplexity per byte on a file; print one JSON line.",
            discussion: """
                MODEL is a model.safetensors file or a checkpoint directory. A .jsonl or .jsonl.zst input is read as \
                Sluice envelopes: the text of every decodable line, joined with the NUL separator the trainer packs \
                with (undecodable lines are counted and skipped). Any other file is scored as raw bytes. The text is \
                cut into windows of the model's context length; loss is the mean over every predicted byte.
                """)

        @Option(help: ArgumentHelp("A model.safetensors file or a checkpoint directory.", valueName: "path")) var model: String
        @Option(help: ArgumentHelp("Text to score: .jsonl, .jsonl.zst or any file of bytes.", valueName: "file")) var input: String
        @Option(help: "Score at most this many bytes (default: all).") var maxBytes: Int?
        @Option(help: "Threads.") var threads = 2

        func run() async throws {
            let gpt: GPT
            do { gpt = try GPT.load(URL(fileURLWithPath: model)) } catch { throw CommandError(error.reason) }
            guard FileManager.default.fileExists(atPath: input) else { throw CommandError("no such file: \(input)") }
            guard threads >= 1, threads <= 64 else { throw ValidationError("--threads must be 1…64") }
            gpt.threads = threads
            let (stream, skipped) = try ScoringText.read(input, maxBytes: maxBytes ?? Int.max)
            let t = gpt.configuration.contextLength
            let windows = ValidationSet.pack(stream, context: t)
            guard !windows.isEmpty else { throw CommandError("\(input) holds fewer than \(t + 1) bytes of text to score") }
            let start = Date()
            let loss = ValidationSet.loss(of: gpt, on: windows, context: t)
            let seconds = Date().timeIntervalSince(start)
            let bytes = windows.count * t
            let result: [String: Any] = [
                "model": model, "input": input, "bytes_scored": bytes, "windows": windows.count, "skipped_lines": skipped,
                "loss_nats_per_byte": Double(loss), "bits_per_byte": Double(loss) / log(2.0), "perplexity": exp(Double(loss)),
                "bytes_per_second": Double(bytes) / max(seconds, 1e-9),
            ]
            let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: json, as: UTF8.self))
        }
    }
}

/// The text a model is scored on: the texts of a `.jsonl[.zst]` corpus's decodable envelopes joined with the NUL
/// separator the trainer packs with, or any other file's bytes; at most `maxBytes`. Also counts undecodable lines.
enum ScoringText {
    static func read(_ input: String, maxBytes: Int) throws -> (bytes: [UInt8], skipped: Int) {
        var stream: [UInt8] = []
        var skipped = 0
        if input.hasSuffix(".jsonl") || input.hasSuffix(".jsonl.zst") {
            let decoder = EnvelopeDecoder()
            CorpusFile.forEachLine(try CorpusFile.read(input)) { line, _ in
                guard stream.count < maxBytes else { return }
                switch decoder.decode(line) {
                case .success(let document):
                    stream.append(contentsOf: document.text)
                    stream.append(0)
                case .failure:
                    skipped += 1
                }
            }
        } else {
            stream = [UInt8](try Data(contentsOf: URL(fileURLWithPath: input)).prefix(maxBytes))
        }
        if stream.count > maxBytes { stream.removeSubrange(maxBytes...) }
        return (stream, skipped)
    }
}
