import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SluiceGRPC
import Testing

/// `sluice serve` as a real process over HTTP.
@Suite("sluice serve: the inference gateway", .serialized, .timeLimit(.minutes(4)))
struct GatewayTests {
    final class Server: @unchecked Sendable {
        let process = Process()
        let port: Int
        /// The first `lines` lines the server printed (its addresses).
        let output: String
        private let pipe = Pipe()

        init(_ arguments: [String], lines: Int = 1) throws {
            process.executableURL = sluiceExecutable
            process.arguments = ["serve", "--port", "0"] + arguments
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            try process.run()
            var buffer = Data()
            while buffer.count(where: { $0 == 0x0A }) < lines {
                let chunk = pipe.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
            }
            output = String(decoding: buffer, as: UTF8.self)
            // The HTTP address (a gRPC one may come first).
            let line = output.split(separator: "\n").first { $0.hasPrefix("http") } ?? ""
            guard let port = line.split(separator: ":").last.flatMap({ Int($0) }) else { throw HTTPTestError.connect }
            self.port = port
        }

        func stop() {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// A curated directory and an untrained 4-layer, d=128, context-128 model (decoding is slow enough in a
    /// debug build to hold a sequence busy while another request arrives).
    static func fixture(_ directory: URL) async throws -> (curated: String, model: String) {
        let words = ["river", "garden", "library", "station", "harbour", "mountain", "village", "market", "bridge", "forest"]
        let lines = (0..<40).map { i in
            "{\"id\":\"doc-\(i)\",\"text\":\"The \(words[i % 10]) \(i) is where the people of the town meet, and they have many stories to tell about it. \((0..<30).map { words[($0 * 7 + i) % 10] + String($0 * 13 + i) }.joined(separator: " ")).\"}"
        }
        let input = directory.appendingPathComponent("in.jsonl")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: input)
        let curated = directory.appendingPathComponent("curated").path
        #expect(try await runProcess(sluiceExecutable.path, ["curate", "--input", input.path, "--output", curated, "--quiet"]).status == 0)
        let model = directory.appendingPathComponent("model").path
        let trained = try await runProcess(
            sluiceExecutable.path, ["train", "--shards", curated, "--output", model, "--steps", "1", "--batch", "1", "--holdout", "5"])
        #expect(trained.status == 0, "\(trained.stderr)")
        return (curated, model + "/checkpoints/step-00000001")
    }

