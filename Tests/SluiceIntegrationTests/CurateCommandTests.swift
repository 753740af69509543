import Foundation
import Testing

@Suite("sluice curate and sluice shards", .timeLimit(.minutes(3)))
struct CurateCommandTests {
    private func withDirectory(_ body: (URL) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-curate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await body(directory)
    }

    /// Distinct English documents, a duplicate, a junk line, a bad line, PII.
    private func corpus(_ count: Int) -> String {
        var lines: [String] = []
        let words = ["river", "garden", "library", "station", "harbour", "mountain", "village", "market", "bridge", "forest"]
        for i in 0..<count {
            let topic = words[i % words.count] + " \(i)"
            let body = (0..<40).map { "\(words[($0 * 7 + i) % words.count])\(($0 * 31 + i * 17) % 997)" }.joined(separator: " ")
            let text = "The \(topic) is where the people of the town meet, and they have many stories to tell about it. \(body). Write to me at person\(i)@example.org with questions."
            lines.append("{\"id\":\"doc-\(i)\",\"source\":\"web\",\"text\":\"\(text)\"}")
        }
        lines.append(lines[0].replacingOccurrences(of: "doc-0", with: "copy-0"))
        lines.append("{\"id\":\"junk\",\"text\":\"ok thanks\"}")
        lines.append("{not json")
        return lines.joined(separator: "\n") + "\n"
    }

