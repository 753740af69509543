import Foundation
import GRDB
import SluiceKafka
import Testing

/// `sluice connect` as a real process against `sluice broker` (the embedded broker over TCP): every source's
/// content arrives intact, restarts after kill -9 lose nothing and re-send only what the last checkpoint had not
/// covered, follow mode survives rotation and truncation, HTTP answers 401/404/413/429, SQLite polling keeps up
/// with concurrent inserts, bad lines go to the DLQ with file and line, and backpressure holds a fast source.
@Suite("sluice connect: sources into raw topics", .serialized, .timeLimit(.minutes(6)))
struct ConnectorTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Writes a connector file and returns its path.
    func connectorFile(_ directory: URL, _ name: String, _ yaml: String) throws -> String {
        let url = directory.appendingPathComponent("\(name).yaml")
        try Data(yaml.utf8).write(to: url)
        return url.path
    }

    func connect(_ bootstrap: String, _ files: [String], input: String = "", environment: [String: String] = [:]) async throws
        -> ProcessResult
    {
        if environment.isEmpty {
            return try await runProcess(
                sluiceExecutable.path, ["connect", "--once", "--bootstrap", bootstrap] + files, input: input, timeout: .seconds(120))
        }
        let assignments = environment.map { "\($0.key)=\($0.value)" }
        return try await runProcess(
            "/usr/bin/env", assignments + [sluiceExecutable.path, "connect", "--once", "--bootstrap", bootstrap] + files,
            input: input, timeout: .seconds(120))
    }

    /// Every record of a topic as "key<TAB>value" (or with a custom kcat format).
    func records(_ bootstrap: String, _ topic: String, format: String = "%k\t%s\n") async throws -> [String] {
        let kcat = try #require(which("kcat"))
        let result = try await runProcess(kcat, ["-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-f", format])
        return result.stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    func summary(_ stdout: String) -> [String: Any]? {
        guard let line = stdout.split(separator: "\n").last,
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let connectors = object["connectors"] as? [[String: Any]]
        else { return nil }
        return connectors.first
    }

    static func envelope(_ index: Int, prefix: String = "doc") -> String {
        "{\"id\":\"\(prefix)-\(index)\",\"text\":\"Record \(index) of the connector test: a line of ordinary prose about canals and bridges.\"}"
    }

    @Test func jsonLinesArriveIntactAndBadLinesGoToTheDLQWithFileAndLine() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "c.jsonl:4", "--topic", "sluice.dlq:1"])
        defer { _ = broker.stop() }
        let directory = temporaryOutput("connect-jsonl")
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        var plain = (0..<1000).map { Self.envelope($0) }
        plain.insert("{\"id\":\"bad-1\",\"text\":\"unterminated", at: 10)   // line 11
        plain.insert("[1,2,3]", at: 500)                                    // line 501
        plain.insert("{\"id\":\"bad-3\",\"body\":\"no text field\"}", at: 900)  // line 901
        try Data((plain.joined(separator: "\n") + "\n").utf8).write(to: input.appendingPathComponent("a.jsonl"))
        let compressed = (1000..<1500).map { Self.envelope($0) }
        let plainB = directory.appendingPathComponent("b.jsonl")
        try Data((compressed.joined(separator: "\n") + "\n").utf8).write(to: plainB)
        let zstd = try await runProcess(try #require(which("zstd")), ["-q", "-f", plainB.path, "-o", input.appendingPathComponent("b.jsonl.zst").path])
        #expect(zstd.status == 0)
        let config = try connectorFile(directory, "files", """
            name: files
            type: file
            topic: c.jsonl
            path: \(input.path)
            format: jsonl
            state_dir: \(directory.appendingPathComponent("state").path)
            """)
        let first = try await connect(broker.bootstrap, [config])
        #expect(first.status == 0, "\(first.stderr)")
        let stats = try #require(summary(first.stdout), "\(first.stdout)")
        #expect(stats["records"] as? Int == 1500)
        #expect(stats["dlq"] as? Int == 3)

        let arrived = try await records(broker.bootstrap, "c.jsonl")
        let expected = (0..<1500).map { "doc-\($0)\t\(Self.envelope($0))" }
        #expect(arrived.count == 1500)
        #expect(Set(arrived) == Set(expected), "values and keys arrive byte for byte")

        let dlq = try await records(broker.bootstrap, "sluice.dlq", format: "%h\n")
        #expect(dlq.count == 3)
        for (line, reason) in [(11, "invalid_json"), (501, "not_an_object"), (901, "missing_text")] {
            #expect(dlq.contains { $0.contains("sluice.source.line=\(line)") && $0.contains("sluice.reason=\(reason)") && $0.contains("a.jsonl") }, "\(dlq)")
        }

        // A second run finds everything checkpointed and sends nothing; without `follow` it ends by itself.
        let second = try await runProcess(sluiceExecutable.path, ["connect", "--bootstrap", broker.bootstrap, config], timeout: .seconds(60))
        #expect(second.status == 0, "\(second.stderr)")
        #expect(summary(second.stdout)?["records"] as? Int == 0, "\(second.stdout)")
        #expect(try await records(broker.bootstrap, "c.jsonl").count == 1500)
    }

    @Test func exampleConnectorsShapeCSVTextAndHTMLIntoEnvelopes() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "raw.web:2", "--topic", "raw.docs:2", "--topic", "raw.forum:2", "--topic", "sluice.dlq:1"])
        defer { _ = broker.stop() }
        let state = temporaryOutput("connect-examples")
        defer { try? FileManager.default.removeItem(at: state) }
        let examples = Self.repository.appendingPathComponent("connectors")
        let files = ["file-csv", "file-text", "file-html"].map { examples.appendingPathComponent("\($0).yaml").path }
        let result = try await connect(
            broker.bootstrap, files,
            environment: ["SLUICE_SAMPLES": examples.appendingPathComponent("samples").path, "SLUICE_STATE": state.path])
        #expect(result.status == 0, "\(result.stderr)")

        let docs = try await records(broker.bootstrap, "raw.docs", format: "%s\n")
        #expect(docs.count == 3, "\(docs)")
        let first = try #require(docs.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.first { $0["id"] as? String == "d-3" })
        #expect((first["text"] as? String)?.contains("Why does the export take so long?\nExports") == true, "a quoted field spans lines")
        #expect(first["url"] as? String == "https://docs.example.org/faq")
        #expect(first["source"] as? String == "docs")
        #expect((first["meta"] as? [String: Any])?["team"] as? String == "support", "unmapped columns go to meta")
        let dlq = try await records(broker.bootstrap, "sluice.dlq", format: "%h\n")
        #expect(dlq.count == 1 && dlq[0].contains("sluice.reason=csv_column_count") && dlq[0].contains("sluice.source.line=6"), "\(dlq)")

        let blocks = try await records(broker.bootstrap, "raw.forum", format: "%s\n")
        #expect(blocks.count == 3, "one record per blank-line-separated block")
        #expect(blocks.contains { $0.contains("阳台朝北") })
        let pages = try await records(broker.bootstrap, "raw.web", format: "%s\n")
        #expect(pages.count == 1 && pages[0].contains("<article>") && pages[0].contains("\"url\":\"file://"))

        // Every example file passes --check.
        let all = try FileManager.default.contentsOfDirectory(atPath: examples.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(all.count >= 8)
        let check = try await runProcess(sluiceExecutable.path, ["connect", "--check"] + all.map { examples.appendingPathComponent($0).path })
        #expect(check.status == 0, "\(check.stdout) \(check.stderr)")
        let wrong = try connectorFile(state, "wrong", "name: x\ntype: file\ntopic: t\npath: /nowhere\nformat: xml\nstate_dir: /tmp\n")
        let bad = try await runProcess(sluiceExecutable.path, ["connect", "--check", wrong])
        #expect(bad.status != 0 && bad.stderr.contains("format") && bad.stderr.contains("jsonl"), "\(bad.stderr)")
    }

    @Test func followedFileSurvivesKillNineWithoutLoss() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "c.follow:4", "--topic", "sluice.dlq:1"])
        defer { _ = broker.stop() }
        let directory = temporaryOutput("connect-kill")
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("app.jsonl")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let stateDirectory = directory.appendingPathComponent("state")
        let config = try connectorFile(directory, "follow", """
            name: follow
            type: file
            topic: c.follow
            path: \(log.path)
            format: jsonl
            follow: true
            poll_interval_ms: 50
            checkpoint_interval_ms: 200
            state_dir: \(stateDirectory.path)
            """)
        let writer = try FileHandle(forWritingTo: log)
        var written = 0
        func append(_ count: Int) {
            let lines = (written..<(written + count)).map { Self.envelope($0) }.joined(separator: "\n") + "\n"
            writer.seekToEndOfFile()
            writer.write(Data(lines.utf8))
            written += count
        }
        let worker = try PipelineProcess(["--bootstrap", broker.bootstrap, config], command: "connect")
        defer { worker.cleanUp() }
        let stateFile = stateDirectory.appendingPathComponent("follow.state.json")
        for _ in 0..<6 {
            append(300)
            try await Task.sleep(for: .milliseconds(150))
        }
        #expect(await waitUntil(timeout: .seconds(30)) { FileManager.default.fileExists(atPath: stateFile.path) })
        // Killed right after a burst of new lines: some are sent, some acknowledged, few checkpointed.
        append(3000)
        try await Task.sleep(for: .milliseconds(Int.random(in: 20...120)))
        await worker.kill9()
        let checkpointed = try #require(
            ((try JSONSerialization.jsonObject(with: Data(contentsOf: stateFile)) as? [String: Any])?["files"] as? [[String: Any]])?.first?["line"] as? Int)
        let beforeRestart = try await records(broker.bootstrap, "c.follow").count
        for _ in 0..<5 { append(200) }
        try writer.close()

        let restart = try await connect(broker.bootstrap, [config])
        #expect(restart.status == 0, "\(restart.stderr)")
        let arrived = try await records(broker.bootstrap, "c.follow")
        let expected = Set((0..<written).map { "doc-\($0)\t\(Self.envelope($0))" })
        #expect(Set(arrived) == expected, "nothing lost")
        let resent = arrived.count - written
        // Re-sent records are exactly those sent after the last checkpoint before the kill.
        #expect(resent == beforeRestart - checkpointed, "re-sent \(resent), sent before the kill \(beforeRestart), checkpoint at line \(checkpointed)")
        print("kill -9 of a followed file connector: \(beforeRestart) records sent before the kill, checkpoint at \(checkpointed), \(resent) re-sent after restart, 0 lost")
    }

    @Test func followModeHandlesRotationAndTruncation() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "c.rotate:2", "--topic", "sluice.dlq:1"])
        defer { _ = broker.stop() }
        let directory = temporaryOutput("connect-rotate")
        defer { try? FileManager.default.removeItem(at: directory) }
        let logs = directory.appendingPathComponent("logs")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let config = try connectorFile(directory, "rotate", """
            name: rotate
            type: file
            topic: c.rotate
            path: \(logs.path)
            format: jsonl
            follow: true
            poll_interval_ms: 50
            state_dir: \(directory.appendingPathComponent("state").path)
            """)
        let app = logs.appendingPathComponent("app.log")
        func lines(_ range: Range<Int>) -> Data { Data(range.map { Self.envelope($0) }.map { $0 + "\n" }.joined().utf8) }
        try lines(0..<100).write(to: app)
        let worker = try PipelineProcess(["--bootstrap", broker.bootstrap, config], command: "connect")
        defer { worker.cleanUp() }
        let bootstrap = broker.bootstrap
        func count() -> Int { (try? runBlocking { try await self.records(bootstrap, "c.rotate").count }) ?? -1 }
        #expect(await waitUntil(timeout: .seconds(30)) { count() == 100 }, "\(worker.stderr)")

        // Rotation: the writer appends its last lines, the file is renamed, a new one takes its name.
        let handle = try FileHandle(forWritingTo: app)
        handle.seekToEndOfFile()
        handle.write(lines(100..<120))
        try handle.close()
        #expect(rename(app.path, logs.appendingPathComponent("app.log.1").path) == 0)
        try lines(120..<150).write(to: app)
        #expect(await waitUntil(timeout: .seconds(30)) { count() >= 150 }, "\(worker.stderr)")

        // Truncation in place (copytruncate): the file starts over.
        let truncate = try FileHandle(forWritingTo: app)
        try truncate.truncate(atOffset: 0)
        truncate.write(lines(150..<160))
        try truncate.close()
        #expect(await waitUntil(timeout: .seconds(30)) { count() >= 160 }, "\(worker.stderr)")
        try await Task.sleep(for: .milliseconds(500))
        #expect(await worker.terminate() == 0, "\(worker.stderr)")
        let arrived = try await records(broker.bootstrap, "c.rotate")
        #expect(arrived.count == 160, "each line once, the rotated file is not read again under its new name")
        #expect(Set(arrived) == Set((0..<160).map { "doc-\($0)\t\(Self.envelope($0))" }))
    }

    @Test func httpSourceAnswersAfterAcknowledgementAndRefusesWhatItShould() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "h.web:2", "--topic", "h.forum:2", "--topic", "sluice.dlq:1"])
        defer { _ = broker.stop() }
        let directory = temporaryOutput("connect-http")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try connectorFile(directory, "http", """
            name: http
            type: http
            topic: h.{source}
            port: 0
            tokens: [t0k3n]
            sources: [web, forum]
            max_body_bytes: 4000
            max_in_flight: 5
            """)
        let server = try PipelineProcess(["--bootstrap", broker.bootstrap, config], command: "connect")
        defer { server.cleanUp() }
        #expect(await waitUntil(timeout: .seconds(30)) { server.stderr.contains("listening on http://") }, "\(server.stderr)")
        let address = try #require(server.stderr.split(separator: "\n").first { $0.contains("listening on http://") })
        let port = try #require(Int(address.split(separator: ":").last ?? ""))
        let auth = ["Authorization": "Bearer t0k3n"]
        let batch = (0..<3).map { Self.envelope($0, prefix: "h") }.joined(separator: "\n")

        #expect(try await httpRequest(port: port, method: "POST", path: "/ingest/web", body: Array(batch.utf8)).0 == 401)
        #expect(try await httpRequest(port: port, method: "POST", path: "/ingest/web", headers: ["Authorization": "Bearer nope"], body: Array(batch.utf8)).0 == 401)
        let (status, _, body) = try await httpRequest(port: port, method: "POST", path: "/ingest/web", headers: auth, body: Array(batch.utf8))
        #expect(status == 202, "\(body)")
        #expect(body.contains("\"accepted\":3"))
        // 202 came after the acknowledgement: the records are readable at once.
        let arrived = try await records(broker.bootstrap, "h.web")
        // The path's source is written into envelopes that have none.
        let withSource = (0..<3).map { "h-\($0)\t\(Self.envelope($0, prefix: "h").dropLast()),\"source\":\"web\"}" }
        #expect(Set(arrived) == Set(withSource))

        let array = "[{\"id\":\"f-1\",\"text\":\"From a JSON array.\"},{\"id\":\"f-2\",\"text\":\"Second element.\"}]"
        #expect(try await httpRequest(port: port, method: "POST", path: "/ingest/forum", headers: auth, body: Array(array.utf8)).0 == 202)
        let forum = try await records(broker.bootstrap, "h.forum", format: "%k\n")
        #expect(Set(forum) == ["f-1", "f-2"])

        #expect(try await httpRequest(port: port, method: "POST", path: "/ingest/docs", headers: auth, body: Array(batch.utf8)).0 == 404)
        let large = Array(repeating: Self.envelope(9), count: 40).joined(separator: "\n")
        #expect(try await httpRequest(port: port, method: "POST", path: "/ingest/web", headers: auth, body: Array(large.utf8)).0 == 413)
        let tooMany = (0..<6).map { Self.envelope($0, prefix: "m") }.joined(separator: "\n")
        let (busy, head, _) = try await httpRequest(port: port, method: "POST", path: "/ingest/web", headers: auth, body: Array(tooMany.utf8))
        #expect(busy == 429)
        #expect(head.lowercased().contains("retry-after: 1"), "\(head)")
        let mixed = Self.envelope(1) + "\n{\"id\":\"x\",\"txt\":\"no text\"}"
        let (invalid, _, reason) = try await httpRequest(port: port, method: "POST", path: "/ingest/web", headers: auth, body: Array(mixed.utf8))
        #expect(invalid == 400 && reason.contains("\"index\":1") && reason.contains("missing_text"), "\(reason)")
        #expect(try await records(broker.bootstrap, "h.web").count == 3, "refused requests send nothing")

        let (healthy, _) = try await httpGet(port: port, path: "/healthz")
        #expect(healthy == 200)
        let (_, metrics) = try await httpGet(port: port, path: "/metrics")
        #expect(metrics.contains("sluice_connector_http_requests_total{connector=\"http\",status=\"202\"} 2"), "\(metrics)")
        #expect(metrics.contains("sluice_connector_records_total{connector=\"http\"} 5"))
        #expect(await server.terminate() == 0, "\(server.stderr)")
    }

    @Test func sqlitePollingKeepsUpWithConcurrentInsertsAndResumes() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "c.sqlite:3", "--topic", "sluice.dlq:1"])
        defer { _ = broker.stop() }
        let directory = temporaryOutput("connect-sqlite")
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = directory.appendingPathComponent("posts.sqlite")
        // Like any writer next to a reader of a rollback-journal database, the application waits for the
        // connector's short read transactions instead of failing at once with "database is locked".
        var settings = Configuration()
        settings.busyMode = .timeout(10)
        let queue = try DatabaseQueue(path: database.path, configuration: settings)
        try await queue.write { db in
            try db.execute(sql: "CREATE TABLE posts(post_id TEXT, body TEXT, author TEXT)")
        }
        let config = try connectorFile(directory, "sqlite", """
            name: posts
            type: sqlite
            topic: c.sqlite
            database: \(database.path)
            table: posts
            poll_interval_ms: 50
            batch_size: 37
            checkpoint_interval_ms: 100
            state_dir: \(directory.appendingPathComponent("state").path)
            fields:
              id: post_id
              text: body
            """)
        let worker = try PipelineProcess(["--bootstrap", broker.bootstrap, config], command: "connect")
        defer { worker.cleanUp() }
        func insert(_ range: Range<Int>) async throws {
            try await queue.write { db in
                for index in range {
                    try db.execute(sql: "INSERT INTO posts VALUES (?, ?, ?)", arguments: ["p-\(index)", "Post number \(index) about the new library.", "a\(index % 7)"])
                }
            }
        }
        // Inserts in many small transactions while the connector polls.
        for batch in 0..<50 {
            try await insert((batch * 10)..<(batch * 10 + 10))
            try await Task.sleep(for: .milliseconds(20))
        }
        let bootstrap = broker.bootstrap
        func count() -> Int { (try? runBlocking { try await self.records(bootstrap, "c.sqlite").count }) ?? -1 }
        #expect(await waitUntil(timeout: .seconds(30)) { count() >= 500 }, "\(worker.stderr)")
        #expect(await worker.terminate() == 0, "\(worker.stderr)")

        try await insert(500..<600)
        let resumed = try await connect(broker.bootstrap, [config])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(summary(resumed.stdout)?["records"] as? Int == 100, "a clean stop checkpointed everything: \(resumed.stdout)")
        let arrived = try await records(broker.bootstrap, "c.sqlite", format: "%k\n")
        #expect(arrived.count == 600)
        #expect(Set(arrived) == Set((0..<600).map { "p-\($0)" }))

        // kill -9 while rows keep coming: nothing lost, only rows after the last checkpoint re-sent.
        let stateFile = directory.appendingPathComponent("state/posts.state.json")
        func checkpointedRowid() -> Int {
            ((try? JSONSerialization.jsonObject(with: Data(contentsOf: stateFile))) as? [String: Any])?["rowid"] as? Int ?? 0
        }
        let killed = try PipelineProcess(["--bootstrap", broker.bootstrap, config], command: "connect")
        defer { killed.cleanUp() }
        for batch in 60..<90 {
            try await insert((batch * 10)..<(batch * 10 + 10))
            try await Task.sleep(for: .milliseconds(15))
        }
        #expect(await waitUntil(timeout: .seconds(30)) { checkpointedRowid() > 600 }, "\(killed.stderr)")
        await killed.kill9()
        let checkpoint = checkpointedRowid()
        let beforeRestart = try await records(broker.bootstrap, "c.sqlite", format: "%k\n").count
        try await insert(900..<1000)
        let restarted = try await connect(broker.bootstrap, [config])
        #expect(restarted.status == 0, "\(restarted.stderr)")
        let all = try await records(broker.bootstrap, "c.sqlite", format: "%k\n")
        #expect(Set(all) == Set((0..<1000).map { "p-\($0)" }), "nothing lost")
        // Rowids run 1…1000 in insert order, so the checkpoint counts the rows it covers.
        #expect(all.count - 1000 == beforeRestart - checkpoint, "re-sent exactly what followed the checkpoint")
        print("kill -9 of a SQLite connector: \(beforeRestart) rows sent before the kill, checkpoint at rowid \(checkpoint), \(all.count - 1000) re-sent, 0 lost")
    }

    @Test func generatorResumesAfterKillNineAndIsDeterministic() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "c.gen:6", "--topic", "c.gen2:1", "--topic", "sluice.dlq:1"])
        defer { _ = broker.stop() }
        let directory = temporaryOutput("connect-generator")
        defer { try? FileManager.default.removeItem(at: directory) }
        let stateDirectory = directory.appendingPathComponent("state")
        let config = try connectorFile(directory, "gen", """
            name: gen
            type: generator
            topic: c.gen
            seed: 7
            count: 6000
            rate: 2500
            checkpoint_interval_ms: 300
            state_dir: \(stateDirectory.path)
            """)
        let worker = try PipelineProcess(["--bootstrap", broker.bootstrap, config], command: "connect")
        defer { worker.cleanUp() }
        let stateFile = stateDirectory.appendingPathComponent("gen.state.json")
        func checkpointed() -> Int {
            ((try? JSONSerialization.jsonObject(with: Data(contentsOf: stateFile))) as? [String: Any])?["next"] as? Int ?? 0
        }
        // Kill once a checkpoint is on disk, part-way through.
        #expect(await waitUntil(timeout: .seconds(30)) { checkpointed() > 0 }, "\(worker.stderr)")
        try await Task.sleep(for: .milliseconds(400))
        await worker.kill9()
        let next = try #require((try JSONSerialization.jsonObject(with: Data(contentsOf: stateFile)) as? [String: Any])?["next"] as? Int)
        let before = try await records(broker.bootstrap, "c.gen", format: "%k\n").count
        #expect(before < 6000, "killed mid-run")

        let restart = try await connect(broker.bootstrap, [config])
        #expect(restart.status == 0, "\(restart.stderr)")
        let keys = try await records(broker.bootstrap, "c.gen", format: "%k\n")
        let expected = Set((0..<6000).map { index in "\(["web", "forum", "docs"][index % 3])-7-\(index)" })
        #expect(Set(keys) == expected, "nothing lost")
        #expect(keys.count - 6000 == before - next, "re-sent exactly what followed the checkpoint")
        print("kill -9 of a generator connector: \(before) sent before the kill, checkpoint at \(next), \(keys.count - 6000) re-sent, 0 lost")

        // Same seed, same records: a second run into another topic writes identical values.
        let copy = try connectorFile(directory, "gen2", "name: gen2\ntype: generator\ntopic: c.gen2\nseed: 7\ncount: 300\nstate_dir: \(stateDirectory.path)\n")
        #expect(try await connect(broker.bootstrap, [copy]).status == 0)
        let values = try await records(broker.bootstrap, "c.gen", format: "%k\t%s\n")
        let copied = try await records(broker.bootstrap, "c.gen2", format: "%k\t%s\n")
        #expect(copied.count == 300)
        #expect(Set(copied).isSubset(of: Set(values)))
    }

    @Test func stdinLinesArriveAndBadOnesGoToTheDLQ() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "c.stdin:2", "--topic", "sluice.dlq:1"])
        defer { _ = broker.stop() }
        let directory = temporaryOutput("connect-stdin")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try connectorFile(directory, "stdin", "name: in\ntype: stdin\ntopic: c.stdin\nsource: cli\n")
        var lines = (0..<200).map { Self.envelope($0, prefix: "s") }
        lines.insert("not json at all", at: 50)
        let result = try await connect(broker.bootstrap, [config], input: lines.joined(separator: "\n") + "\n")
        #expect(result.status == 0, "\(result.stderr)")
        let values = try await records(broker.bootstrap, "c.stdin", format: "%s\n")
        #expect(values.count == 200)
        #expect(values.allSatisfy { $0.hasSuffix(",\"source\":\"cli\"}") }, "a configured source is added where missing")
        let dlq = try await records(broker.bootstrap, "sluice.dlq", format: "%h\n")
        #expect(dlq.count == 1 && dlq[0].contains("sluice.source.file=stdin") && dlq[0].contains("sluice.source.line=51"), "\(dlq)")
    }

    @Test func backpressureHoldsTheSourceUntilThePipelineGroupCommits() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "c.bp:1", "--topic", "sluice.dlq:1"])
        defer { _ = broker.stop() }
        let directory = temporaryOutput("connect-backpressure")
        defer { try? FileManager.default.removeItem(at: directory) }
        let retention = 262_144
        let config = try connectorFile(directory, "bp", """
            name: bp
            type: generator
            topic: c.bp
            seed: 3
            count: 2500
            state_dir: \(directory.appendingPathComponent("state").path)
            backpressure:
              group: bp-readers
              retention_bytes: \(retention)
              headroom: 0.8
            """)
        let worker = try PipelineProcess(["--bootstrap", broker.bootstrap, config], command: "connect")
        defer { worker.cleanUp() }
        var configuration = KafkaConfiguration()
        configuration.bootstrapServers = broker.bootstrap
        configuration.groupID = "bp-readers"
        let reader = try KafkaConsumer(configuration: configuration)
        let partition = TopicPartition(topic: "c.bp", partition: 0)
        try await Task.sleep(for: .seconds(3))
        // Nobody has read anything: the connector holds at about headroom × retention.
        let (_, held) = try await reader.watermarks(of: partition)
        let bytes = try await records(broker.bootstrap, "c.bp", format: "%S\n").compactMap { Int($0) }.reduce(0, +)
        #expect(worker.isRunning)
        #expect(held > 0 && held < 2500, "held at \(held) records")
        #expect(bytes <= retention, "unread bytes \(bytes) stay under the retention \(retention)")
        // The group commits as it reads; the connector follows and finishes.
        var worstBacklog = 0
        let deadline = ContinuousClock.now + .seconds(120)
        while worker.isRunning, ContinuousClock.now < deadline {
            let (_, high) = try await reader.watermarks(of: partition)
            try await reader.commit([TopicPartitionOffset(topic: "c.bp", partition: 0, offset: high)])
            try await Task.sleep(for: .milliseconds(300))
            let (_, after) = try await reader.watermarks(of: partition)
            worstBacklog = max(worstBacklog, Int(after - high))
        }
        await reader.close()
        #expect(await worker.wait(timeout: .seconds(10)) == 0, "\(worker.stderr)")
        let keys = try await records(broker.bootstrap, "c.bp", format: "%k\n")
        #expect(Set(keys).count == 2500)
        print("backpressure: held at \(held) records (\(bytes) bytes) of a \(retention)-byte retention; worst backlog while reading \(worstBacklog) records")
    }

    @Test func aStaticSourceHeaderNamesTheSourceInThePipeline() async throws {
        let broker = try BrokerProcess(arguments: [
            "--topic", "c.header:2", "--topic", "sluice.dlq:1", "--topic", "sluice.shards:1", "--topic", "sluice.rejected:1",
        ])
        defer { _ = broker.stop() }
        let directory = temporaryOutput("connect-header")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try connectorFile(directory, "header", "name: header\ntype: stdin\ntopic: c.header\nheaders:\n  source: crawler-7\n")
        let lines = (0..<20).map { "{\"id\":\"h\($0)\",\"text\":\"A plain paragraph number \($0) about the river authority and the old bridge, long enough to keep.\"}" }
        let sent = try await connect(broker.bootstrap, [config], input: lines.joined(separator: "\n") + "\n")
        #expect(sent.status == 0, "\(sent.stderr)")
        let output = directory.appendingPathComponent("out")
        let pipeline = try await runProcess(
            sluiceExecutable.path,
            ["pipeline", "--bootstrap", broker.bootstrap, "--topic", "c.header", "--output", output.path, "--group", "header",
             "--exit-at-end", "--log-level", "error"], timeout: .seconds(120))
        #expect(pipeline.status == 0, "\(pipeline.stderr)")
        let index = try DatabaseQueue(path: output.appendingPathComponent("index.sqlite").path)
        let sources = try await index.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT source FROM samples") }
        #expect(sources == ["crawler-7"], "the header stands in for the missing envelope source: \(sources)")
    }
}
