import Foundation
import Testing

/// `sluice demo` end to end, bounded: every part runs as a process on the embedded broker, a part killed by hand is
/// restarted, and a second run continues from the first one's state.
@Suite("demo", .serialized, .timeLimit(.minutes(4)))
struct DemoTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func demo(_ directory: URL, seconds: Int, killPipelineAfter: Double? = nil) async throws -> (ProcessResult, [String: Any]) {
        let arguments = [
            "demo", "--var", directory.path, "--duration", "\(seconds)s", "--port", "0",
            "--topics", Self.repository.appendingPathComponent("topics").path,
            "--connectors", Self.repository.appendingPathComponent("connectors").path,
            "--rate", "60", "--retrain-tokens", "60000", "--train-steps", "20",
        ]
        let killer = Task {
            guard let killPipelineAfter else { return false }
            try await Task.sleep(for: .seconds(killPipelineAfter))
            let pidFile = directory.appendingPathComponent("run/pipeline.pid")
            guard let text = try? String(contentsOf: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                return false
            }
            return kill(pid, SIGKILL) == 0
        }
        let run = try await runProcess(sluiceExecutable.path, arguments, timeout: .seconds(seconds + 120))
        let killed = try await killer.value
        if killPipelineAfter != nil { #expect(killed, "the pipeline's pid file named a running process") }
        let data = try Data(contentsOf: directory.appendingPathComponent("demo-summary.json"))
        return (run, try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:])
    }

    @Test func boundedDemoSupervisesItsPartsAndASecondRunContinues() async throws {
        let directory = temporaryOutput("demo")
        defer { try? FileManager.default.removeItem(at: directory) }

        // First run: the pipeline is killed mid-run and comes back; nothing is lost or curated twice.
        let (first, one) = try await demo(directory, seconds: 40, killPipelineAfter: 14)
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
        #expect(first.stdout.contains("Starting a new demo"))
        #expect(first.stdout.contains("pipeline was killed by signal 9"), "\(first.stdout)")
        let parts = one["parts"] as? [String: [String: Int]] ?? [:]
        #expect(parts["pipeline"]?["restarts"] == 1 && parts["pipeline"]?["starts"] == 2, "\(parts)")
        #expect(parts["generator"]?["restarts"] == 0 && parts["files"]?["restarts"] == 0, "\(parts)")
        let samples = one["samples"] as? Int ?? 0, rejected = one["rejected"] as? Int ?? 0, raw = one["raw_records"] as? Int ?? 0
        #expect(samples > 300, "\(one)")
        #expect(samples + rejected <= raw && raw - (samples + rejected) < 60, "every raw record curated or dropped once: \(one)")
        let languages = one["languages"] as? [String: Int] ?? [:]
        #expect((languages["en"] ?? 0) > 0 && (languages["zh"] ?? 0) > 0, "\(languages)")
        for name in ["pipeline", "generator", "files", "trainer", "retrain-watch"] {
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("logs/\(name).log").path))
        }
        let verify = try await runProcess(sluiceExecutable.path, ["shards", "verify", directory.appendingPathComponent("shards").path])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let models = one["models"] as? [[String: Any]] ?? []
        #expect(!models.isEmpty, "a retraining round finished: \(one)")
        #expect(one["gateway"] is String, "the gateway started on the first model: \(one)")
        let docs = try String(contentsOf: directory.appendingPathComponent("broker/raw.docs/0.jsonl"), encoding: .utf8)
            + ((try? String(contentsOf: directory.appendingPathComponent("broker/raw.docs/1.jsonl"), encoding: .utf8)) ?? "")

        // Second run: the broker journal replays the topics, the generator continues, the file connector does not
        // send its files again, and the dataset grows.
        let (second, two) = try await demo(directory, seconds: 20)
        #expect(second.status == 0, "\(second.stdout)\n\(second.stderr)")
        #expect(second.stdout.contains("Continuing the demo"), "\(second.stdout)")
        let samples2 = two["samples"] as? Int ?? 0, rejected2 = two["rejected"] as? Int ?? 0, raw2 = two["raw_records"] as? Int ?? 0
        #expect(raw2 > raw && samples2 > samples, "\(two)")
        #expect(samples2 + rejected2 <= raw2 && raw2 - (samples2 + rejected2) < 60, "\(two)")
        let docs2 = try String(contentsOf: directory.appendingPathComponent("broker/raw.docs/0.jsonl"), encoding: .utf8)
            + ((try? String(contentsOf: directory.appendingPathComponent("broker/raw.docs/1.jsonl"), encoding: .utf8)) ?? "")
        #expect(docs2 == docs, "the file connector resumed from its checkpoint and sent nothing twice")
        let verify2 = try await runProcess(sluiceExecutable.path, ["shards", "verify", directory.appendingPathComponent("shards").path])
        #expect(verify2.status == 0, "\(verify2.stdout)\(verify2.stderr)")
    }

    @Test func demoRefusesABadDurationAndASecondDemoOnTheSameDirectory() async throws {
        let bad = try await runProcess(sluiceExecutable.path, ["demo", "--duration", "soon"])
        #expect(bad.status != 0 && bad.stderr.contains("is not a duration"), "\(bad.stderr)")
        let directory = temporaryOutput("demo-lock")
        defer { try? FileManager.default.removeItem(at: directory) }
        let arguments = ["demo", "--var", directory.path, "--duration", "8s", "--port", "0",
                         "--topics", Self.repository.appendingPathComponent("topics").path,
                         "--connectors", Self.repository.appendingPathComponent("connectors").path]
        async let first = runProcess(sluiceExecutable.path, arguments, timeout: .seconds(90))
        try await Task.sleep(for: .seconds(2))
        let second = try await runProcess(sluiceExecutable.path, arguments, timeout: .seconds(60))
        #expect(second.status != 0 && second.stderr.contains("another sluice demo is running"), "\(second.stderr)")
        #expect(try await first.status == 0)
    }
}
