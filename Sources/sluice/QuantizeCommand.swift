import ArgumentParser
import Foundation
import SluiceText
import SluiceTrain

struct QuantizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a model's weights to int8 (one scale per output row); print sizes and the perplexity change.",
        discussion: """
            Writes a safetensors file with int8 matrices and their scales; `sluice serve --model` and \
            `sluice eval ppl --model` read it. With --input, scores the same text with the float and the int8 model.
            """)

    @Option(help: ArgumentHelp("A model.safetensors file or a checkpoint directory.", valueName: "path")) var model: String
    @Option(help: ArgumentHelp("Where the int8 model goes.", valueName: "file")) var output: String
    @Option(help: ArgumentHelp("Text to compare perplexity on (.jsonl[.zst] or any file).", valueName: "file")) var input: String?
    @Option(help: "Score at most this many bytes.") var maxBytes = 1_000_000

    func run() async throws {
        let gpt: GPT
        do { gpt = try GPT.load(URL(fileURLWithPath: model)) } catch { throw CommandError(error.reason) }
        guard gpt.quantized == nil else { throw CommandError("\(model) is quantized already") }
        let quantized = QuantizedWeights(model: gpt)
        let url = URL(fileURLWithPath: output)
        do { try quantized.save(gpt, to: url) } catch { throw CommandError(error.reason) }
        let source = URL(fileURLWithPath: model).hasDirectoryPath || !model.hasSuffix(".safetensors")
            ? URL(fileURLWithPath: model).appendingPathComponent("model.safetensors") : URL(fileURLWithPath: model)
        var result: [String: Any] = [
            "model": model, "output": output,
            "bytes_float": ((try? FileManager.default.attributesOfItem(atPath: source.path))?[.size] as? Int) ?? 0,
            "bytes_int8": ((try? FileManager.default.attributesOfItem(atPath: output))?[.size] as? Int) ?? 0,
        ]
        if let input {
            let stream = try ScoringText.read(input, maxBytes: maxBytes).bytes
            let t = gpt.configuration.contextLength
            let windows = ValidationSet.pack(stream, context: t)
            guard !windows.isEmpty else { throw CommandError("\(input) holds too little text to score") }
            gpt.threads = 2
            let fp = ValidationSet.loss(of: gpt, on: windows, context: t)
            let int8 = try GPT.load(url)
            int8.threads = 2
            let q = ValidationSet.loss(of: int8, on: windows, context: t)
            result["perplexity_float"] = exp(Double(fp))
            result["perplexity_int8"] = exp(Double(q))
            result["perplexity_change"] = exp(Double(q)) / exp(Double(fp)) - 1
            result["bytes_scored"] = windows.count * t
        }
        print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
    }
}
