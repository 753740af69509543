import ArgumentParser
import Foundation
import SluiceText

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Measure the text stages on a JSON Lines corpus.", subcommands: [Decode.self, Clean.self, PII.self, Quality.self, Dedup.self, Index.self, Read.self, TrainSpeed.self, Perplexity.self, GenerateSpeed.self, HTTPBaseline.self])

    struct Decode: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode every line of a corpus; print counts per rejection reason and the throughput.",
            discussion: "Reads plain JSON Lines or a .zst file (through the zstd tool). The corpus is read into memory first; only decoding is timed.")

        @Option(name: .long, help: ArgumentHelp("A .jsonl or .jsonl.zst file.", valueName: "file"))
        var corpus: String

        @Option(name: .long, help: "Maximum record size in bytes.")
        var maximumBytes: Int = 1 << 20

        func run() async throws {
            let data = try CorpusFile.read(corpus)
            var decoder = EnvelopeDecoder()
            decoder.maximumBytes = maximumBytes
            var accepted = 0
            var textBytes = 0
            var reasons: [DecodeFailure.Reason: Int] = [:]
            let clock = ContinuousClock()
            let started = clock.now
            data.withUnsafeBytes { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                var start = 0
                while start < bytes.count {
                    let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                    switch decoder.decode(UnsafeBufferPointer(rebasing: bytes[start..<end])) {
                    case .success(let document):
                        accepted += 1
                        textBytes += document.text.count
                    case .failure(let failure):
                        reasons[failure.reason, default: 0] += 1
                    }
                    start = end + 1
                }
            }
            let elapsed = clock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let lines = accepted + reasons.values.reduce(0, +)
            Terminal.out("lines \(lines), accepted \(accepted), rejected \(lines - accepted)")
            for (reason, count) in reasons.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                Terminal.out("  \(reason.rawValue)\t\(count)")
            }
            Terminal.out(String(
                format: "%.3f s: %.1f MB/s of input, %.0f records/s (%.1f MB of decoded text)", seconds,
                Double(data.count) / seconds / 1e6, Double(lines) / seconds, Double(textBytes) / 1e6))
        }
    }
}

/// Reads a corpus file, decompressing `.zst` through the zstd tool.
enum CorpusFile {
    /// Calls `body` with each line (without its `\n`) and its 1-based number.
    static func forEachLine(_ data: Data, _ body: (UnsafeBufferPointer<UInt8>, Int) throws -> Void) rethrows {
        try data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var start = 0
            var number = 0
            while start < bytes.count {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                number += 1
                try body(UnsafeBufferPointer(rebasing: bytes[start..<end]), number)
                start = end + 1
            }
        }
    }

    static func read(_ path: String) throws -> Data {
        guard FileManager.default.fileExists(atPath: path) else { throw CommandError("no such file: \(path)") }
        guard path.hasSuffix(".zst") else { return try Data(contentsOf: URL(fileURLWithPath: path)) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["zstd", "-dc", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CommandError("zstd could not decompress \(path)") }
        return data
    }
}
