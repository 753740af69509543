import Foundation
import GRDB
import Testing

/// `sluice pipeline` as a real process against `sluice broker` (the embedded broker over TCP): crash recovery,
/// broker faults, scale-out, graceful shutdown and write failures, each checked record by record.
@Suite("sluice pipeline: nothing lost, nothing duplicated", .serialized, .timeLimit(.minutes(6)))
struct PipelineTests {
    static let outputTopics = ["--topic", "sluice.shards:1", "--topic", "sluice.rejected:3", "--topic", "sluice.dlq:3"]

    func arguments(_ bootstrap: String, topic: String, output: URL, group: String, sealAfter: Int = 1) -> [String] {
        [
            "--bootstrap", bootstrap, "--topic", topic, "--output", output.path, "--group", group,
            "--seal-after", "\(sealAfter)", "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
            "--log-level", "info",
        ]
    }

    @Test func fiveKillsLoseAndDuplicateNothing() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "crash.in:6"] + Self.outputTopics)
        defer { _ = broker.stop() }
        let corpus = StreamCorpus(count: 20_000, seed: 11)
        try await produce(corpus.lines, topic: "crash.in", bootstrap: broker.bootstrap)
        let output = temporaryOutput("crash")
        defer { try? FileManager.default.removeItem(at: output) }
        let arguments = arguments(broker.bootstrap, topic: "crash.in", output: output, group: "crash")

        var random = SystemRandomNumberGenerator()
        var progress: [Int] = []
        for round in 0..<5 {
            let worker = try PipelineProcess(arguments)
            defer { worker.cleanUp() }
            // Wait for the assignment, then kill at a random moment of the work.
            #expect(await waitUntil(timeout: .seconds(30)) { worker.stderr.contains("partition assigned") }, "\(worker.stderr)")
            // The pipeline gets through this corpus in a few seconds: kill early enough to land mid-work.
            // The first kill comes before the first checkpoint can close (seal-after 1 s), so it always lands
            // mid-work; the others at a random moment.
            let delay = round == 0 ? Int.random(in: 100...300, using: &random) : Int.random(in: 200...1200, using: &random)
            try await Task.sleep(for: .milliseconds(delay))
            await worker.kill9()
            let index = try StreamIndexReader(directory: output)
            progress.append(index.accounted())
        }
        // Kills after the last record still count as kills, but one must land mid-work to test anything.
        #expect(progress.filter { $0 < corpus.lines.count }.count >= 1, "kills came mid-work: \(progress)")

        let last = try PipelineProcess(arguments)
        defer { last.cleanUp() }
        let index = try StreamIndexReader(directory: output)
        #expect(await waitUntil(timeout: .seconds(180)) { index.accounted() == corpus.lines.count }, "\(last.stderr.suffix(2000))")
        // A worker stopped before it has even joined would not be a graceful shutdown to check.
        #expect(await waitUntil(timeout: .seconds(30)) { last.stderr.contains("partition assigned") }, "\(last.stderr)")
        #expect(await last.terminate() == 0, "\(last.stderr.suffix(2000))")
        try index.expectExactlyOnce(corpus)

        let verify = try await runProcess(sluiceExecutable.path, ["shards", "verify", output.path])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: output.path)).contains { $0.hasSuffix(".tmp") })

        // Every sealed shard was announced, also those whose worker died between the index and the announcement
        // (re-announced at the next start); consumers de-duplicate by shard name.
        let kcat = try #require(which("kcat"))
        let announced = try await runProcess(kcat, ["-C", "-b", broker.bootstrap, "-t", "sluice.shards", "-e", "-q", "-f", "%k\n"])
        let shards = try await index.pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM shards") }
        #expect(Set(announced.stdout.split(separator: "\n").map(String.init)) == Set(shards))
        let unannounced = try await index.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM checkpoints WHERE announced = 0") ?? -1
        }
        #expect(unannounced == 0)
    }

    @Test func brokerOutageLosesNothingAndTheWorkerStays() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "fault.in:4"] + Self.outputTopics)
        defer { _ = broker.stop() }
        let corpus = StreamCorpus(count: 6_000, seed: 12)
        let output = temporaryOutput("fault")
        defer { try? FileManager.default.removeItem(at: output) }
        let worker = try PipelineProcess(arguments(broker.bootstrap, topic: "fault.in", output: output, group: "fault"))
        defer { worker.cleanUp() }
        try await produce(Array(corpus.lines[..<3_000]), topic: "fault.in", bootstrap: broker.bootstrap)
        let index = try StreamIndexReader(directory: output)
        #expect(await waitUntil(timeout: .seconds(60)) { index.accounted() > 500 })

        #expect(try broker.command("down -1").hasPrefix("ok"))
        try await Task.sleep(for: .seconds(6))
        #expect(worker.isRunning, "the worker rides out the outage")
        #expect(try broker.command("up -1").hasPrefix("ok"))
        try await produce(Array(corpus.lines[3_000...]), topic: "fault.in", bootstrap: broker.bootstrap)

        #expect(await waitUntil(timeout: .seconds(120)) { index.accounted() == corpus.lines.count }, "\(worker.stderr.suffix(2000))")
        #expect(worker.isRunning)
        #expect(await worker.terminate() == 0, "\(worker.stderr.suffix(2000))")
        try index.expectExactlyOnce(corpus)
    }

    @Test func twoWorkersShareAndOneTakesOver() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "scale.in:6"] + Self.outputTopics)
        defer { _ = broker.stop() }
        let corpus = StreamCorpus(count: 20_000, seed: 13)
        try await produce(corpus.lines, topic: "scale.in", bootstrap: broker.bootstrap)
        let output = temporaryOutput("scale")
        defer { try? FileManager.default.removeItem(at: output) }
        let arguments = arguments(broker.bootstrap, topic: "scale.in", output: output, group: "scale")
        let first = try PipelineProcess(arguments)
        defer { first.cleanUp() }
        let second = try PipelineProcess(arguments)
        defer { second.cleanUp() }
        #expect(await waitUntil(timeout: .seconds(40)) {
            first.stderr.contains("partition assigned") && second.stderr.contains("partition assigned")
        }, "both workers get partitions: \(first.stderr.suffix(1000)) \(second.stderr.suffix(1000))")
        try await Task.sleep(for: .seconds(1))
        await first.kill9()

        let index = try StreamIndexReader(directory: output)
        #expect(await waitUntil(timeout: .seconds(180)) { index.accounted() == corpus.lines.count }, "\(second.stderr.suffix(2000))")
        #expect(await second.terminate() == 0, "\(second.stderr.suffix(2000))")
        try index.expectExactlyOnce(corpus)
    }

    @Test func gracefulShutdownSealsAndARestartReadsNothingAgain() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "grace.in:3"] + Self.outputTopics)
        defer { _ = broker.stop() }
        let corpus = StreamCorpus(count: 3_000, seed: 14)
        try await produce(corpus.lines, topic: "grace.in", bootstrap: broker.bootstrap)
        let output = temporaryOutput("grace")
        defer { try? FileManager.default.removeItem(at: output) }
        // A long seal age: only the shutdown seals.
        let arguments = arguments(broker.bootstrap, topic: "grace.in", output: output, group: "grace", sealAfter: 600)
        let first = try PipelineProcess(arguments)
        defer { first.cleanUp() }
        #expect(await waitUntil(timeout: .seconds(60)) { first.stderr.contains("partition assigned") })
        // Everything read: the metrics-free way to know is to wait until the records are in; then stop.
        try await Task.sleep(for: .seconds(8))
        #expect(await first.terminate() == 0, "\(first.stderr.suffix(2000))")
        let summary = try #require(first.summary, "a JSON summary on stdout: \(first.stdout)")
        #expect(summary["records"] as? Int == corpus.lines.count)
        let index = try StreamIndexReader(directory: output)
        try index.expectExactlyOnce(corpus)

        let second = try PipelineProcess(arguments)
        defer { second.cleanUp() }
        #expect(await waitUntil(timeout: .seconds(60)) { second.stderr.contains("partition assigned") })
        try await Task.sleep(for: .seconds(3))
        #expect(await second.terminate() == 0)
        let again = try #require(second.summary)
        #expect(again["records"] as? Int == 0, "nothing sealed is read again: \(again)")
        #expect(again["replay_skipped"] as? Int == 0, "the committed offsets were past every sealed record")

        // Every shard was announced, each once, with its offsets.
        let kcat = try #require(which("kcat"))
        let announced = try await runProcess(kcat, ["-C", "-b", broker.bootstrap, "-t", "sluice.shards", "-e", "-q", "-f", "%k\n"])
        let keys = announced.stdout.split(separator: "\n").map(String.init)
        let shards = try await index.pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM shards ORDER BY name") }
        #expect(keys.sorted() == shards)
        let dlq = try await runProcess(kcat, ["-C", "-b", broker.bootstrap, "-t", "sluice.dlq", "-e", "-q", "-f", "%h\n"])
        let dlqLines = dlq.stdout.split(separator: "\n")
        #expect(dlqLines.count == corpus.undecodable)
        #expect(dlqLines.allSatisfy { $0.contains("sluice.reason=invalid_json") && $0.contains("sluice.source.offset=") })
    }

    @Test func aWriteFailureStopsTheWorkerWithoutCommitting() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "full.in:2"] + Self.outputTopics)
        defer { _ = broker.stop() }
        let corpus = StreamCorpus(count: 4_000, seed: 15)
        try await produce(corpus.lines, topic: "full.in", bootstrap: broker.bootstrap)
        let output = temporaryOutput("full")
        defer { try? FileManager.default.removeItem(at: output) }
        let arguments = arguments(broker.bootstrap, topic: "full.in", output: output, group: "full", sealAfter: 2)

        // Files may not grow past 512 KiB: the open shards (about 900 KB compressed each) hit the limit mid-stream,
        // like a full disk; the index's creation (its WAL holds every migration) fits below it.
        let limited = try PipelineProcess(arguments, shell: "ulimit -f 512; exec")
        defer { limited.cleanUp() }
        let status = await limited.wait(timeout: .seconds(90))
        #expect(status != 0)
        #expect(limited.stderr.contains("the pipeline stopped"), "\(limited.stderr.suffix(2000))")
        #expect(
            limited.stderr.contains("File too large") || limited.stderr.contains("disk is full") || limited.stderr.contains("disk I/O error"),
            "\(limited.stderr.suffix(2000))")

        // Nothing unsealed was committed: a normal run afterwards accounts for every record exactly once.
        let worker = try PipelineProcess(arguments)
        defer { worker.cleanUp() }
        let index = try StreamIndexReader(directory: output)
        #expect(await waitUntil(timeout: .seconds(120)) { index.accounted() == corpus.lines.count }, "\(worker.stderr.suffix(2000))")
        #expect(await worker.terminate() == 0)
        try index.expectExactlyOnce(corpus)
    }

    @Test func retentionLossStopsTheWorkerOrIsSkippedWithAnAuditEvent() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "loss.in:1"] + Self.outputTopics)
        defer { _ = broker.stop() }
        let output = temporaryOutput("loss")
        defer { try? FileManager.default.removeItem(at: output) }
        let corpus = StreamCorpus(count: 200, seed: 16)
        try await produce(corpus.lines, topic: "loss.in", bootstrap: broker.bootstrap)
        var arguments = arguments(broker.bootstrap, topic: "loss.in", output: output, group: "loss") + ["--exit-at-end"]
        let first = try await runProcess(sluiceExecutable.path, ["pipeline"] + arguments, timeout: .seconds(90))
        #expect(first.status == 0, "\(first.stderr.suffix(2000))")

        // The embedded broker keeps at most 5 MiB per partition: 7 MiB more pushes the log start past offset 200.
        let big = (0..<70).map { "big-\($0)|{\"id\": \"big-\($0)\", \"text\": \"\(String(repeating: "a", count: 100_000))\"}" }
        try await produce(big, topic: "loss.in", bootstrap: broker.bootstrap)

        let failing = try await runProcess(sluiceExecutable.path, ["pipeline"] + arguments, timeout: .seconds(90))
        #expect(failing.status != 0)
        #expect(failing.stderr.contains("--on-data-loss skip"), "\(failing.stderr.suffix(2000))")

        arguments += ["--on-data-loss", "skip"]
        let skipping = try await runProcess(sluiceExecutable.path, ["pipeline"] + arguments, timeout: .seconds(90))
        #expect(skipping.status == 0, "\(skipping.stderr.suffix(2000))")
        #expect(skipping.stderr.contains("deleted by retention"))
        let kcat = try #require(which("kcat"))
        let audit = try await runProcess(kcat, ["-C", "-b", broker.bootstrap, "-t", "sluice.rejected", "-e", "-q"])
        #expect(audit.stdout.contains("\"reason\":\"data_lost_to_retention\",\"topic\":\"loss.in\",\"partition\":0,\"first_lost\":200"))
    }

    @Test func metricsAndHealthOverHTTP() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "metrics.in:2"] + Self.outputTopics)
        defer { _ = broker.stop() }
        let corpus = StreamCorpus(count: 500, seed: 17)
        try await produce(corpus.lines, topic: "metrics.in", bootstrap: broker.bootstrap)
        let output = temporaryOutput("metrics")
        defer { try? FileManager.default.removeItem(at: output) }
        let port = Int.random(in: 20_000...60_000)
        let worker = try PipelineProcess(
            arguments(broker.bootstrap, topic: "metrics.in", output: output, group: "metrics") + ["--metrics-port", "\(port)"])
        defer { worker.cleanUp() }
        let index = try StreamIndexReader(directory: output)
        #expect(await waitUntil(timeout: .seconds(60)) { index.accounted() == corpus.lines.count }, "\(worker.stderr.suffix(2000))")

        let (metricsStatus, metrics) = try await httpGet(port: port, path: "/metrics")
        #expect(metricsStatus == 200)
        #expect(metrics.contains("sluice_records_in_total 500"), "\(metrics.prefix(3000))")
        for name in ["sluice_records_out_total", "sluice_records_dropped_total{", "sluice_dlq_records_total \(corpus.undecodable)",
                     "sluice_shards_sealed_total", "sluice_shard_bytes_written_total", "sluice_stage_seconds_bucket{",
                     "stage=\"quality\"", "sluice_seal_seconds_count", "sluice_dedup_index_documents"]
        {
            #expect(metrics.contains(name), "\(name) in /metrics")
        }
        #expect(await waitUntil(timeout: .seconds(15)) {
            (try? runBlocking { try await httpGet(port: port, path: "/metrics") }.1.contains("sluice_consumer_lag{")) == true
        })
        // Two lag refreshes give the autoscaling signal: a replica count within 1…partitions (2 here).
        #expect(await waitUntil(timeout: .seconds(20)) {
            let text = (try? runBlocking { try await httpGet(port: port, path: "/metrics") }.1) ?? ""
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("sluice_recommended_replicas ") }),
                let value = Double(line.split(separator: " ").last ?? "")
            else { return false }
            return value >= 1 && value <= 2 && text.contains("sluice_replica_demand ")
        })
        let (healthStatus, health) = try await httpGet(port: port, path: "/healthz")
        #expect(healthStatus == 200)
        #expect(health.contains("\"status\":\"ok\"") && health.contains("\"last_seal\":\"20"), "\(health)")
        let (missingStatus, _) = try await httpGet(port: port, path: "/nothing")
        #expect(missingStatus == 404)

        // With the broker down the worker reports itself failing; it recovers when the broker returns.
        #expect(try broker.command("down -1").hasPrefix("ok"))
        #expect(await waitUntil(timeout: .seconds(30)) {
            (try? runBlocking { try await httpGet(port: port, path: "/healthz") }.0) == 503
        })
        #expect(try broker.command("up -1").hasPrefix("ok"))
        #expect(await waitUntil(timeout: .seconds(30)) {
            (try? runBlocking { try await httpGet(port: port, path: "/healthz") }.0) == 200
        })
        #expect(await worker.terminate() == 0, "\(worker.stderr.suffix(2000))")
    }

    @Test func aRecordSentTwiceIsKeptOnce() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "twice.in:4"] + Self.outputTopics)
        defer { _ = broker.stop() }
        let corpus = StreamCorpus(count: 60, seed: 18)
        // The source sends every line again under another key (another partition, most of the time), as an
        // at-least-once connector does after a restart.
        let again = corpus.lines.map { "again-" + $0 }
        try await produce(corpus.lines + again, topic: "twice.in", bootstrap: broker.bootstrap)
        let output = temporaryOutput("twice")
        defer { try? FileManager.default.removeItem(at: output) }
        let run = try await runProcess(
            sluiceExecutable.path,
            ["pipeline"] + arguments(broker.bootstrap, topic: "twice.in", output: output, group: "twice") + ["--exit-at-end"],
            timeout: .seconds(90))
        #expect(run.status == 0, "\(run.stderr.suffix(2000))")
        let index = try StreamIndexReader(directory: output)
        let ids = try await index.pool.read { db in try String.fetchAll(db, sql: "SELECT id FROM samples") }
        #expect(Set(ids).count == ids.count, "no id is kept twice")
        #expect(ids.count > 30)
        let duplicates = try await index.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM rejected WHERE stage = 'dedup' AND reason = 'duplicate' AND detail LIKE '%\"duplicate_of\":\"' || id || '\"%'") ?? 0
        }
        #expect(duplicates >= ids.count, "each kept record's second copy is dropped as a duplicate of itself")
    }

    @Test func checkValidatesTheFileAndTheFlags() async throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let example = repository.appendingPathComponent("config/pipeline.yaml").path
        let good = try await runProcess(sluiceExecutable.path, ["pipeline", "--config", example, "--check"])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("configuration OK: topics raw.web, raw.forum, raw.docs; group sluice-curate"))

        let noTopics = try await runProcess(sluiceExecutable.path, ["pipeline", "--check"])
        #expect(noTopics.status != 0)
        #expect(noTopics.stderr.contains("input.topics: no input topics"), "\(noTopics.stderr)")

        let directory = temporaryOutput("config")
        defer { try? FileManager.default.removeItem(at: directory) }
        let bad = directory.appendingPathComponent("bad.yaml")
        try Data("input:\n  topics: [raw.web]\npipeline:\n  seal_after: 5\n".utf8).write(to: bad)
        let wrong = try await runProcess(sluiceExecutable.path, ["pipeline", "--config", bad.path, "--check"])
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains("bad.yaml: pipeline.seal_after: unknown key"), "\(wrong.stderr)")

        let flag = try await runProcess(sluiceExecutable.path, ["pipeline", "--topic", "raw.web", "--seal-after", "0"])
        #expect(flag.status != 0)
        #expect(flag.stderr.contains("--seal-after must be"), "\(flag.stderr)")
    }

    @Test func missingOutputTopicsAreAClearError() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "lonely.in:1"])
        defer { _ = broker.stop() }
        let output = temporaryOutput("lonely")
        defer { try? FileManager.default.removeItem(at: output) }
        let result = try await runProcess(
            sluiceExecutable.path, ["pipeline", "--bootstrap", broker.bootstrap, "--topic", "lonely.in", "--output", output.path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("the output topic sluice.shards does not exist"), "\(result.stderr)")
    }

    @Test func anUnusableOutputDirectoryIsAClearError() async throws {
        let file = temporaryOutput("notadir").appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        let result = try await runProcess(
            sluiceExecutable.path,
            ["pipeline", "--bootstrap", "127.0.0.1:1", "--topic", "raw.web", "--output", file.appendingPathComponent("out").path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("cannot create the output directory"), "\(result.stderr)")
    }
}
