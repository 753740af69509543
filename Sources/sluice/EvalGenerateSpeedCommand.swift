import ArgumentParser
import Foundation
import SluiceTrain

extension EvalCommand {
    struct GenerateSpeed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate-speed",
            abstract: "Time KV-cached greedy decoding of the reference GPT; print one JSON line per batch size.",
            discussion: "Each sequence starts from a --prompt-byte prefix and decodes until the context is full. One BLAS thread.")

        @Option(help: "Transformer blocks.") var layers = 4
        @Option(help: "Model width.") var dim = 128
        @Option(help: "Attention heads (default: dim / 32).") var heads: Int?
        @Option(help: "Context length.") var context = 128
        @Option(help: "Prompt bytes per sequence.") var prompt = 16
        @Option(help: "Concurrent sequences (repeatable).") var batch: [Int] = [1, 8, 16, 32]
        @Option(help: "Repeats per batch size.") var repeats = 3
        @Flag(help: "Decode with int8 weights (weight-only quantization).") var int8 = false

        func run() async throws {
            var benchmark = GenerationBenchmark()
            benchmark.model = GPTConfiguration(contextLength: context, layers: layers, channels: dim, heads: heads ?? max(1, dim / 32))
            if let problem = benchmark.model.problem { throw ValidationError(problem) }
            guard prompt >= 1, prompt < context, repeats >= 1, batch.allSatisfy({ $0 >= 1 }) else {
                throw ValidationError("--prompt must be 1…context-1; --batch and --repeats at least 1")
            }
            benchmark.prompt = prompt
            benchmark.repeats = repeats
            benchmark.quantize = int8
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for size in batch {
                benchmark.batch = size
                print(String(decoding: try encoder.encode(benchmark.run()), as: UTF8.self))
            }
        }
    }
}
