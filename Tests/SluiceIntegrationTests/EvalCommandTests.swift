import Foundation
import Testing

@Suite("sluice eval decode")
struct EvalCommandTests {
    @Test func countsRejectionsPerReasonOnPlainAndCompressedCorpora() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let corpus = directory.appendingPathComponent("c.jsonl")
        let lines = [
            #"{"id":"a","text":"good 文本"}"#, #"{"id":"b"}"#, #"{"text":""}"#, #"{"text":"x",}"#, #"{"text":"ok","ts":"2024-02-30T00:00:00Z"}"#,
        ]
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: corpus)
        let plain = try await runProcess(sluiceExecutable.path, ["eval", "decode", "--corpus", corpus.path])
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(plain.stdout.contains("lines 5, accepted 1, rejected 4"))
        for reason in ["missing_text\t1", "empty_text\t1", "invalid_json\t1", "invalid_timestamp\t1"] {
            #expect(plain.stdout.contains(reason), "\(reason)")
        }
        let compress = try await runProcess("/usr/bin/zstd", ["-q", corpus.path])
        #expect(compress.status == 0)
        let compressed = try await runProcess(sluiceExecutable.path, ["eval", "decode", "--corpus", corpus.path + ".zst"])
        #expect(compressed.stdout.contains("lines 5, accepted 1, rejected 4"))
        let missing = try await runProcess(sluiceExecutable.path, ["eval", "decode", "--corpus", "/nonexistent.jsonl"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("no such file"))
    }
}
