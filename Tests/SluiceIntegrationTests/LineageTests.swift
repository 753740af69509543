import Foundation
import Testing

/// Lineage, deletion and compaction end to end: `sluice pipeline` on the embedded broker over TCP, then the
/// commands a user runs on its output.
@Suite("lineage and deletion", .serialized, .timeLimit(.minutes(4)))
struct LineageTests {
    static func json(_ line: Substring) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
    }

    static func lineage(_ output: URL, _ arguments: [String]) async throws -> (status: Int32, answers: [[String: Any]], stderr: String) {
        let run = try await runProcess(sluiceExecutable.path, ["lineage", "--output", output.path] + arguments)
        return (run.status, run.stdout.split(separator: "\n").map(json), run.stderr)
    }

    /// A single-partition topic curated by the pipeline: offset n is StreamCorpus record n (3: a duplicate,
    /// 5: too short for the quality rules, 7: undecodable).
    static func curatedStream(_ name: String) async throws -> (BrokerProcess, URL, StreamCorpus) {
        let broker = try BrokerProcess(arguments: ["--topic", "\(name).in:1"] + PipelineTests.outputTopics)
        let corpus = StreamCorpus(count: 12, seed: 5)
        try await produce(corpus.lines, topic: "\(name).in", bootstrap: broker.bootstrap)
        let output = temporaryOutput(name)
        let run = try await runProcess(
            sluiceExecutable.path,
            ["pipeline"] + PipelineTests().arguments(broker.bootstrap, topic: "\(name).in", output: output, group: name, sealAfter: 100)
                + ["--exit-at-end"],
            timeout: .seconds(90))
        #expect(run.status == 0, "\(run.stderr.suffix(2000))")
        return (broker, output, corpus)
    }

    @Test func keptDroppedAndDLQRecordsAreTraced() async throws {
        let (broker, output, _) = try await Self.curatedStream("lineage")
        defer {
            _ = broker.stop()
            try? FileManager.default.removeItem(at: output)
        }
        // A kept record: its shard, origin, pipeline version, decisions and stored metadata.
        let kept = try await Self.lineage(output, ["--offset", "lineage.in:0:0"])
        #expect(kept.status == 0 && kept.answers.count == 1, "\(kept.stderr)")
        let sample = kept.answers.first ?? [:]
        #expect(sample["status"] as? String == "kept")
        let origin = sample["origin"] as? [String: Any] ?? [:]
        #expect(origin["topic"] as? String == "lineage.in" && origin["partition"] as? Int == 0 && origin["offset"] as? Int == 0)
        #expect((sample["pipeline"] as? String ?? "").hasPrefix("sluice/0.10.0+"))
        #expect((sample["decisions"] as? [String: Any])?["quality_score"] != nil)
        #expect((sample["content_sha256"] as? String)?.count == 64)
        #expect((sample["metadata"] as? [String: Any])?["offset"] as? Int == 0)
        #expect((sample["shard"] as? String ?? "").hasPrefix("lineage.in+0+"))
        // The same sample by key and by original id.
        let key = sample["key"] as? String ?? ""
        #expect(try await Self.lineage(output, [key]).answers.first?["key"] as? String == key)
        #expect(try await Self.lineage(output, ["--id", "r-000000"]).answers.first?["key"] as? String == key)

        // Dropped by quality, dropped as a duplicate, sent to the DLQ, and not read yet.
        let short = try await Self.lineage(output, ["--offset", "lineage.in:0:5"]).answers.first ?? [:]
        #expect(short["status"] as? String == "rejected" && short["stage"] as? String == "quality", "\(short)")
        let duplicate = try await Self.lineage(output, ["--offset", "lineage.in:0:3"]).answers.first ?? [:]
        #expect(duplicate["status"] as? String == "rejected" && duplicate["stage"] as? String == "dedup", "\(duplicate)")
        let undecodable = try await Self.lineage(output, ["--offset", "lineage.in:0:7"]).answers.first ?? [:]
        #expect(undecodable["status"] as? String == "dlq" && undecodable["stage"] as? String == "decode", "\(undecodable)")
        let later = try await Self.lineage(output, ["--offset", "lineage.in:0:500"]).answers.first ?? [:]
        #expect(later["status"] as? String == "not_processed" && later["next_offset"] as? Int == 12, "\(later)")

        let missing = try await Self.lineage(output, ["--id", "no-such-id"])
        #expect(missing.status == 1 && missing.stderr.contains("nothing in"))
        let malformed = try await Self.lineage(output, ["--offset", "lineage.in:zero:1"])
        #expect(malformed.status != 0 && malformed.stderr.contains("topic:partition:offset"))
    }

    @Test func offlineCurateLineageIsFileAndLine() async throws {
        let directory = temporaryOutput("lineage-offline")
        defer { try? FileManager.default.removeItem(at: directory) }
        let text = """
            The old library stands at the corner of the market square, and it has been there for as long as anyone in \
            the village can remember. In the mornings the teacher brings her students to read, and in the evenings \
            the farmers come in from the fields to look at the newspapers and talk about the weather. The building \
            was repaired after the winter storm, when the roof gave way under the snow, and the whole town helped to \
            carry the books to the school across the bridge. Now the shelves are full again, and the reading room \
            is warm and quiet, with a view of the river and the hills beyond it.
            """
        let input = directory.appendingPathComponent("in.jsonl")
        try Data("{\"id\":\"good\",\"text\":\"\(text)\"}\n{\"id\":\"bad\",\"text\":\n{\"id\":\"short\",\"text\":\"ok\"}\n".utf8).write(to: input)
        let output = directory.appendingPathComponent("out")
        #expect(try await runProcess(sluiceExecutable.path, ["curate", "--input", input.path, "--output", output.path, "--quiet"]).status == 0)
        let good = try await Self.lineage(output, ["--line", "1"]).answers.first ?? [:]
        #expect(good["status"] as? String == "kept" && (good["origin"] as? [String: Any])?["file"] as? String == input.path, "\(good)")
        #expect((good["origin"] as? [String: Any])?["line"] as? Int == 1)
        let bad = try await Self.lineage(output, ["--line", "2"]).answers.first ?? [:]
        #expect(bad["status"] as? String == "dlq", "\(bad)")
        let short = try await Self.lineage(output, ["--id", "short"]).answers.first ?? [:]
        #expect(short["status"] as? String == "rejected" && (short["origin"] as? [String: Any])?["line"] as? Int == 3, "\(short)")
    }
}