    /// A fresh directory with the curated fixture and its model.
    static func setUp(_ name: String) async throws -> (URL, String, String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let (curated, model) = try await fixture(directory)
        return (directory, curated, model)
    }

    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    @Test func everyRouteAuthLimitsAndBatching() async throws {
        let (directory, curated, model) = try await GatewayTests.setUp("gateway")
        defer { try? FileManager.default.removeItem(at: directory) }
        let keys = directory.appendingPathComponent("keys")
        try Data("# gateway keys\nsecret-one\nsha256:\(Self.sha256("secret-two")) admin\n".utf8).write(to: keys)
        let server = try Server([
            "--model", model, "--shards", curated, "--api-keys", keys.path, "--slots", "1", "--queue", "0", "--max-tokens", "127",
            "--max-body", "2048", "--score-delay-ms", "200",
        ])
        defer { server.stop() }
        let port = server.port
        let auth = ["Authorization": "Bearer secret-one", "Content-Type": "application/json"]
        func post(_ path: String, _ body: String, headers: [String: String] = auth) async throws -> (Int, String, String) {
            try await httpRequest(port: port, method: "POST", path: path, headers: headers, body: Array(body.utf8))
        }

        // Health and readiness need no key; everything under /v1 does.
        #expect(try await httpGet(port: port, path: "/healthz").0 == 200)
        let ready = try await httpGet(port: port, path: "/readyz")
        #expect(ready.0 == 200 && ready.1.contains("step-00000001"))
        let anonymous = try await httpRequest(port: port, method: "GET", path: "/v1/models")
        #expect(anonymous.0 == 401 && anonymous.1.lowercased().contains("www-authenticate: bearer"))
        #expect(try await httpRequest(port: port, method: "GET", path: "/v1/models", headers: ["Authorization": "Bearer wrong"]).0 == 401)
        let models = try await httpRequest(port: port, method: "GET", path: "/v1/models", headers: ["Authorization": "Bearer secret-two"])
        #expect(models.0 == 200 && models.2.contains("\"dim\":128"), "a key stored as its SHA-256 works too")
        // Admin routes need a key marked admin: 403 for another valid key, 409 (no canary) for the admin key.
        #expect(try await httpRequest(port: port, method: "POST", path: "/v1/admin/promote", headers: ["Authorization": "Bearer secret-one"]).0 == 403)
        #expect(try await httpRequest(port: port, method: "POST", path: "/v1/admin/promote", headers: ["Authorization": "Bearer secret-two"]).0 == 409)

        // Greedy completions are repeatable and honour max_tokens and stop.
        let request = #"{"prompt":"The river ","max_tokens":20,"temperature":0}"#
        let first = try await post("/v1/completions", request), second = try await post("/v1/completions", request)
        #expect(first.0 == 200, "\(first.2)")
        let choice = ((Self.json(first.2)["choices"] as? [[String: Any]])?.first) ?? [:]
        let text = choice["text"] as? String ?? ""
        #expect((Self.json(first.2)["usage"] as? [String: Any])?["completion_tokens"] as? Int == 20 && choice["finish_reason"] as? String == "length")
        #expect(((Self.json(second.2)["choices"] as? [[String: Any]])?.first?["text"] as? String) == text)
        if let firstCharacter = text.first {
            let stopped = try await post("/v1/completions", #"{"prompt":"The river ","max_tokens":20,"temperature":0,"stop":\#(String(reflecting: String(firstCharacter)))}"#)
            let stoppedChoice = (Self.json(stopped.2)["choices"] as? [[String: Any]])?.first ?? [:]
            #expect(stoppedChoice["finish_reason"] as? String == "stop" && stoppedChoice["text"] as? String == "", "\(stopped.2)")
        }
        // Streaming: server-sent events ending in [DONE].
        let streamed = try await post("/v1/completions", #"{"prompt":"The river ","max_tokens":5,"temperature":0,"stream":true}"#)
        #expect(streamed.0 == 200 && streamed.1.lowercased().contains("text/event-stream"))
        // Up to one event per token (bytes of an unfinished UTF-8 character wait for the next) and a final one.
        let events = streamed.2.components(separatedBy: "data: {").count - 1
        #expect(events >= 1 && events <= 6 && streamed.2.contains("data: [DONE]") && streamed.2.contains("\"finish_reason\":\"length\""), "\(streamed.2)")

        // Validation and limits.
        for (body, message) in [
            (#"{"prompt":3}"#, "prompt must be a string"), (#"{"prompt":"a","max_tokens":128}"#, "max_tokens"),
            (#"{"prompt":"a","temperature":3}"#, "temperature"), (#"{"prompt":"a","stream":1}"#, "stream"), ("not json", "JSON object"),
            (#"{"input":[]}"#, "input"),
        ] {
            let path = body.contains("input") ? "/v1/score" : "/v1/completions"
            let answer = try await post(path, body)
            #expect(answer.0 == 400 && answer.2.contains(message), "\(body): \(answer.2)")
        }
        #expect(try await post("/v1/completions", "{\"prompt\":\"\(String(repeating: "x", count: 3000))\"}").0 == 413)

        // One sequence at a time and no queue: of six long requests sent at once, those that arrive while another
        // generates are refused at once with 429 and Retry-After; none waits, none fails otherwise.
        let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for _ in 0..<6 {
                group.addTask {
                    let answer = try await post("/v1/completions", #"{"prompt":"The","max_tokens":127,"temperature":0}"#)
                    return (answer.0, answer.1)
                }
            }
            var all: [(Int, String)] = []
            for try await answer in group { all.append(answer) }
            return all
        }
        #expect(answers.allSatisfy { $0.0 == 200 || $0.0 == 429 } && answers.contains { $0.0 == 200 }, "\(answers.map(\.0))")
        // On a loaded machine the six may arrive one after another; when one is refused, it says when to retry.
        // (GenerationSchedulerTests checks the refusal itself without timing.)
        #expect(answers.filter { $0.0 == 429 }.allSatisfy { $0.1.lowercased().contains("retry-after: 1") })

        // Scoring: perplexity and quality for each input, batched across concurrent requests.
        let scored = try await post("/v1/score", #"{"input":["The river runs through the town, and the people meet there.","zzzz qqqq"]}"#)
        let data = Self.json(scored.2)["data"] as? [[String: Any]] ?? []
        #expect(scored.0 == 200 && data.count == 2 && (data[0]["perplexity"] as? Double ?? 0) > 1 && data[0]["language"] as? String == "en")
        try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<16 { group.addTask { try await post("/v1/score", "{\"input\":\"text number \(i) about a river\"}").0 } }
            for try await status in group { #expect(status == 200) }
        }
        let metrics = try await httpGet(port: port, path: "/metrics").1
        let batches = metrics.split(separator: "\n").first { $0.hasPrefix("sluice_gateway_score_batches_total") }
        let texts = metrics.split(separator: "\n").first { $0.hasPrefix("sluice_gateway_scored_texts_total") }
        #expect(texts?.hasSuffix(" 18") == true, "\(texts ?? "")")
        #expect((batches?.split(separator: " ").last.flatMap { Int($0) } ?? 99) < 18, "concurrent texts share batches: \(batches ?? "")")
        #expect(metrics.contains("sluice_gateway_requests_total{route=\"/v1/completions\",status=\"400\"}"))
        // The batch-size histograms count every batch: as many scoring batches as the counter, 18 texts in all.
        #expect(metrics.contains("sluice_gateway_score_batch_size_sum 18"), "\(metrics)")
        #expect(metrics.contains("sluice_gateway_score_batch_size_count \(batches?.split(separator: " ").last ?? "")"))
        #expect(metrics.contains("sluice_gateway_decode_batch_size_bucket{le=\"+Inf\"}"))

        // Curated samples and shards.
        let shards = try await httpRequest(port: port, method: "GET", path: "/v1/shards", headers: auth)
        #expect(shards.0 == 200 && shards.2.contains("\"samples\":"))
        let sample = try await httpRequest(port: port, method: "GET", path: "/v1/samples/0000000001", headers: auth)
        #expect(sample.0 == 200 && sample.2.contains("\"text\":\"The river 0 is where"), "\(sample.2)")
        #expect(try await httpRequest(port: port, method: "GET", path: "/v1/samples/nope", headers: auth).0 == 404)
    }

    static func sha256(_ text: String) -> String {
        let result = try? runBlocking { try await runProcess("/usr/bin/sha256sum", [], input: text) }
        return String((result?.stdout ?? "").prefix(64))
    }
}

@Suite("sluice serve: model swap under load", .serialized, .timeLimit(.minutes(4)))
struct GatewaySwapTests {
    @Test func swapsModelsWithoutFailingARequest() async throws {
        let (directory, curated, first) = try await GatewayTests.setUp("swap")
        defer { try? FileManager.default.removeItem(at: directory) }
        let secondDirectory = directory.appendingPathComponent("second").path
        let trained = try await runProcess(
            sluiceExecutable.path,
            ["train", "--shards", curated, "--output", secondDirectory, "--steps", "1", "--batch", "1", "--holdout", "5", "--seed", "2"])
        #expect(trained.status == 0, "\(trained.stderr)")
        let second = secondDirectory + "/checkpoints/step-00000001"
        let broker = try BrokerProcess(arguments: ["--topic", "sluice.models:1", "--topic", "raw.web:2"])
        defer { _ = broker.stop() }
        try await produce((0..<30).map { "k\($0)|{\"id\":\"\($0)\",\"text\":\"x\"}" }, topic: "raw.web", bootstrap: broker.bootstrap)
        let server = try GatewayTests.Server(["--model", first, "--bootstrap", broker.bootstrap, "--slots", "4"])
        defer { server.stop() }
        let port = server.port

        // Clients keep generating while the new model is announced halfway.
        let statuses = LockedBox<[Int]>([])
        let versions = LockedBox<[String]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<4 {
                group.addTask {
                    for i in 0..<12 {
                        let (status, _, body) = try await httpRequest(
                            port: port, method: "POST", path: "/v1/completions",
                            body: Array("{\"prompt\":\"client \(client) request \(i)\",\"max_tokens\":40,\"temperature\":0}".utf8))
                        statuses.mutate { $0.append(status) }
                        if let version = GatewayTests.json(body)["model_version"] as? String { versions.mutate { $0.append(version) } }
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: .milliseconds(300))
                let event = """
                    {"version":2,"status":"accepted","request":"r2","reasons":[],"checkpoint":"\(second)","model":"\(second)/model.safetensors",\
                    "validation_loss":5.5,"validation_windows":1,"steps":1,"tokens":1,"shards":1,"replay_shards":0,"created_at":""}
                    """
                try await produce(["v2|" + event], topic: "sluice.models", bootstrap: broker.bootstrap)
            }
            try await group.waitForAll()
        }
        #expect(statuses.get().count == 48 && statuses.get().allSatisfy { $0 == 200 }, "\(statuses.get())")
        // Wait for the swap to show (the follower polls), then new requests use the new model.
        var swapped = false
        for _ in 0..<100 where !swapped {
            swapped = try await httpGet(port: port, path: "/readyz").1.contains("second")
            if !swapped { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(swapped, "the gateway announces the new model")
        let after = try await httpRequest(
            port: port, method: "POST", path: "/v1/completions", body: Array(#"{"prompt":"after","max_tokens":3}"#.utf8))
        #expect(after.0 == 200 && (GatewayTests.json(after.2)["model_version"] as? String ?? "").contains("second"))
        #expect(Set(versions.get()).count <= 2 && versions.get().first == "step-00000001", "\(Set(versions.get()))")

        // The gateway samples the cluster's topics: records written per topic, in /metrics and on the dashboard.
        var metrics = ""
        for _ in 0..<80 where !metrics.contains("sluice_gateway_topic_records{topic=\"sluice.models\"} 1") {
            try await Task.sleep(for: .milliseconds(250))
            metrics = try await httpGet(port: port, path: "/metrics").1
        }
        #expect(metrics.contains("sluice_gateway_topic_records{topic=\"raw.web\"} 30"), "\(metrics)")
        #expect(metrics.contains("sluice_gateway_topic_records{topic=\"sluice.models\"} 1"))
        let page = try await httpGet(port: port, path: "/").1
        #expect(page.contains("Records/s by topic") && page.contains("raw.web: 30"), "\(page)")
    }
}

@Suite("sluice serve: per-key rate limits", .serialized, .timeLimit(.minutes(3)))
struct GatewayRateLimitTests {
    @Test func eachKeyHasItsOwnBucket() async throws {
        let (directory, _, model) = try await GatewayTests.setUp("rate")
        defer { try? FileManager.default.removeItem(at: directory) }
        let keys = directory.appendingPathComponent("keys")
        try Data("alpha\nbeta\n".utf8).write(to: keys)
        // One request per 5 s with a burst of 1: the second request right after the first is refused, however slow
        // the machine is.
        let server = try GatewayTests.Server(["--model", model, "--api-keys", keys.path, "--rate-limit", "0.2"])
        defer { server.stop() }
        var statuses: [Int] = []
        var retryAfter = false
        for _ in 0..<3 {
            let answer = try await httpRequest(port: server.port, method: "GET", path: "/v1/models", headers: ["Authorization": "Bearer alpha"])
            statuses.append(answer.0)
            if answer.0 == 429 { retryAfter = retryAfter || answer.1.lowercased().contains("retry-after:") }
        }
        // The burst passes, then the key is limited; another key is not.
        #expect(statuses.first == 200 && statuses.contains(429) && retryAfter, "\(statuses)")
        #expect(try await httpRequest(port: server.port, method: "GET", path: "/v1/models", headers: ["Authorization": "Bearer beta"]).0 == 200)
        #expect(try await httpGet(port: server.port, path: "/healthz").0 == 200, "health checks are never limited")
    }
}

@Suite("sluice serve: guardrails", .serialized, .timeLimit(.minutes(3)))
struct GatewayGuardrailTests {
    @Test func personalDataPolicyPerKeyAndABlocklist() async throws {
        let (directory, _, model) = try await GatewayTests.setUp("guard")
        defer { try? FileManager.default.removeItem(at: directory) }
        let keys = directory.appendingPathComponent("keys"), blocklist = directory.appendingPathComponent("blocklist")
        try Data("alpha pii=reject\nbeta pii=redact\ngamma\n".utf8).write(to: keys)
        try Data("# terms\nforbidden word\n".utf8).write(to: blocklist)
        let server = try GatewayTests.Server(["--model", model, "--api-keys", keys.path, "--blocklist", blocklist.path])
        defer { server.stop() }
        func complete(_ key: String, _ prompt: String) async throws -> (Int, [String: Any]) {
            let answer = try await httpRequest(
                port: server.port, method: "POST", path: "/v1/completions", headers: ["Authorization": "Bearer \(key)"],
                body: Array("{\"prompt\":\(String(reflecting: prompt)),\"max_tokens\":2}".utf8))
            return (answer.0, GatewayTests.json(answer.2))
        }
        let prompt = "Write to jane.doe@example.com today"
        let rejected = try await complete("alpha", prompt)
        #expect(rejected.0 == 400 && "\(rejected.1)".contains("personal data (email)"), "\(rejected.1)")
        // The redacted prompt is what the model sees: its length shows in usage.
        let redacted = try await complete("beta", prompt)
        #expect(redacted.0 == 200 && (redacted.1["usage"] as? [String: Any])?["prompt_tokens"] as? Int == "Write to [EMAIL] today".utf8.count, "\(redacted.1)")
        let allowed = try await complete("gamma", prompt)
        #expect((allowed.1["usage"] as? [String: Any])?["prompt_tokens"] as? Int == prompt.utf8.count)
        let blocked = try await complete("gamma", "Say the Forbidden Word now")
        #expect(blocked.0 == 400 && "\(blocked.1)".contains("blocked term"))
        let metrics = try await httpGet(port: server.port, path: "/metrics").1
        #expect(metrics.contains("sluice_gateway_guardrail_total{kind=\"pii_rejected\"} 1"))
        #expect(metrics.contains("sluice_gateway_guardrail_total{kind=\"pii_redacted_prompt\"} 1"))
        #expect(metrics.contains("sluice_gateway_guardrail_total{kind=\"blocked_prompt\"} 1"))
    }
}

@Suite("sluice serve: canary and shadow", .serialized, .timeLimit(.minutes(5)))
struct GatewayCanaryTests {
    static func publish(_ checkpoint: String, version: Int, bootstrap: String) async throws {
        let event = """
            {"version":\(version),"status":"accepted","request":"r\(version)","reasons":[],"checkpoint":"\(checkpoint)","model":"\(checkpoint)/model.safetensors",\
            "validation_loss":5.5,"validation_windows":1,"steps":1,"tokens":1,"shards":1,"replay_shards":0,"created_at":""}
            """
        try await produce(["v\(version)|" + event], topic: "sluice.models", bootstrap: bootstrap)
    }

    static func waitFor(_ text: String, port: Int) async throws -> Bool {
        for _ in 0..<100 {
            if try await httpGet(port: port, path: "/v1/models").1.contains(text) { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    @Test func aCanaryTakesItsShareAndAShadowNeverAnswers() async throws {
        let (directory, curated, first) = try await GatewayTests.setUp("canary")
        defer { try? FileManager.default.removeItem(at: directory) }
        let secondDirectory = directory.appendingPathComponent("second").path
        _ = try await runProcess(
            sluiceExecutable.path,
            ["train", "--shards", curated, "--output", secondDirectory, "--steps", "1", "--batch", "1", "--holdout", "5", "--seed", "2"])
        let second = secondDirectory + "/checkpoints/step-00000001"

        // Canary: 30% of completions go to the announced model until it is promoted.
        let broker = try BrokerProcess(arguments: ["--topic", "sluice.models:1"])
        defer { _ = broker.stop() }
        let canary = try GatewayTests.Server(["--model", first, "--bootstrap", broker.bootstrap, "--canary", "30"])
        defer { canary.stop() }
        try await Self.publish(second, version: 2, bootstrap: broker.bootstrap)
        #expect(try await Self.waitFor("\"role\":\"canary\"", port: canary.port))
        let versions = LockedBox<[String]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<50 {
                        let answer = try await httpRequest(
                            port: canary.port, method: "POST", path: "/v1/completions", body: Array(#"{"prompt":"a","max_tokens":1}"#.utf8))
                        versions.mutate { $0.append(GatewayTests.json(answer.2)["model_version"] as? String ?? "?") }
                    }
                }
            }
            try await group.waitForAll()
        }
        let toCanary = versions.get().filter { $0.contains("second") }.count
        #expect(versions.get().count == 400 && abs(Double(toCanary) / 400 - 0.3) < 0.08, "\(toCanary) of 400 went to the canary")
        let promoted = try await httpRequest(port: canary.port, method: "POST", path: "/v1/admin/promote")
        #expect(promoted.0 == 200 && promoted.2.contains("second"))
        let after = try await httpRequest(port: canary.port, method: "POST", path: "/v1/completions", body: Array(#"{"prompt":"a","max_tokens":1}"#.utf8))
        #expect((GatewayTests.json(after.2)["model_version"] as? String ?? "").contains("second"))
        #expect(try await httpRequest(port: canary.port, method: "POST", path: "/v1/admin/promote").0 == 409, "nothing left to promote")

        // Shadow: the announced model runs on a copy of each completion; every answer comes from the current model.
        let shadowBroker = try BrokerProcess(arguments: ["--topic", "sluice.models:1"])
        defer { _ = shadowBroker.stop() }
        let shadow = try GatewayTests.Server(["--model", first, "--bootstrap", shadowBroker.bootstrap, "--shadow"])
        defer { shadow.stop() }
        try await Self.publish(second, version: 2, bootstrap: shadowBroker.bootstrap)
        #expect(try await Self.waitFor("\"role\":\"shadow\"", port: shadow.port))
        for _ in 0..<20 {
            let answer = try await httpRequest(
                port: shadow.port, method: "POST", path: "/v1/completions", body: Array(#"{"prompt":"the river","max_tokens":8,"temperature":0}"#.utf8))
            #expect(GatewayTests.json(answer.2)["model_version"] as? String == "step-00000001")
        }
        var compared = false
        for _ in 0..<50 where !compared {
            compared = try await httpGet(port: shadow.port, path: "/metrics").1.contains("sluice_gateway_shadow_completions_total 20")
            if !compared { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(compared, "each shadow completion is compared with its answer")
        let agreement = try await httpGet(port: shadow.port, path: "/metrics").1.split(separator: "\n")
            .first { $0.hasPrefix("sluice_gateway_shadow_agreement ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        #expect(agreement.map { (0...1).contains($0) } == true)
    }
}

@Suite("sluice serve: upstream backends", .serialized, .timeLimit(.minutes(4)))
struct GatewayUpstreamTests {
    static func backend(_ answer: (Int, String, String)) -> String {
        answer.1.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-sluice-backend:") }.map {
            $0.split(separator: ":", maxSplits: 1).last!.trimmingCharacters(in: .whitespaces)
        } ?? "?"
    }

    @Test func routesByWeightBreaksTheCircuitAndFallsBack() async throws {
        let (directory, _, model) = try await GatewayTests.setUp("upstream")
        defer { try? FileManager.default.removeItem(at: directory) }
        let upstream = try GatewayTests.Server(["--model", model])
        defer { upstream.stop() }
        let gateway = try GatewayTests.Server(["--model", model, "--upstream", "second=http://127.0.0.1:\(upstream.port),weight=1", "--local-weight", "1"])
        defer { gateway.stop() }
        let body = Array(#"{"prompt":"the river","max_tokens":2,"temperature":0}"#.utf8)
        var counts: [String: Int] = [:]
        for _ in 0..<100 {
            let answer = try await httpRequest(port: gateway.port, method: "POST", path: "/v1/completions", body: body)
            #expect(answer.0 == 200)
            counts[Self.backend(answer), default: 0] += 1
        }
        #expect((counts["second"] ?? 0) >= 30 && (counts["local"] ?? 0) >= 30 && counts.values.reduce(0, +) == 100, "\(counts)")
        let scored = try await httpRequest(port: gateway.port, method: "POST", path: "/v1/score", body: Array(#"{"input":"a river"}"#.utf8))
        #expect(scored.0 == 200 && scored.2.contains("\"perplexity\""))

        // The upstream dies: idempotent calls are retried elsewhere, its breaker opens, nothing fails.
        upstream.stop()
        var failures = 0
        for _ in 0..<40 {
            let answer = try await httpRequest(port: gateway.port, method: "POST", path: "/v1/completions", body: body)
            if answer.0 != 200 { failures += 1 }
            #expect(Self.backend(answer) == "local")
        }
        #expect(failures == 0)
        let metrics = try await httpGet(port: gateway.port, path: "/metrics").1
        #expect(metrics.contains("sluice_gateway_upstream_breaker_open{upstream=\"second\"} 1") || metrics.contains("sluice_gateway_upstream_healthy{upstream=\"second\"} 0"), "\(metrics.suffix(600))")
    }
}

@Suite("sluice serve: the dashboard in headless Chromium", .serialized, .timeLimit(.minutes(4)))
struct GatewayDashboardTests {
    static let artifacts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/test-artifacts")

    @Test func loadsWithoutConsoleErrorsAndShowsTheDataset() async throws {
        guard let chromium = which("chromium") ?? which("chromium-browser") else {
            print("skipped: no chromium on PATH (make test installs Debian's chromium when the package archive is reachable)")
            return
        }
        let (directory, curated, model) = try await GatewayTests.setUp("dashboard")
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try GatewayTests.Server(["--model", model, "--shards", curated])
        defer { server.stop() }
        // What the dashboard must show: the index's numbers, as the API reports them.
        let shards = GatewayTests.json(try await httpGet(port: server.port, path: "/v1/shards").1)["data"] as? [[String: Any]] ?? []
        let samples = shards.reduce(0) { $0 + ($1["samples"] as? Int ?? 0) }
        #expect(samples > 0)
        _ = try await httpRequest(port: server.port, method: "POST", path: "/v1/completions", body: Array(#"{"prompt":"a","max_tokens":4}"#.utf8))
        let url = "http://127.0.0.1:\(server.port)/"
        let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
                     "--user-data-dir=\(directory.appendingPathComponent("chromium").path)"]
        let dom = try await runProcess(chromium, flags + ["--dump-dom", url], timeout: .seconds(90))
        #expect(dom.status == 0, "\(dom.stderr.suffix(2000))")
        #expect(dom.stdout.contains("<span id=\"samples\">\(samples)</span>"), "the page shows \(samples) samples")
        #expect(dom.stdout.contains("<span id=\"shards\">\(shards.count)</span>"))
        #expect(dom.stdout.contains("<span id=\"generated\">4</span>"))
        #expect(dom.stdout.components(separatedBy: "<svg").count - 1 >= 7, "every chart is drawn")
        #expect(dom.stdout.contains("aria-label=\"Languages\"") && dom.stdout.contains(">en</text>"))
        let consoleErrors = dom.stderr.split(separator: "\n").filter { $0.contains("CONSOLE") && ($0.contains("Error") || $0.contains("Uncaught")) }
        #expect(consoleErrors.isEmpty, "\(consoleErrors)")
        try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
        let screenshot = Self.artifacts.appendingPathComponent("dashboard.png")
        try? FileManager.default.removeItem(at: screenshot)
        let shot = try await runProcess(
            chromium, flags + ["--screenshot=\(screenshot.path)", "--window-size=1280,1600", "--hide-scrollbars", url], timeout: .seconds(90))
        #expect(shot.status == 0 && ((try? FileManager.default.attributesOfItem(atPath: screenshot.path)[.size] as? Int) ?? 0) > 10_000,
                "a screenshot is kept in .build/test-artifacts/dashboard.png")
    }
}

@Suite("sluice serve: TLS", .serialized, .timeLimit(.minutes(3)))
struct GatewayTLSTests {
    @Test func servesHTTPSWithAGivenCertificate() async throws {
        guard let openssl = which("openssl"), let python = which("python3") else {
            print("skipped: no openssl or python3 on PATH")
            return
        }
        let (directory, _, model) = try await GatewayTests.setUp("tls")
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificate = directory.appendingPathComponent("cert.pem").path, key = directory.appendingPathComponent("key.pem").path
        let made = try await runProcess(openssl, [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
        ])
        #expect(made.status == 0, "\(made.stderr)")
        let server = try GatewayTests.Server(["--model", model, "--tls-certificate", certificate, "--tls-key", key, "--grpc-port", "0"], lines: 2)
        defer { server.stop() }
        // gRPC is served over TLS with the same certificate: a client that trusts it gets an answer.
        let grpcLine = try #require(server.output.split(separator: "\n").first { $0.hasPrefix("grpcs://") }, "\(server.output)")
        let grpcPort = try #require(Int(grpcLine.split(separator: ":").last ?? ""))
        try await withGRPCClient(
            transport: .http2NIOPosix(
                target: .ipv4(address: "127.0.0.1", port: grpcPort),
                transportSecurity: .tls { $0.trustRoots = .certificates([.file(path: certificate, format: .pem)]) })
        ) { client in
            var request = Sluice_V1_PredictRequest()
            request.inputText = "The river "
            request.metadata = ["max_tokens": "4"]
            let reply = try await Sluice_V1_ModelService.Client(wrapping: client).predict(request)
            #expect(reply.outputTokens.count == 4)
        }
        let script = """
            import json, ssl, sys, urllib.request
            context = ssl.create_default_context(cafile=sys.argv[2])
            base = f"https://127.0.0.1:{sys.argv[1]}"
            health = urllib.request.urlopen(base + "/healthz", context=context).read().decode()
            request = urllib.request.Request(base + "/v1/completions", data=b'{"prompt":"a","max_tokens":3}', headers={"Content-Type": "application/json"})
            answer = json.load(urllib.request.urlopen(request, context=context))
            print(health.strip(), answer["usage"]["completion_tokens"])
            """
        let run = try await runProcess(python, ["-c", script, String(server.port), certificate])
        #expect(run.status == 0 && run.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ok 3", "\(run.stdout) \(run.stderr)")
        // Plain HTTP to the TLS port does not get an answer.
        #expect((try? await httpGet(port: server.port, path: "/healthz"))?.0 != 200)
        let mismatched = try await runProcess(sluiceExecutable.path, ["serve", "--model", model, "--tls-certificate", certificate])
        #expect(mismatched.status != 0 && mismatched.stderr.contains("go together"))
    }
}

@Suite("sluice serve: gateway.yaml", .serialized, .timeLimit(.minutes(3)))
struct GatewayConfigFileTests {
    @Test func theFileConfiguresAndFlagsWin() async throws {
        let (directory, curated, model) = try await GatewayTests.setUp("gwconfig")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("gateway.yaml")
        try Data("model: \(model)\nport: 1\nshards: \(curated)\nmax_tokens: 7\nupstreams: []\n".utf8).write(to: file)
        // --port 0 wins over the file's port 1.
        let server = try GatewayTests.Server(["--config", file.path])
        defer { server.stop() }
        let models = try await httpGet(port: server.port, path: "/v1/shards")
        #expect(models.0 == 200, "shards: from the file")
        let tooMany = try await httpRequest(port: server.port, method: "POST", path: "/v1/completions", body: Array(#"{"prompt":"a","max_tokens":8}"#.utf8))
        #expect(tooMany.0 == 400 && tooMany.2.contains("1 to 7"), "max_tokens: from the file")
        try Data("model: \(model)\nports: 3\n".utf8).write(to: file)
        let wrong = try await runProcess(sluiceExecutable.path, ["serve", "--config", file.path])
        #expect(wrong.status != 0 && wrong.stderr.contains("ports") && wrong.stderr.contains("gateway.yaml"), "\(wrong.stderr)")
    }
}

@Suite("sluice serve: gRPC", .serialized, .timeLimit(.minutes(3)))
struct GatewayGRPCTests {
    @Test func predictAndPredictStreamShareTheGenerator() async throws {
        let (directory, _, model) = try await GatewayTests.setUp("grpc")
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try GatewayTests.Server(["--model", model, "--grpc-port", "0", "--max-tokens", "64"], lines: 2)
        defer { server.stop() }
        let grpcLine = try #require(server.output.split(separator: "\n").first { $0.hasPrefix("grpc://") }, "\(server.output)")
        let port = try #require(Int(grpcLine.split(separator: ":").last ?? ""))
        try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        ) { client in
            let service = Sluice_V1_ModelService.Client(wrapping: client)
            var request = Sluice_V1_PredictRequest()
            request.inputText = "The river "
            request.metadata = ["max_tokens": "12", "temperature": "0"]
            let reply = try await service.predict(request)
            #expect(reply.outputTokens.count == 12 && reply.finishReason == "length" && reply.modelVersion == "step-00000001")
            #expect(reply.confidenceScore > 0 && reply.confidenceScore <= 1, "mean token probability: \(reply.confidenceScore)")
            // The stream yields the same greedy tokens, then the end.
            let streamed = try await service.predictStream(request) { response in
                var pieces: [String] = [], finish = ""
                for try await message in response.messages {
                    pieces += message.outputTokens
                    if !message.finishReason.isEmpty { finish = message.finishReason }
                }
                return (pieces.joined(), finish)
            }
            #expect(streamed.0 == reply.outputTokens.joined() && streamed.1 == "length")
            request.metadata = ["max_tokens": "500"]
            await #expect(throws: RPCError.self) { try await service.predict(request) }
        }
    }
}
