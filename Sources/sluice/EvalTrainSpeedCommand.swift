import ArgumentParser
import Foundation
import SluiceTrain

extension EvalCommand {
    struct TrainSpeed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train-speed",
            abstract: "Time training steps of the reference GPT on synthetic bytes; print one JSON line.",
            discussion: """
                Reports tokens/s, the share of time inside cblas_sgemm, the GFLOP/s it achieved, and this machine's \
                sgemm peak (M=2048, K=N=512) on the same threads. Benchmarks/train.sh runs it beside PyTorch.
                """)

        @Option(help: "Transformer blocks.") var layers = 4
        @Option(help: "Model width.") var dim = 128
        @Option(help: "Attention heads (default: dim / 32).") var heads: Int?
        @Option(help: "Sequence length.") var context = 128
        @Option(help: "Sequences per step.") var batch = 16
        @Option(help: "Timed steps.") var steps = 20
        @Option(help: "Untimed steps first.") var warmup = 3
        @Option(help: "OpenBLAS threads.") var threads = 2
        @Flag(help: "Recompute each block's activations in backward (activation checkpointing).") var recompute = false

        func run() async throws {
            var benchmark = TrainingBenchmark()
            benchmark.model = GPTConfiguration(contextLength: context, layers: layers, channels: dim, heads: heads ?? max(1, dim / 32))
            if let problem = benchmark.model.problem { throw ValidationError(problem) }
            guard batch >= 1, steps >= 1, warmup >= 0, threads >= 1 else {
                throw ValidationError("--batch, --steps and --threads must be at least 1, --warmup at least 0")
            }
            benchmark.batch = batch
            benchmark.steps = steps
            benchmark.warmupSteps = warmup
            benchmark.threads = threads
            benchmark.recompute = recompute
            let result = benchmark.run()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        }
    }
}
