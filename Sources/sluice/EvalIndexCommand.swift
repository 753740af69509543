import ArgumentParser
import Foundation
import SluicePipeline
import SluiceShards
import SluiceText

extension EvalCommand {
    struct Index: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "index",
            abstract: "Fill a dedup index with generated documents; print memory and disk per document.",
            discussion: """
                Generates --documents distinct documents (200 random shingles each), adds them to a dedup index \
                with the default MinHash settings, commits them to a SQLite store every 10,000 documents (as shard \
                seals would), and reports the in-memory index bytes, the process's resident memory and the \
                database size per document, and the time to load the index back.
                """)

        @Option(name: .long, help: "How many documents.") var documents = 1_000_000
        @Option(name: .long, help: ArgumentHelp("The SQLite file to create (default: a temporary one, removed after).", valueName: "file"))
        var database: String?

        func run() async throws {
            let path = database ?? FileManager.default.temporaryDirectory.appendingPathComponent("sluice-index-\(UUID().uuidString).sqlite").path
            defer { if database == nil { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } } }
            let settings = MinHashConfiguration()
            let shardIndex = try ShardIndex(path: path)
            let store = try DedupStore(writer: shardIndex.writer, configuration: settings)
            var index = try store.load()
            var hasher = MinHasher(settings)
            var state: UInt64 = 1
            var shingles = [UInt64](repeating: 0, count: 200)
            var signature: [UInt32] = []
            let clock = ContinuousClock()
            let started = clock.now
            for number in 0..<documents {
                for i in 0..<shingles.count {
                    state &+= 0x9E37_79B9_7F4A_7C15
                    shingles[i] = state &* 0xBF58_476D_1CE4_E5B9
                }
                hasher.signature(of: shingles, into: &signature)
                _ = index.lookupOrAdd(id: "doc-\(number)", rawHash: state, exactHash: state ^ 1, signature: signature)
                if index.pendingCount >= 10_000 { try store.commit(&index) }
            }
            try store.commit(&index)
            let seconds = (clock.now - started).inSeconds
            let memory = index.memoryBytes
            let disk = ["", "-wal"].reduce(0) { total, suffix in
                total + ((try? FileManager.default.attributesOfItem(atPath: path + suffix)[.size] as? Int) ?? 0)
            }
            let loadStarted = clock.now
            let loaded = try store.load()
            let loadSeconds = (clock.now - loadStarted).inSeconds
            Terminal.out("\(index.count) documents added in \(String(format: "%.1f", seconds)) s")
            Terminal.out("index in memory: \(memory / 1_048_576) MiB, \(memory / max(1, index.count)) bytes per document")
            Terminal.out("SQLite store: \(disk / 1_048_576) MiB, \(disk / max(1, index.count)) bytes per document")
            Terminal.out("loaded back: \(loaded.count) documents in \(String(format: "%.1f", loadSeconds)) s")
            Terminal.out("peak resident memory of this process: \(peakResidentMiB()) MiB")
        }

        private func peakResidentMiB() -> Int {
            guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
            else { return -1 }
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
        }
    }
}
