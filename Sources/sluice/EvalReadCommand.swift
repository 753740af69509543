import ArgumentParser
import Foundation
import SluicePipeline
import SluiceShards

extension EvalCommand {
    struct Read: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "read",
            abstract: "Measure reading a dataset: sequential samples/s and MB/s, and random access latency by key.",
            discussion: "Sequential: every shard in index order, every sample decoded. Random: --random keys drawn with a fixed seed, each looked up in the index and read from its shard (one frame for .tar.zst).")

        @Argument(help: ArgumentHelp("The dataset directory.", valueName: "dir")) var directory: String
        @Option(name: .long, help: "Random lookups to time.") var random = 2000

        func run() async throws {
            let dir = URL(fileURLWithPath: directory)
            let index = try catching({ try ShardIndex(path: dir.appendingPathComponent("index.sqlite").path) })
            let shards = try catching({ try index.shards() })
            let clock = ContinuousClock()
            var samples = 0
            var textBytes = 0
            var keys: [String] = []
            let started = clock.now
            for shard in shards {
                for sample in try catching({ try ShardReader.samples(of: dir.appendingPathComponent(shard.fileName)) }) {
                    samples += 1
                    textBytes += sample.text.count
                    if keys.count < 1_000_000 { keys.append(sample.key) }
                }
            }
            let seconds = (clock.now - started).inSeconds
            Terminal.out(String(format: "sequential: %d samples in %.2f s: %.0f samples/s, %.1f MB/s of text", samples, seconds, Double(samples) / seconds, Double(textBytes) / seconds / 1e6))
            guard !keys.isEmpty, random > 0 else { return }
            var state: UInt64 = 42
            var latencies: [Double] = []
            for _ in 0..<random {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let key = keys[Int(state >> 33) % keys.count]
                let t0 = clock.now
                guard let (shard, location) = try catching({ try index.location(ofKey: key) }) else { throw CommandError("key \(key) not in the index") }
                _ = try catching({ try ShardReader.sample(at: location, in: dir.appendingPathComponent(shard.fileName), format: shard.format) })
                latencies.append((clock.now - t0).inSeconds * 1e6)
            }
            latencies.sort()
            Terminal.out(String(format: "random access by key (%d lookups): p50 %.0f µs, p99 %.0f µs", random, latencies[latencies.count / 2], latencies[latencies.count * 99 / 100]))
        }
    }
}