    @Test func curatesIntoVerifiableShardsAndRefusesToOverwrite() async throws {
        try await withDirectory { directory in
            let input = directory.appendingPathComponent("small.jsonl")
            try Data(corpus(50).utf8).write(to: input)
            let output = directory.appendingPathComponent("out").path
            let run = try await runProcess(sluiceExecutable.path, ["curate", "--input", input.path, "--output", output, "--quiet"])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.contains("\"lines\":53"))
            #expect(run.stdout.contains("\"kept\":50"))
            #expect(run.stdout.contains("\"duplicate\":1"))
            #expect(run.stdout.contains("\"invalid_json\":1"))
            let rejected = try String(contentsOfFile: output + "/rejected.jsonl", encoding: .utf8)
            #expect(rejected.split(separator: "\n").count == 3)
            #expect(rejected.contains("\"line\":51,\"stage\":\"dedup\",\"reason\":\"duplicate\",\"duplicate_of\":\"doc-0\""))
            #expect(!rejected.contains("example.org"))
            let verify = try await runProcess(sluiceExecutable.path, ["shards", "verify", output])
            #expect(verify.status == 0 && verify.stdout == "ok\n", "\(verify.stderr)")
            let cat = try await runProcess(sluiceExecutable.path, ["shards", "cat", output, "0000000007"])
            #expect(cat.stdout.contains("The village 6 is where") && cat.stdout.contains("[EMAIL]"), "\(cat.stdout)")
            let wids = try String(contentsOfFile: output + "/wids.json", encoding: .utf8)
            #expect(wids.contains("\"nsamples\":50"))
            let again = try await runProcess(sluiceExecutable.path, ["curate", "--input", input.path, "--output", output, "--quiet"])
            #expect(again.status != 0 && again.stderr.contains("--overwrite"))
            let overwritten = try await runProcess(
                sluiceExecutable.path, ["curate", "--input", input.path, "--output", output, "--quiet", "--overwrite"])
            #expect(overwritten.status == 0)
            // Same input, same shard bytes.
            let first = try await runProcess("/bin/sh", ["-c", "sha256sum '\(output)'/*.tar.zst"])
            #expect(first.stdout == (try await runProcess("/bin/sh", ["-c", "sha256sum '\(output)'/*.tar.zst"])).stdout)
        }
    }

    @Test func readsZstdInputAndRefusesATruncatedStream() async throws {
        try await withDirectory { directory in
            let input = directory.appendingPathComponent("in.jsonl")
            try Data(corpus(300).utf8).write(to: input)
            let compressed = try await runProcess("/usr/bin/zstd", ["-q", "-f", input.path, "-o", input.path + ".zst"])
            #expect(compressed.status == 0)
            let good = try await runProcess(
                sluiceExecutable.path, ["curate", "--input", input.path + ".zst", "--output", directory.appendingPathComponent("a").path, "--quiet"])
            #expect(good.status == 0 && good.stdout.contains("\"lines\":303"), "\(good.stderr)")
            let whole = try Data(contentsOf: URL(fileURLWithPath: input.path + ".zst"))
            try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: input.path + ".cut.zst"))
            let cut = try await runProcess(
                sluiceExecutable.path, ["curate", "--input", input.path + ".cut.zst", "--output", directory.appendingPathComponent("b").path, "--quiet"])
            #expect(cut.status != 0 && cut.stderr.contains("zstd stream ends in the middle"), "\(cut.stderr)")
        }
    }

    @Test func aKilledRunLeavesNoHalfShardVisible() async throws {
        try await withDirectory { directory in
            let input = directory.appendingPathComponent("big.jsonl")
            try Data(corpus(20_000).utf8).write(to: input)
            let config = directory.appendingPathComponent("curate.yaml")
            try Data("shards: { max_samples: 500, format: tar }\n".utf8).write(to: config)
            let output = directory.appendingPathComponent("out").path
            let process = Process()
            process.executableURL = sluiceExecutable
            process.arguments = ["curate", "--input", input.path, "--output", output, "--config", config.path, "--quiet"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Wait until some shards are sealed, then kill without warning.
            for _ in 0..<200 {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
                if names.filter({ $0.hasSuffix(".tar") }).count >= 3 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let verify = try await runProcess(sluiceExecutable.path, ["shards", "verify", output])
            #expect(verify.status == 0, "\(verify.stderr)")
            let listed = try await runProcess(sluiceExecutable.path, ["shards", "ls", output])
            for line in listed.stdout.split(separator: "\n") {
                #expect(line.contains("500 samples"), "a listed shard must be complete: \(line)")
            }
        }
    }
}

/// The Python interpreter of the test venv that has `webdataset` (set by `make test`); nil when it is missing or
/// cannot import webdataset (no package index when the venv was made).
let testPython: String? = {
    guard let python = ProcessInfo.processInfo.environment["SLUICE_TEST_PYTHON"],
        FileManager.default.isExecutableFile(atPath: python)
    else { return nil }
    let check = Process()
    check.executableURL = URL(fileURLWithPath: python)
    check.arguments = ["-c", "import webdataset"]
    check.standardOutput = FileHandle.nullDevice
    check.standardError = FileHandle.nullDevice
    guard (try? check.run()) != nil else { return nil }
    check.waitUntilExit()
    return check.terminationStatus == 0 ? python : nil
}()

@Suite("Python WebDataset reads Sluice datasets", .timeLimit(.minutes(3)))
struct WebDatasetInteropTests {
    @Test(.enabled(if: testPython != nil, "needs SLUICE_TEST_PYTHON with webdataset (make test provides it)"), arguments: ["tar", "tar.zst"])
    func webDatasetSeesExactlyTheIndexedSamples(format: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-wds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var lines: [String] = []
        for i in 0..<300 {
            let words = (0..<30).map { "word\(($0 * 13 + i * 7) % 509)" }.joined(separator: " ")
            lines.append("{\"id\":\"d\(i)\",\"text\":\"Document \(i) says that the \(words) and that is all.\"}")
        }
        let input = directory.appendingPathComponent("in.jsonl")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: input)
        let config = directory.appendingPathComponent("c.yaml")
        try Data("shards: { format: \(format), max_samples: 120 }\n".utf8).write(to: config)
        let output = directory.appendingPathComponent("out").path
        let curate = try await runProcess(sluiceExecutable.path, ["curate", "--input", input.path, "--output", output, "--config", config.path, "--quiet"])
        #expect(curate.status == 0, "\(curate.stderr)")
        let kept = try #require(curate.stdout.firstMatch(of: /"kept":(\d+)/).map { Int($0.output.1)! })
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Benchmarks/wds_read.py").path
        let read = try await runProcess(try #require(testPython), [script, output, "--keys"])
        #expect(read.status == 0, "\(read.stderr)")
        #expect(read.stdout.contains("\"samples\": \(kept),"), "\(read.stdout)")
        // The same keys GNU tar lists.
        let listing = format == "tar" ? "cat '\(output)'/*.tar | tar -ti" : "for f in '\(output)'/*.tar.zst; do zstd -dc \"$f\"; done | tar -ti"
        let tar = try await runProcess("/bin/sh", ["-c", listing + " | grep '\\.txt$' | sed 's/\\.txt$//' | sort"])
        let tarKeys = tar.stdout.split(separator: "\n").map(String.init)
        #expect(tarKeys.count == kept)
        for key in tarKeys.prefix(5) { #expect(read.stdout.contains("\"\(key)\"")) }
    }
}
