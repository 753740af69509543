import Foundation
import SluiceText
import Testing

/// The shared benchmark corpus beside the repository (`../shared/bench`), when present.
let benchDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/bench")

func zstdLines(_ url: URL) throws -> [Data] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/zstd")
    process.arguments = ["-dc", url.path]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast().map { Data($0) }
}

@Suite("EnvelopeDecoder on the benchmark corpus")
struct BenchCorpusDecodeTests {
    @Test(.enabled(if: FileManager.default.fileExists(atPath: benchDirectory.appendingPathComponent("corpus.jsonl.zst").path)))
    func rejectsEveryBadLineWithAReasonAndNoGoodLine() throws {
        let corpus = try zstdLines(benchDirectory.appendingPathComponent("corpus.jsonl.zst"))
        let truth = try zstdLines(benchDirectory.appendingPathComponent("truth.jsonl.zst"))
        #expect(corpus.count == truth.count)
        let decoder = EnvelopeDecoder()
        var missedBad: [Int] = []
        var rejectedGood: [(Int, String)] = []
        for (index, line) in corpus.enumerated() {
            let result = line.withUnsafeBytes { decoder.decode($0.bindMemory(to: UInt8.self)) }
            let isBad = truth[index].range(of: Data(#""bad_input": true"#.utf8)) != nil
            switch (result, isBad) {
            case (.success, true): missedBad.append(index + 1)
            case (.failure(let failure), false): rejectedGood.append((index + 1, failure.description))
            default: break
            }
        }
        #expect(missedBad.isEmpty, "bad lines accepted: \(missedBad.prefix(10))")
        #expect(rejectedGood.isEmpty, "good lines rejected: \(rejectedGood.prefix(10))")
    }
}
