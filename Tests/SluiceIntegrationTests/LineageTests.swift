import Foundation
import GRDB
import SluiceShards
import SluiceTrain
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
        let broker = try BrokerProcess(
            arguments: ["--topic", "\(name).in:1", "--topic", "sluice.control:1", "--topic", "sluice.datasets:1"] + PipelineTests.outputTopics)
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
        let raw = try await runProcess(sluiceExecutable.path, ["lineage", "--output", output.path, "--offset", "lineage.in:0:0"]).stdout
        #expect(kept.status == 0 && kept.answers.count == 1 && kept.answers.first?["status"] != nil, "\(kept.stderr) \(raw)")
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

    /// Every document the Swift trainer's loader yields from a curated directory (hold-out off), as one byte stream.
    static func trainerView(_ output: URL) throws -> [UInt8] {
        var configuration = LoaderConfiguration()
        configuration.contextLength = 16
        configuration.batchSize = 1
        configuration.shuffleBuffer = 4
        configuration.holdout = 0
        var loader = ShardStreamLoader(configuration: configuration, baseDirectory: output)
        loader.deletions = DeletionView(refresh: 0)
        for announcement in try ShardAnnouncement.directory(output) { loader.offer(announcement) }
        loader.finish()
        var stream: [UInt8] = []
        while let batch = loader.nextBatch() { stream += batch.inputs }
        return stream
    }

    /// The Python client's view: every input byte of every batch of ShardStream.from_directory.
    static func pythonView(_ output: URL) throws -> [UInt8] {
        let script = """
            import sys
            from sluice_client import ShardStream
            stream = ShardStream.from_directory(sys.argv[1], context_length=16, batch_size=1, shuffle_buffer=4, holdout=0, as_tensors=False)
            sys.stdout.buffer.write(b"".join(inputs for inputs, _ in stream))
            """
        return try PythonClientRunner.run(script, [output.path])
    }

    @Test func aDeletionReachesEveryReaderAndCompactionRewritesTheShard() async throws {
        let (broker, output, _) = try await Self.curatedStream("deletion")
        defer {
            _ = broker.stop()
            try? FileManager.default.removeItem(at: output)
        }
        let sluice = sluiceExecutable.path
        let target = try await Self.lineage(output, ["--id", "r-000000"]).answers.first ?? [:]
        let other = try await Self.lineage(output, ["--id", "r-000001"]).answers.first ?? [:]
        let targetKey = target["key"] as? String ?? "", otherKey = other["key"] as? String ?? ""
        let targetText = try await runProcess(sluice, ["shards", "cat", output.path, targetKey]).stdout.trimmingCharacters(in: .newlines)
        let otherText = try await runProcess(sluice, ["shards", "cat", output.path, otherKey]).stdout.trimmingCharacters(in: .newlines)
        let oldShard = target["shard"] as? String ?? "", oldSHA = target["shard_sha256"] as? String ?? ""
        #expect(targetText.count > 40 && otherText.count > 40 && other["shard"] as? String == oldShard)
        func contains(_ view: [UInt8], _ text: String) -> Bool { view.firstRange(of: Array(text.utf8).prefix(40)) != nil }
        let trainerBefore = try Self.trainerView(output), pythonBefore = try Self.pythonView(output)
        #expect(contains(trainerBefore, targetText) && contains(pythonBefore, targetText))

        // The gateway serves the sample until the request arrives.
        let (fixture, _, model) = try await GatewayTests.setUp("deletion-model")
        defer { try? FileManager.default.removeItem(at: fixture) }
        let gateway = try GatewayTests.Server(["--model", model, "--shards", output.path])
        defer { gateway.stop() }
        #expect(try await httpGet(port: gateway.port, path: "/v1/samples/\(targetKey)").0 == 200)

        // The request goes to the control topic; `sluice control` applies it, audits it and compacts.
        let sent = try await runProcess(sluice, ["delete", "--bootstrap", broker.bootstrap, "--id", "r-000000", "--request", "req-1", "--reason", "takedown"])
        #expect(sent.status == 0, "\(sent.stderr)")
        let control = try await runProcess(
            sluice, ["control", "--output", output.path, "--bootstrap", broker.bootstrap, "--compact", "--exit-at-end"], timeout: .seconds(60))
        #expect(control.status == 0 && control.stdout.contains("deletion req-1: 1 samples"), "\(control.stdout) \(control.stderr)")
        let audit = try await runProcess(
            sluice, ["consume", "--bootstrap", broker.bootstrap, "--topic", "sluice.control", "--format", "value", "--exit-at-end"])
        let events = audit.stdout.split(separator: "\n").map(Self.json)
        #expect(events.map { $0["type"] as? String ?? "" } == ["delete", "deletion_applied", "deletion_compacted"], "\(audit.stdout)")
        #expect(events.dropFirst().first?["matched"] as? Int == 1 && (events.dropFirst().first?["keys"] as? [String]) == [targetKey])

        // Every reader skips it now: gateway, trainer loader, Python client, shards cat.
        #expect(try await httpGet(port: gateway.port, path: "/v1/samples/\(targetKey)").0 == 410)
        #expect(try await httpGet(port: gateway.port, path: "/v1/samples/\(otherKey)").0 == 200)
        let trainer = try Self.trainerView(output), python = try Self.pythonView(output)
        #expect(!contains(trainer, targetText) && !contains(python, targetText))
        #expect(contains(trainer, otherText) && contains(python, otherText))
        #expect(try await runProcess(sluice, ["shards", "cat", output.path, targetKey]).status != 0)

        // Compaction: a new shard without the sample (new SHA-256), the old file gone, the others byte for byte.
        let after = try await Self.lineage(output, ["--id", "r-000001"]).answers.first ?? [:]
        #expect(after["shard"] as? String != oldShard && after["shard_sha256"] as? String != oldSHA)
        #expect((after["shard"] as? String ?? "").contains("-c1"))
        #expect(!FileManager.default.fileExists(atPath: output.appendingPathComponent(oldShard).path))
        #expect(try await runProcess(sluice, ["shards", "cat", output.path, otherKey]).stdout.trimmingCharacters(in: .newlines) == otherText)
        let verify = try await runProcess(sluice, ["shards", "verify", output.path])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
        let gone = try await Self.lineage(output, [targetKey]).answers.first ?? [:]
        #expect(gone["status"] as? String == "deleted" && gone["shard_status"] as? String == "retired" && gone["deletion"] as? String == "req-1")
    }

    @Test func versionsAreImmutableDiffableAndPinTheTrainer() async throws {
        let (broker, output, _) = try await Self.curatedStream("versions")
        defer {
            _ = broker.stop()
            try? FileManager.default.removeItem(at: output)
        }
        let sluice = sluiceExecutable.path
        let first = try await runProcess(sluice, ["dataset", "snapshot", "--output", output.path, "--bootstrap", broker.bootstrap])
        let v1 = Self.json(Substring(first.stdout.trimmingCharacters(in: .newlines)))
        #expect(first.status == 0 && v1["version"] as? Int == 1, "\(first.stderr)")
        let samples = v1["samples"] as? Int ?? 0
        #expect(samples == 9 && (v1["tokens"] as? Int ?? 0) > 100 && (v1["by_source"] as? [String: Any])?.isEmpty == false, "\(v1)")
        #expect((v1["pipelines"] as? [String])?.first?.hasPrefix("sluice/") == true)
        let unchanged = try await runProcess(sluice, ["dataset", "snapshot", "--output", output.path])
        #expect(unchanged.stderr.contains("nothing changed since version 1"))

        // A deletion and a compaction make version 2; version 1 stays as it was.
        let key = try await Self.lineage(output, ["--id", "r-000002"]).answers.first?["key"] as? String ?? ""
        #expect(try await runProcess(sluice, ["delete", "--output", output.path, "--id", "r-000002", "--request", "gdpr-7"]).status == 0)
        #expect(try await runProcess(sluice, ["shards", "compact", output.path]).status == 0)
        let second = try await runProcess(sluice, ["dataset", "snapshot", "--output", output.path])
        let v2 = Self.json(Substring(second.stdout.trimmingCharacters(in: .newlines)))
        #expect(v2["version"] as? Int == 2 && v2["samples"] as? Int == samples - 1 && v2["deleted"] as? [String] == [key], "\(v2)")
        let diff = Self.json(Substring(try await runProcess(sluice, ["dataset", "diff", "--output", output.path, "1", "2"]).stdout))
        #expect(diff["deleted_added"] as? [String] == [key] && diff["deletions_added"] as? [String] == ["gdpr-7"] && diff["samples"] as? Int == -1, "\(diff)")
        #expect((diff["shards_added"] as? [String])?.count == 1 && (diff["shards_removed"] as? [String])?.count == 1)
        let shown = try await runProcess(sluice, ["dataset", "show", "--output", output.path, "1"])
        #expect(Self.json(Substring(shown.stdout))["samples"] as? Int == samples, "version 1 is immutable")
        let listed = try await runProcess(sluice, ["dataset", "ls", "--output", output.path])
        #expect(listed.stdout.split(separator: "\n").count == 2)
        #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent("versions/v000002.json").path))
        let published = try await runProcess(
            sluice, ["consume", "--bootstrap", broker.bootstrap, "--topic", "sluice.datasets", "--exit-at-end"])
        #expect(published.stdout.contains("\"key\":\"stream/v1\""), "\(published.stdout)")

        // The trainer pins version 1 (its compacted shard resolves to the replacement) and records it.
        let model = output.appendingPathComponent("model").path
        let train = try await runProcess(
            sluice, ["train", "--shards", output.path, "--dataset-version", "1", "--output", model, "--steps", "1", "--batch", "1", "--holdout", "0",
                     "--context", "32", "--dim", "32", "--layers", "1", "--heads", "2"])
        #expect(train.status == 0, "\(train.stderr)")
        let state = try String(contentsOfFile: model + "/checkpoints/step-00000001/state.json", encoding: .utf8)
        #expect(state.replacingOccurrences(of: " ", with: "").contains("\"dataset_version\":1"), "\(state.prefix(300))")
        let other = try await runProcess(
            sluice, ["train", "--shards", output.path, "--dataset-version", "2", "--output", model, "--steps", "2", "--batch", "1", "--holdout", "0",
                     "--context", "32", "--dim", "32", "--layers", "1", "--heads", "2"])
        #expect(other.status != 0 && other.stderr.contains("dataset version 1"), "\(other.stderr)")
        let missing = try await runProcess(sluice, ["train", "--shards", output.path, "--dataset-version", "9", "--output", model + "2", "--steps", "1"])
        #expect(missing.status != 0 && missing.stderr.contains("no dataset version 9"))
    }

    @Test func aReplayAfterAConfigFixLandsEachRecordOnce() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "replay.in:1"] + PipelineTests.outputTopics)
        defer { _ = broker.stop() }
        let corpus = StreamCorpus(count: 12, seed: 5)
        try await produce(corpus.lines, topic: "replay.in", bootstrap: broker.bootstrap)
        let output = temporaryOutput("replay")
        defer { try? FileManager.default.removeItem(at: output) }
        let sluice = sluiceExecutable.path
        let strict = output.appendingPathComponent("strict.yaml")
        try Data("decode:\n  max_bytes: 600\n".utf8).write(to: strict)
        let pipeline = ["pipeline"] + PipelineTests().arguments(broker.bootstrap, topic: "replay.in", output: output, group: "replay", sealAfter: 100)
            + ["--exit-at-end"]
        // A too strict limit sends the longer records to the DLQ.
        let first = try await runProcess(sluice, pipeline + ["--config", strict.path], timeout: .seconds(90))
        #expect(first.status == 0, "\(first.stderr.suffix(1500))")
        let oversized = corpus.lines.enumerated().filter { $0.element.split(separator: "|", maxSplits: 1).last!.utf8.count > 600 }.map(\.offset)
        try #require(oversized.count >= 2, "the corpus has records over the limit")
        let before = try await Self.lineage(output, ["--offset", "replay.in:0:\(oversized[0])"]).answers.first ?? [:]
        #expect(before["status"] as? String == "dlq" && before["reason"] as? String == "oversize", "\(before)")
        func kept() async throws -> Int {
            let index = try StreamIndexReader(directory: output)
            return try await index.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM samples") ?? 0 }
        }
        let keptBefore = try await kept()

        // The limit is fixed (the default), the DLQ is replayed, and the pipeline curates the records once.
        let replay = try await runProcess(sluice, ["replay", "--bootstrap", broker.bootstrap, "--from-dlq", "--reason", "oversize"])
        #expect(replay.status == 0 && Self.json(Substring(replay.stdout))["replayed"] as? Int == oversized.count, "\(replay.stdout) \(replay.stderr)")
        let second = try await runProcess(sluice, pipeline, timeout: .seconds(90))
        #expect(second.status == 0, "\(second.stderr.suffix(1500))")
        let keptAfter = try await kept()
        #expect(keptAfter > keptBefore)
        for offset in oversized {
            // The newest answer is what became of the replay: kept, or dropped by a later stage (offset 3 is a
            // duplicate of an earlier record) with the original position in its detail.
            let now = try await Self.lineage(output, ["--offset", "replay.in:0:\(offset)"]).answers.last ?? [:]
            #expect(now["status"] as? String == "kept" || (now["status"] as? String == "rejected" && now["stage"] as? String != "decode"
                && (now["detail"] as? [String: Any])?["replay_of"] as? String == "replay.in/0/\(offset)"), "\(now)")
            if now["status"] as? String == "kept" {
                #expect((now["origin"] as? [String: Any])?["offset"] as? Int == offset, "the sample keeps its original position")
            }
        }

        // Replaying the same records again adds nothing: each is dropped as a resend of a kept record.
        let again = try await runProcess(sluice, ["replay", "--bootstrap", broker.bootstrap, "--from-dlq", "--reason", "oversize"])
        #expect(Self.json(Substring(again.stdout))["replayed"] as? Int == oversized.count)
        let third = try await runProcess(sluice, pipeline, timeout: .seconds(90))
        #expect(third.status == 0, "\(third.stderr.suffix(1500))")
        #expect(try await kept() == keptAfter, "no record is written twice")
        let dry = try await runProcess(sluice, ["replay", "--bootstrap", broker.bootstrap, "--from-dlq", "--reason", "invalid_json", "--dry-run"])
        #expect(Self.json(Substring(dry.stdout))["matched"] as? Int == corpus.undecodable && Self.json(Substring(dry.stdout))["replayed"] as? Int == 0)
        // From the rejected topic: the original record is fetched from its raw topic (offset 5 is too short for
        // the quality rules, and still is: the replay is dropped again, and lineage shows it).
        let rejected = try await runProcess(sluice, ["replay", "--bootstrap", broker.bootstrap, "--from-rejected", "--stage", "quality"])
        let rejectedSummary = Self.json(Substring(rejected.stdout))
        #expect(rejectedSummary["replayed"] as? Int ?? 0 >= 1 && rejectedSummary["missing"] as? Int == 0, "\(rejected.stdout) \(rejected.stderr)")
        #expect(try await runProcess(sluice, pipeline, timeout: .seconds(90)).status == 0)
        let short = try await Self.lineage(output, ["--offset", "replay.in:0:5"]).answers
        #expect(short.count == 2 && (short.last?["detail"] as? [String: Any])?["replay_of"] as? String == "replay.in/0/5", "\(short)")
        let wrong = try await runProcess(sluice, ["replay", "--bootstrap", broker.bootstrap])
        #expect(wrong.status != 0 && wrong.stderr.contains("--from-dlq or --from-rejected"))
    }

    @Test func aShadowRuleSetChangesNoOutputAndTheAssessmentReportsEachSource() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "assess.in:1", "--topic", "sluice.alerts:1"] + PipelineTests.outputTopics)
        defer { _ = broker.stop() }
        // Three records carry an email: the active rules redact it, the shadow rules would drop the record.
        var lines = StreamCorpus(count: 30, seed: 11).lines
        for n in [0, 1, 2] { lines[n] = lines[n].replacingOccurrences(of: "\"text\": \"", with: "\"text\": \"Write to ana.lopez@example.com today. ") }
        try await produce(lines, topic: "assess.in", bootstrap: broker.bootstrap)
        let directory = temporaryOutput("assess")
        defer { try? FileManager.default.removeItem(at: directory) }
        let shadowed = directory.appendingPathComponent("shadowed"), plain = directory.appendingPathComponent("plain")
        let config = directory.appendingPathComponent("shadow.yaml")
        try Data("shadow:\n  desensitize:\n    policy: drop\n  dedup:\n    threshold: 0.3\nassessment:\n  window_seconds: 3600\n".utf8).write(to: config)
        let sluice = sluiceExecutable.path
        func run(_ output: URL, group: String, _ extra: [String]) async throws {
            let arguments = ["pipeline"] + PipelineTests().arguments(broker.bootstrap, topic: "assess.in", output: output, group: group, sealAfter: 100)
                + ["--exit-at-end"] + extra
            let result = try await runProcess(sluice, arguments, timeout: .seconds(90))
            #expect(result.status == 0, "\(result.stderr.suffix(1500))")
        }
        try await run(shadowed, group: "shadowed", ["--config", config.path])
        try await run(plain, group: "plain", [])

        // The same shards, byte for byte, with and without the shadow rules.
        let listing = { (output: URL) async throws -> String in try await runProcess(sluice, ["shards", "ls", output.path]).stdout }
        let withShadow = try await listing(shadowed), without = try await listing(plain)
        #expect(!withShadow.isEmpty && withShadow == without, "\(withShadow)\n\(without)")

        // The report: what the shadow rules would drop, by rule, source and language; each source's rates.
        let report = Self.json(Substring(try await runProcess(sluice, ["quality", "report", "--output", shadowed.path]).stdout))
        let shadow = report["shadow"] as? [String: Any] ?? [:]
        let email = (shadow["would_drop"] as? [String: Any])?["desensitize/pii:email"] as? [String: Any] ?? [:]
        #expect(email["records"] as? Int == 3 && (email["by_source"] as? [String: Int]) == ["test": 3], "\(shadow)")
        #expect(shadow["records"] as? Int == 30)
        let test = (report["sources"] as? [String: Any])?["test"] as? [String: Any] ?? [:]
        let completeness = test["completeness"] as? [String: Double] ?? [:]
        #expect(completeness["id"] == 1 && completeness["url"] == 0 && (test["records"] as? Int ?? 0) >= 25, "\(test)")
        #expect((test["pii_rate"] as? Double ?? 0) > 0.05 && (test["drop_rate"] as? Double ?? 0) > 0, "\(test)")
        #expect(Self.json(Substring(try await runProcess(sluice, ["quality", "report", "--output", plain.path]).stdout))["shadow"] is NSNull)

        // New records with a new envelope field and a new source: schema drift, alerted once on sluice.alerts.
        try await produce(
            ["late-1|{\"id\": \"late-1\", \"source\": \"forum2\", \"license\": \"cc-by\", \"text\": \"\(StreamCorpus(count: 1, seed: 3).lines[0].split(separator: "\"text\": \"").last!.dropLast(2))\"}"],
            topic: "assess.in", bootstrap: broker.bootstrap)
        try await run(shadowed, group: "shadowed", ["--config", config.path])
        let alerts = try await runProcess(sluice, ["consume", "--bootstrap", broker.bootstrap, "--topic", "sluice.alerts", "--format", "value", "--exit-at-end"])
        let events = alerts.stdout.split(separator: "\n").map(Self.json)
        #expect(events.contains { $0["change"] as? String == "new_field" && $0["value"] as? String == "license" }, "\(alerts.stdout)")
        #expect(events.contains { $0["change"] as? String == "new_source" && $0["value"] as? String == "forum2" })
        let after = Self.json(Substring(try await runProcess(sluice, ["quality", "report", "--output", shadowed.path]).stdout))
        #expect((after["schema_fields"] as? [[String: Any]])?.first?["field"] as? String == "license")
        // Dataset versions carry the per-source summary.
        let version = Self.json(Substring(try await runProcess(sluice, ["dataset", "snapshot", "--output", shadowed.path]).stdout))
        #expect((version["quality"] as? [String: Any])?["test"] != nil, "\(version)")
    }

    @Test func quarantinedRecordsAreReviewedAndAcceptedOnesLandOnce() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "review.in:1", "--topic", "sluice.quarantine:1"] + PipelineTests.outputTopics)
        defer { _ = broker.stop() }
        try await produce(StreamCorpus(count: 12, seed: 5).lines, topic: "review.in", bootstrap: broker.bootstrap)
        let output = temporaryOutput("review")
        defer { try? FileManager.default.removeItem(at: output) }
        // Every score is borderline here: every decodable record waits for review.
        let config = output.appendingPathComponent("review.yaml")
        try Data("quarantine:\n  quality_score_min: 0\n  quality_score_max: 1\n".utf8).write(to: config)
        let sluice = sluiceExecutable.path
        let pipeline = ["pipeline"] + PipelineTests().arguments(broker.bootstrap, topic: "review.in", output: output, group: "review", sealAfter: 100)
            + ["--exit-at-end", "--config", config.path]
        #expect(try await runProcess(sluice, pipeline, timeout: .seconds(90)).status == 0)
        let review = ["--bootstrap", broker.bootstrap]
        let listed = try await runProcess(sluice, ["review", "list"] + review)
        let entries = listed.stdout.split(separator: "\n").map(Self.json)
        #expect(entries.count == 11 && entries.first?["record"] as? String == "review.in/0/0", "\(listed.stdout) \(listed.stderr)")
        let quarantined = try await Self.lineage(output, ["--offset", "review.in:0:1"]).answers.first ?? [:]
        #expect(quarantined["status"] as? String == "quarantined" && quarantined["reason"] as? String == "quality_borderline")

        // Two accepted (one of them too short for the quality rules), one rejected.
        #expect(try await runProcess(sluice, ["review", "accept", "review.in/0/0", "review.in/0/5"] + review).status == 0)
        #expect(try await runProcess(sluice, ["review", "reject", "review.in/0/1"] + review).status == 0)
        let twice = try await runProcess(sluice, ["review", "accept", "review.in/0/0"] + review)
        #expect(twice.status != 0 && twice.stderr.contains("already decided: accept"))
        #expect(try await runProcess(sluice, ["review", "list"] + review).stdout.split(separator: "\n").count == 8)
        #expect(try await runProcess(sluice, pipeline, timeout: .seconds(90)).status == 0)
        for offset in [0, 5] {
            let kept = try await Self.lineage(output, ["--offset", "review.in:0:\(offset)"]).answers.first ?? [:]
            #expect(kept["status"] as? String == "kept" && (kept["origin"] as? [String: Any])?["offset"] as? Int == offset, "\(kept)")
        }
        #expect(try await Self.lineage(output, ["--offset", "review.in:0:1"]).answers.first?["status"] as? String == "quarantined")
        let index = try StreamIndexReader(directory: output)
        #expect(try await index.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM samples") } == 2)
    }
}

/// Runs Python with the client on the path (SLUICE_TEST_PYTHON, the venv `make test` prepares, or python3).
enum PythonClientRunner {
    static let clientDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("clients/python")

    struct Failure: Error, CustomStringConvertible { var description: String }

    static func run(_ script: String, _ arguments: [String]) throws -> [UInt8] {
        let python = ProcessInfo.processInfo.environment["SLUICE_TEST_PYTHON"].flatMap {
            FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil
        } ?? "/usr/bin/python3"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = clientDirectory.path
        process.environment = environment
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure(description: "python: \(String(decoding: errorData, as: UTF8.self))") }
        return Array(data)
    }
}
