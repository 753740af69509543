import Foundation
import Testing

/// `sluice backup` and `sluice restore` on a real dataset, checked with `sluice shards verify`.
@Suite("backup and restore", .serialized, .timeLimit(.minutes(3)))
struct BackupTests {
    @Test func backupsAreIncrementalFollowCompactionAndRestoreVerifies() async throws {
        let directory = temporaryOutput("backup")
        defer { try? FileManager.default.removeItem(at: directory) }
        let sluice = sluiceExecutable.path
        let words = ["river", "garden", "library", "station", "harbour", "mountain", "village", "market", "bridge", "forest"]
        let lines = (0..<60).map { i in
            "{\"id\":\"doc-\(i)\",\"text\":\"The \(words[i % 10]) \(i) is where the people of the town meet, and they have many stories to tell about it. \((0..<30).map { words[($0 * 7 + i) % 10] + String($0 * 13 + i) }.joined(separator: " ")).\"}"
        }
        let input = directory.appendingPathComponent("in.jsonl")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: input)
        let dataset = directory.appendingPathComponent("data"), copy = directory.appendingPathComponent("copy")
        let restored = directory.appendingPathComponent("restored")
        #expect(try await runProcess(sluice, ["curate", "--input", input.path, "--output", dataset.path, "--quiet"]).status == 0)
        #expect(try await runProcess(sluice, ["dataset", "snapshot", "--output", dataset.path]).status == 0)
        func backup() async throws -> [String: Any] {
            let run = try await runProcess(sluice, ["backup", dataset.path, copy.path])
            #expect(run.status == 0, "\(run.stderr)")
            return (try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8))) as? [String: Any] ?? [:]
        }
        let first = try await backup()
        #expect(first["copied"] as? Int == 1 && first["shards"] as? Int == 1, "\(first)")
        let second = try await backup()
        #expect(second["copied"] as? Int == 0 && second["unchanged"] as? Int == 1, "nothing changed: nothing copied")
        // A deletion and a compaction: the next backup copies the new shard and drops the retired one.
        #expect(try await runProcess(sluice, ["delete", "--output", dataset.path, "--id", "doc-3"]).status == 0)
        #expect(try await runProcess(sluice, ["shards", "compact", dataset.path]).status == 0)
        let third = try await backup()
        #expect(third["copied"] as? Int == 1 && third["removed"] as? Int == 1, "\(third)")
        #expect(FileManager.default.fileExists(atPath: copy.appendingPathComponent("versions/v000001.json").path))

        // Restore, verify, and the restored index answers lineage.
        let restore = try await runProcess(sluice, ["restore", copy.path, restored.path])
        #expect(restore.status == 0, "\(restore.stderr)")
        let verify = try await runProcess(sluice, ["shards", "verify", restored.path])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
        let lineage = try await runProcess(sluice, ["lineage", "--output", restored.path, "--id", "doc-3"])
        #expect(lineage.stdout.contains("\"status\":\"deleted\""), "\(lineage.stdout)")
        let again = try await runProcess(sluice, ["restore", copy.path, restored.path])
        #expect(again.status != 0 && again.stderr.contains("--overwrite"))
        let missing = try await runProcess(sluice, ["backup", directory.appendingPathComponent("nothing").path, copy.path])
        #expect(missing.status != 0 && missing.stderr.contains("index.sqlite is missing"))
    }
}
