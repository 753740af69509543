public import Foundation
public import Logging
public import SluiceTrain
internal import Hummingbird
internal import HummingbirdTLS
internal import HummingbirdCore
internal import HTTPTypes
internal import NIOSSL
internal import ServiceLifecycle
internal import SluiceShards
public import SluiceKafka
internal import SluiceText
internal import Synchronization

/// Settings of `sluice serve`.
public struct GatewayConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// SHA-256 (hex) of every accepted API key; empty: no authentication.
    public var apiKeyHashes: Set<String> = []
    public var maxBodyBytes = 1 << 20
    public var maxTokens = 1024
    /// Concurrent generation sequences (KV-cache slots) and the queue behind them.
    public var slots = 32
    public var generationQueue = 256
    /// Dynamic batching of /v1/score: texts per batch (1: off) and the longest wait for a batch to fill.
    public var scoreBatch = 32
    public var scoreDelay = 0.002
    public var scoreQueue = 4096
    /// Threads of one scoring pass.
    public var scoreThreads = 1
    /// A curated directory for /v1/shards and /v1/samples/{key}.
    public var shardsDirectory: URL?
    /// Requests per second per API key under /v1 (bursts of twice that); nil: no limit. Without keys, one bucket
    /// for everyone.
    public var rateLimit: Double?
    /// The longest a completion may take (queueing included) before it is cut off with 504.
    public var requestTimeout: Double = 60
    /// Keys (by hash) allowed to call `/v1/admin/…`; with API keys in use, any other key gets 403 there.
    public var adminKeyHashes: Set<String> = []
    /// Personal data in prompts and completions: the default action and per-key actions (by key hash).
    public var piiAction: PIIAction = .allow
    public var keyActions: [String: PIIAction] = [:]
    /// Terms (case-insensitive) that refuse a prompt and are masked in completions.
    public var blocklist: [String] = []
    /// A newly announced model first takes this percentage of completions (a canary) until promoted
    /// (`POST /v1/admin/promote`); 0: it replaces the current model at once.
    public var canaryPercent: Double = 0
    /// A newly announced model runs on a copy of every completion and is compared, never answering (shadow mode).
    public var shadow = false
    /// OpenAI-compatible upstreams beside the built-in model, and the built-in model's weight among them.
    public var upstreams: [UpstreamConfiguration] = []
    public var localWeight: Double = 1
    /// Where the served model came from (for the dashboard's validation curve).
    public var modelPath: String?
    /// PEM files of a certificate chain and its private key: serve HTTPS instead of HTTP.
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// A Kafka cluster whose topics' write rates the dashboard and `/metrics` show (sampled every 5 s).
    public var kafka: KafkaConfiguration?
    public init() {}

    /// One line of an API keys file: `KEY [pii=redact|reject|allow] [admin]`, the key plain or as `sha256:<hex>`.
    struct KeyLine {
        var hash: String
        var fields: [Substring]
    }

    /// The key lines of a file (`#` comments and blank lines skipped), each key hashed once.
    static func keyLines(_ text: String) -> [KeyLine] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let key = fields.first, !key.hasPrefix("#") else { return nil }
            let hash = key.hasPrefix("sha256:") ? String(key.dropFirst(7)).lowercased() : sha256Hex(Array(key.utf8))
            return KeyLine(hash: hash, fields: Array(fields.dropFirst()))
        }
    }

    /// Per-key PII actions from an API keys file: `KEY pii=redact|reject|allow` (or `sha256:<hex> pii=…`).
    public static func keyActions(fromFile text: String) throws -> [String: PIIAction] {
        var actions: [String: PIIAction] = [:]
        for line in keyLines(text) {
            for field in line.fields where field != "admin" {
                guard field.hasPrefix("pii="), let action = PIIAction(rawValue: String(field.dropFirst(4))) else {
                    throw GatewayError(.invalid, "API keys file: '\(field)' is not pii=redact, pii=reject, pii=allow or admin")
                }
                actions[line.hash] = action
            }
        }
        return actions
    }

    /// The keys marked `admin` in an API keys file (by hash): only they may call `/v1/admin/…` when keys are used.
    public static func adminKeys(fromFile text: String) -> Set<String> {
        Set(keyLines(text).filter { $0.fields.contains("admin") }.map(\.hash))
    }

    /// Reads an API keys file: one key per line (`#` comments), or `sha256:<hex>` for a key stored hashed.
    public static func keyHashes(fromFile text: String) -> Set<String> {
        Set(keyLines(text).map(\.hash))
    }
}


/// The inference gateway: OpenAI-style completions with continuous batching, scoring with dynamic batching,
/// curated samples and shards, health, readiness and Prometheus metrics, on Hummingbird.
public final class Gateway: @unchecked Sendable {
    // @unchecked: the model description is guarded by `state`; the schedulers are thread-safe.
    public let configuration: GatewayConfiguration
    public let generator: GenerationScheduler
    public let scorer: ScoreBatcher
    private let logger: Logger
    private let state: Mutex<ModelInfo>
    private let metrics = GatewayMetrics()
    private let index: ShardIndex?
    private let buckets = Mutex<[String: TokenBucket]>([:])
    public let guardrails: Guardrails
    private let upstreamRouter: UpstreamRouter?
    /// Write rates of the cluster's topics, when `configuration.kafka` is set.
    public let topicActivity: TopicActivity?
    private let serviceGroup = Mutex<ServiceGroup?>(nil)

    /// Stops accepting connections, lets requests in progress finish, then returns from ``run(onListening:)``.
    public func shutdown() async {
        guard let group = serviceGroup.withLock({ $0 }) else { return }
        await group.triggerGracefulShutdown()
    }
    /// The canary model (kept to hand to the scorer on promotion) and traffic counts by role and version.
    private let canaryModel = Mutex<(GPT, Float?)?>(nil)
    private let traffic = Mutex<(byModel: [String: Int], shadow: Int, shadowRefused: Int, agreementSum: Double)>(([:], 0, 0, 0))

    struct ModelInfo: Sendable {
        var version: String
        var configuration: GPTConfiguration
        var validationLoss: Float?
    }

    public init(model: GPT, version: String, validationLoss: Float?, configuration: GatewayConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        generator = GenerationScheduler(model: model, version: version, slots: configuration.slots, maxQueue: configuration.generationQueue)
        let scoring = GPT(configuration: model.configuration, parameters: model.allParameters)
        scorer = ScoreBatcher(model: scoring, maxBatch: configuration.scoreBatch, maxDelay: configuration.scoreDelay, maxQueue: configuration.scoreQueue,
            threads: configuration.scoreThreads)
        state = Mutex(ModelInfo(version: version, configuration: model.configuration, validationLoss: validationLoss))
        guardrails = try Guardrails(defaultAction: configuration.piiAction, keyActions: configuration.keyActions, blocklist: configuration.blocklist)
        upstreamRouter = configuration.upstreams.isEmpty
            ? nil : UpstreamRouter(upstreams: configuration.upstreams, localWeight: configuration.localWeight)
        topicActivity = try configuration.kafka.map { try TopicActivity(kafka: $0) }
        if let directory = configuration.shardsDirectory {
            index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
        } else {
            index = nil
        }
    }

    /// A model announced on the models topic: a canary, a shadow or the new model, as configured.
    public func announce(_ model: GPT, version: String, validationLoss: Float?) {
        if configuration.canaryPercent > 0 {
            generator.set(.canary, model, version: version)
            canaryModel.withLock { $0 = (model, validationLoss) }
            logger.notice("canary \(version) takes \(configuration.canaryPercent)% of completions")
        } else if configuration.shadow {
            generator.set(.shadow, model, version: version)
            logger.notice("shadow \(version) runs on a copy of every completion")
        } else {
            swap(to: model, version: version, validationLoss: validationLoss)
        }
    }

    /// Serves new requests with `model`; requests already generating finish on the old one.
    public func swap(to model: GPT, version: String, validationLoss: Float?) {
        generator.swap(to: model, version: version)
        scorer.swap(to: GPT(configuration: model.configuration, parameters: model.allParameters))
        state.withLock { $0 = ModelInfo(version: version, configuration: model.configuration, validationLoss: validationLoss) }
        logger.notice("serving model \(version)")
    }

    /// Runs the HTTP server until the task is cancelled. `onListening` gets the bound port.
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let router = Router()
        router.get("/healthz") { _, _ in Self.text("ok\n") }
        router.get("/") { [self] _, _ in Self.text(dashboard(), contentType: "text/html; charset=utf-8") }
        router.get("/readyz") { [self] _, _ in
            let version = state.withLock { $0.version }
            return Self.json(.ok, "{\"ready\":true,\"model\":\(JSONText.string(version))}")
        }
        router.get("/metrics") { [self] _, _ in Self.text(metricsText(), contentType: "text/plain; version=0.0.4") }
        router.get("/v1/models") { [self] request, _ in
            await measured("/v1/models") { [self] in
                if let refusal = authorize(request) { return refusal }
                let info = state.withLock { $0 }
                let loss = info.validationLoss.map { ",\"validation_loss\":\($0),\"validation_perplexity\":\(exp(Double($0)))" } ?? ""
                var extra = ""
                if let canary = generator.canaryVersion {
                    extra += ",{\"id\":\"sluice-canary\",\"object\":\"model\",\"owned_by\":\"sluice\",\"version\":\(JSONText.string(canary)),\"role\":\"canary\",\"percent\":\(configuration.canaryPercent)}"
                }
                if let shadow = generator.shadowVersion {
                    extra += ",{\"id\":\"sluice-shadow\",\"object\":\"model\",\"owned_by\":\"sluice\",\"version\":\(JSONText.string(shadow)),\"role\":\"shadow\"}"
                }
                return Self.json(.ok, """
                    {"object":"list","data":[{"id":"sluice","object":"model","owned_by":"sluice","version":\(JSONText.string(info.version)),"role":"stable",\
                    "layers":\(info.configuration.layers),"dim":\(info.configuration.channels),"context":\(info.configuration.contextLength)\(loss)}\(extra)]}
                    """)
            }
        }
        router.post("/v1/admin/promote") { [self] request, _ in
            await measured("/v1/admin/promote") { [self] in
                if let refusal = authorize(request) { return refusal }
                if !configuration.apiKeyHashes.isEmpty && !configuration.adminKeyHashes.contains(clientID(request)) {
                    return Self.error(.forbidden, "this key may not call admin routes (mark a key with 'admin' in the keys file)")
                }
                guard let (model, loss) = canaryModel.withLock({ $0 }), let version = generator.canaryVersion else {
                    return Self.error(.conflict, "there is no canary to promote")
                }
                generator.promoteCanary()
                scorer.swap(to: GPT(configuration: model.configuration, parameters: model.allParameters))
                state.withLock { $0 = ModelInfo(version: version, configuration: model.configuration, validationLoss: loss) }
                canaryModel.withLock { $0 = nil }
                return Self.json(.ok, "{\"promoted\":\(JSONText.string(version))}")
            }
        }
        router.post("/v1/completions") { [self] request, _ in
            await measured("/v1/completions") { [self] in await routed(request, path: "/v1/completions") }
        }
        router.post("/v1/score") { [self] request, _ in
            await measured("/v1/score") { [self] in await routed(request, path: "/v1/score") }
        }
        router.get("/v1/shards") { [self] request, _ in
            await measured("/v1/shards") { [self] in
                if let refusal = authorize(request) { return refusal }
                guard let index else { return Self.error(.notFound, "this gateway serves no curated directory (start it with --shards DIR)") }
                guard let shards = try? index.shards() else { return Self.error(.internalServerError, "cannot read the index") }
                let items = shards.map {
                    "{\"name\":\(JSONText.string($0.name)),\"path\":\(JSONText.string($0.fileName)),\"samples\":\($0.samples),\"stored_bytes\":\($0.storedBytes),\"sha256\":\"\($0.sha256)\",\"sealed_at\":\(JSONText.string($0.sealedAt))}"
                }
                return Self.json(.ok, "{\"object\":\"list\",\"data\":[\(items.joined(separator: ","))]}")
            }
        }
        router.get("/v1/samples/{key}") { [self] request, context in
            await measured("/v1/samples") { [self] in
                if let refusal = authorize(request) { return refusal }
                guard let index, let directory = configuration.shardsDirectory else {
                    return Self.error(.notFound, "this gateway serves no curated directory (start it with --shards DIR)")
                }
                let key = context.parameters.get("key") ?? ""
                let found: (shard: ShardRecord, sample: SampleLocation)?
                do { found = try index.location(ofKey: key) } catch { return Self.error(.internalServerError, "cannot read the index") }
                guard let (shard, location) = found else { return Self.error(.notFound, "no sample with key \(key)") }
                if let deleted = location.deletedAt { return Self.error(.gone, "sample \(key) was deleted at \(deleted)") }
                do {
                    let sample = try ShardReader.sample(at: location, in: directory.appendingPathComponent(shard.fileName), format: shard.format)
                    let metadata = sample.json.isEmpty ? "null" : String(decoding: sample.json, as: UTF8.self)
                    return Self.json(.ok, "{\"key\":\(JSONText.string(key)),\"shard\":\(JSONText.string(shard.name)),\"text\":\(JSONText.string(String(decoding: sample.text, as: UTF8.self))),\"metadata\":\(metadata)}")
                } catch {
                    return Self.error(.internalServerError, "cannot read sample \(key): \(error)")
                }
            }
        }
        let host = configuration.host
        var server = HTTPServerBuilder.http1()
        if let certificate = configuration.tlsCertificate, let key = configuration.tlsKey {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(.http1(), tlsConfiguration: tls)
        }
        let app = Application(
            router: router, server: server, configuration: .init(address: .hostname(host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        serviceGroup.withLock { $0 = group }
        let sampling = topicActivity.map { activity in
            Task { [logger] in await activity.run { logger.warning("could not sample topic watermarks: \($0)") } }
        }
        defer { sampling?.cancel() }
        try await group.run()
        generator.stop()
        scorer.stop()
        await upstreamRouter?.shutdown()
    }

    // MARK: Handlers

    /// Auth and body, then the built-in model or an upstream (weighted, healthy, breaker closed); an idempotent call
    /// (scoring, or a completion at temperature 0 or with a seed) is retried once on another backend, and the
    /// built-in model is the fallback when no upstream can answer. Streaming completions stay local.
    private func routed(_ request: Request, path: String) async -> Response {
        let client = clientID(request)
        if let refusal = authorize(request, client: client) { return refusal }
        let object: [String: Any], buffer: ByteBuffer
        switch await body(request) {
        case .failure(let failure): return failure.response
        case .success(let value): (object, buffer) = value
        }
        func local() async -> Response {
            var response = path == "/v1/score" ? await score(object: object) : await completions(object: object, client: client)
            if upstreamRouter != nil { response.headers[HTTPField.Name("X-Sluice-Backend")!] = "local" }
            return response
        }
        guard let upstreams = upstreamRouter, !(JSONValue.boolean(object["stream"] ?? false) ?? false) else { return await local() }
        let idempotent = path == "/v1/score" || object["seed"] != nil || JSONValue.number(object["temperature"] ?? 1) == 0
        var attempts = 0
        for candidate in upstreams.plan(now: Date().timeIntervalSince1970) {
            guard let index = candidate else { return await local() }
            guard upstreams.allow(index, now: Date().timeIntervalSince1970) else { continue }
            attempts += 1
            if let (status, headers, body) = await upstreams.forward(index, path: path, body: buffer, timeout: configuration.requestTimeout) {
                var fields = HTTPFields()
                fields[.contentType] = headers.first { $0.0.lowercased() == "content-type" }?.1 ?? "application/json"
                fields[HTTPField.Name("X-Sluice-Backend")!] = upstreams.name(index)
                return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: body))
            }
            if !idempotent || attempts >= 2 { break }
        }
        if upstreams.localWeight > 0 || attempts > 0 { return await local() }
        return Self.error(.serviceUnavailable, "no backend can answer")
    }

    private func completions(object: [String: Any], client: String) async -> Response {
        guard var prompt = object["prompt"] as? String else { return Self.error(.badRequest, "prompt must be a string") }
        switch guardrails.prompt(prompt, client: client) {
        case .refuse(let reason): return Self.error(.badRequest, reason)
        case .pass(let checked): prompt = checked
        }
        var maxTokens = 16
        if let value = object["max_tokens"] {
            guard let number = JSONValue.integer(value), number >= 1, number <= configuration.maxTokens else {
                return Self.error(.badRequest, "max_tokens must be an integer from 1 to \(configuration.maxTokens)")
            }
            maxTokens = number
        }
        var temperature: Float = 1
        if let value = object["temperature"] {
            guard let number = JSONValue.number(value).map(Float.init), number >= 0, number <= 2 else {
                return Self.error(.badRequest, "temperature must be a number from 0 to 2")
            }
            temperature = number
        }
        var topP: Float = 1
        if let value = object["top_p"] {
            guard let number = JSONValue.number(value).map(Float.init), number > 0, number <= 1 else {
                return Self.error(.badRequest, "top_p must be a number in (0, 1]")
            }
            topP = number
        }
        var stop: [[UInt8]] = []
        if let value = object["stop"] {
            if let single = value as? String { stop = [Array(single.utf8)] } else if let many = value as? [String], many.count <= 4 {
                stop = many.map { Array($0.utf8) }
            } else {
                return Self.error(.badRequest, "stop must be a string or an array of up to 4 strings")
            }
        }
        var seed = UInt64.random(in: 0...UInt64.max)
        if let value = object["seed"] {
            guard let number = JSONValue.integer(value) else { return Self.error(.badRequest, "seed must be an integer") }
            seed = UInt64(bitPattern: Int64(number))
        }
        var streaming = false
        if let value = object["stream"] {
            guard let flag = JSONValue.boolean(value) else { return Self.error(.badRequest, "stream must be true or false") }
            streaming = flag
        }
        let events: AsyncStream<GenerationScheduler.Event>
        let generationRequest = GenerationScheduler.Request(
            prompt: Array(prompt.utf8), maxTokens: maxTokens, sampler: TokenSampler(temperature: temperature, topP: topP, seed: seed),
            stop: stop)
        let role: GenerationScheduler.Role =
            generator.canaryVersion != nil && Double.random(in: 0..<100) < configuration.canaryPercent ? .canary : .stable
        let comparison = generator.shadowVersion != nil ? startShadow(generationRequest) : nil
        do {
            events = try generator.submit(generationRequest, role: role)
        } catch {
            return error.kind == .queueFull
                ? Self.error(.tooManyRequests, error.reason, headers: [.retryAfter: "1"]) : Self.error(.serviceUnavailable, error.reason)
        }
        let id = "cmpl-\(UUID().uuidString.prefix(12).lowercased())"
        let created = Int(Date().timeIntervalSince1970)
        if streaming {
            let guardrails = self.guardrails
            let body = ResponseBody { [weak self] writer in
                var pending: [UInt8] = [], all: [UInt8] = []
                for await event in events {
                    switch event {
                    case .bytes(let bytes):
                        pending += bytes
                        all += bytes
                        let ready = UTF8Chunks.completePrefix(pending)
                        guard ready > 0 else { continue }
                        let text = guardrails.completion(String(decoding: pending[..<ready], as: UTF8.self), client: client)
                        pending.removeFirst(ready)
                        try await writer.write(ByteBuffer(string: "data: {\"id\":\"\(id)\",\"object\":\"text_completion\",\"created\":\(created),\"model\":\"sluice\",\"choices\":[{\"text\":\(JSONText.string(text)),\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n"))
                    case .finished(let reason, _, _, let version, _):
                        self?.traffic.withLock { $0.byModel["role=\"\(role.rawValue)\",version=\(JSONText.string(version))", default: 0] += 1 }
                        comparison?.primary(all)
                        let rest = guardrails.completion(String(decoding: pending, as: UTF8.self), client: client)
                        try await writer.write(ByteBuffer(string: "data: {\"id\":\"\(id)\",\"object\":\"text_completion\",\"created\":\(created),\"model\":\"sluice\",\"model_version\":\(JSONText.string(version)),\"choices\":[{\"text\":\(JSONText.string(rest)),\"index\":0,\"logprobs\":null,\"finish_reason\":\"\(reason)\"}]}\n\ndata: [DONE]\n\n"))
                    }
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
        }
        var completion: [UInt8] = []
        var finish = "length", promptTokens = 0, completionTokens = 0, version = ""
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(configuration.requestTimeout * 1e9)
        for await event in events {
            if DispatchTime.now().uptimeNanoseconds > deadline {
                return Self.error(.gatewayTimeout, "the completion took longer than \(configuration.requestTimeout) s")
            }
            switch event {
            case .bytes(let bytes): completion += bytes
            case .finished(let reason, let prompt, let generated, let model, _):
                finish = reason
                promptTokens = prompt
                completionTokens = generated
                version = model
            }
        }
        traffic.withLock { $0.byModel["role=\"\(role.rawValue)\",version=\(JSONText.string(version))", default: 0] += 1 }
        comparison?.primary(completion)
        return Self.json(.ok, """
            {"id":"\(id)","object":"text_completion","created":\(created),"model":"sluice","model_version":\(JSONText.string(version)),\
            "choices":[{"text":\(JSONText.string(guardrails.completion(String(decoding: completion, as: UTF8.self), client: client))),"index":0,"logprobs":null,"finish_reason":"\(finish)"}],\
            "usage":{"prompt_tokens":\(promptTokens),"completion_tokens":\(completionTokens),"total_tokens":\(promptTokens + completionTokens)}}
            """)
    }

    private func score(object: [String: Any]) async -> Response {
        let texts: [String]
        if let single = object["input"] as? String {
            texts = [single]
        } else if let many = object["input"] as? [String], !many.isEmpty, many.count <= 256 {
            texts = many
        } else {
            return Self.error(.badRequest, "input must be a string or an array of 1 to 256 strings")
        }
        let scores: [TextScore]
        do { scores = try await scorer.score(texts.map { Array($0.utf8) }) } catch {
            return Self.error(.tooManyRequests, error.reason, headers: [.retryAfter: "1"])
        }
        let version = state.withLock { $0.version }
        let items = scores.enumerated().map { index, score in
            let perplexity = score.perplexity.isFinite ? String(format: "%.4f", score.perplexity) : "null"
            return """
                {"object":"score","index":\(index),"perplexity":\(perplexity),"tokens":\(score.tokens),\
                "quality_score":\(String(format: "%.4f", score.qualityScore)),"language":\(JSONText.string(score.language)),\
                "failed":[\(score.failed.map { JSONText.string($0) }.joined(separator: ","))]}
                """
        }
        return Self.json(.ok, "{\"object\":\"list\",\"model\":\"sluice\",\"model_version\":\(JSONText.string(version)),\"data\":[\(items.joined(separator: ","))]}")
    }

    /// Runs a copy of the request on the shadow model; the returned pair compares it with the primary answer.
    private func startShadow(_ request: GenerationScheduler.Request) -> ShadowComparison? {
        let comparison = ShadowComparison { [weak self] agreement in
            self?.traffic.withLock {
                $0.shadow += 1
                $0.agreementSum += agreement
            }
        }
        guard let events = try? generator.submit(request, role: .shadow) else {
            traffic.withLock { $0.shadowRefused += 1 }
            return nil
        }
        Task {
            var output: [UInt8] = []
            for await event in events { if case .bytes(let bytes) = event { output += bytes } }
            comparison.shadow(output)
        }
        return comparison
    }

    // MARK: Helpers

    /// The key's hash, or "anonymous".
    private func clientID(_ request: Request) -> String {
        let header = request.headers[.authorization] ?? ""
        return header.hasPrefix("Bearer ") ? sha256Hex(Array(header.dropFirst(7).utf8)) : "anonymous"
    }

    /// nil when the request may proceed; else 401 (no valid key) or 429 (the key's rate limit).
    private func authorize(_ request: Request, client given: String? = nil) -> Response? {
        var client = "anonymous"
        if !configuration.apiKeyHashes.isEmpty {
            let hash = given ?? clientID(request)
            guard configuration.apiKeyHashes.contains(hash) else {
                return Self.error(.unauthorized, "a valid API key is required (Authorization: Bearer KEY)", headers: [.wwwAuthenticate: "Bearer"])
            }
            client = hash
        }
        guard let rate = configuration.rateLimit else { return nil }
        let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        let wait = buckets.withLock { buckets -> Double? in
            var bucket = buckets[client] ?? TokenBucket(rate: rate, capacity: max(1, (2 * rate).rounded(.down)), now: now)
            defer { buckets[client] = bucket }
            return bucket.take(now: now)
        }
        if let wait {
            return Self.error(.tooManyRequests, "rate limit of \(rate) requests/s for this key", headers: [.retryAfter: String(Int(wait.rounded(.up)))])
        }
        return nil
    }

    private func body(_ request: Request) async -> Result<([String: Any], ByteBuffer), ErrorResponse> {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > configuration.maxBodyBytes {
            return .failure(ErrorResponse(Self.error(.contentTooLarge, "the body is larger than \(configuration.maxBodyBytes) bytes")))
        }
        guard let buffer = try? await request.body.collect(upTo: configuration.maxBodyBytes) else {
            return .failure(ErrorResponse(Self.error(.contentTooLarge, "the body is larger than \(configuration.maxBodyBytes) bytes")))
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any] else {
            return .failure(ErrorResponse(Self.error(.badRequest, "the body must be a JSON object")))
        }
        return .success((object, buffer))
    }

    struct ErrorResponse: Error { let response: Response; init(_ response: Response) { self.response = response } }

    private func measured(_ route: String, _ handler: () async -> Response) async -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        let response = await handler()
        metrics.record(route: route, status: Int(response.status.code), seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return response
    }

    static func text(_ body: String, contentType: String = "text/plain") -> Response {
        Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func json(_ status: HTTPResponse.Status, _ body: String, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: body + "\n")))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:]) -> Response {
        json(status, "{\"error\":{\"message\":\(JSONText.string(message)),\"code\":\(status.code)}}", headers: headers)
    }

    private func dashboard() -> String {
        let info = state.withLock { $0 }
        var curate: [String: Int] = [:]
        if let directory = configuration.shardsDirectory,
            let data = try? Data(contentsOf: directory.appendingPathComponent("rejected.jsonl"), options: .mappedIfSafe), data.count < 64 << 20
        {
            for line in data.split(separator: 0x0A) {
                guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any],
                    let stage = object["stage"] as? String, let reason = object["reason"] as? String
                else { continue }
                curate["\(stage)/\(reason)", default: 0] += 1
            }
        }
        return Dashboard.render(Dashboard.Inputs(
            modelVersion: info.version, validationLoss: info.validationLoss,
            validationCurve: configuration.modelPath.map { ScoringModel.validationCurve(near: $0) } ?? [],
            overview: try? index?.overview(), curateRejections: curate, latency: metrics.latencies(),
            generatedTokens: generator.statistics.tokens, scoredTexts: scorer.statistics.texts, topicRates: topicActivity?.rates() ?? []))
    }

    private func metricsText() -> String {
        var lines = metrics.lines()
        let generation = generator.statistics, scoring = scorer.statistics
        let version = state.withLock { $0.version }
        lines += [
            "# TYPE sluice_gateway_generation_queue gauge", "sluice_gateway_generation_queue \(generator.queued)",
            "# TYPE sluice_gateway_generation_active gauge", "sluice_gateway_generation_active \(generator.active)",
            "# TYPE sluice_gateway_generated_tokens_total counter", "sluice_gateway_generated_tokens_total \(generation.tokens)",
            "# TYPE sluice_gateway_decode_steps_total counter", "sluice_gateway_decode_steps_total \(generation.steps)",
            "# TYPE sluice_gateway_score_batches_total counter", "sluice_gateway_score_batches_total \(scoring.batches)",
            "# TYPE sluice_gateway_scored_texts_total counter", "sluice_gateway_scored_texts_total \(scoring.texts)",
            "# TYPE sluice_gateway_model_info gauge", "sluice_gateway_model_info{version=\(JSONText.string(version))} 1",
            "# TYPE sluice_gateway_guardrail_total counter",
        ]
        let counts = traffic.withLock { $0 }
        var tail = ["# TYPE sluice_gateway_completions_by_model_total counter"]
        for (labels, count) in counts.byModel.sorted(by: { $0.key < $1.key }) { tail.append("sluice_gateway_completions_by_model_total{\(labels)} \(count)") }
        tail += [
            "# TYPE sluice_gateway_shadow_completions_total counter", "sluice_gateway_shadow_completions_total \(counts.shadow)",
            "# TYPE sluice_gateway_shadow_refused_total counter", "sluice_gateway_shadow_refused_total \(counts.shadowRefused)",
            "# TYPE sluice_gateway_shadow_agreement gauge",
            "sluice_gateway_shadow_agreement \(counts.shadow > 0 ? counts.agreementSum / Double(counts.shadow) : 0)",
        ]
        for (name, count) in guardrails.statistics.sorted(by: { $0.key < $1.key }) {
            lines.append("sluice_gateway_guardrail_total{kind=\"\(name)\"} \(count)")
        }
        lines += tail
        if let rates = topicActivity?.rates(), !rates.isEmpty {
            lines += ["# TYPE sluice_gateway_topic_records gauge"] + rates.map { "sluice_gateway_topic_records{topic=\(JSONText.string($0.topic))} \($0.total)" }
            lines += ["# TYPE sluice_gateway_topic_records_per_second gauge"]
                + rates.map { "sluice_gateway_topic_records_per_second{topic=\(JSONText.string($0.topic))} \($0.perSecond)" }
        }
        lines += scorer.batchSizes.lines(name: "sluice_gateway_score_batch_size")
        lines += generator.batchSizes.lines(name: "sluice_gateway_decode_batch_size")
        if let upstreamRouter { lines += upstreamRouter.metricLines() }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A primary completion and its shadow's, compared when both are in: the share of positions with the same byte,
/// over the longer of the two.
final class ShadowComparison: @unchecked Sendable {
    // @unchecked: `lock` guards both outputs.
    private let lock = NSLock()
    private var first: [UInt8]?
    private var second: [UInt8]?
    private let record: @Sendable (Double) -> Void

    init(record: @escaping @Sendable (Double) -> Void) { self.record = record }

    func primary(_ output: [UInt8]) { complete { $0.first = output } }
    func shadow(_ output: [UInt8]) { complete { $0.second = output } }

    private func complete(_ set: (ShadowComparison) -> Void) {
        let both: ([UInt8], [UInt8])? = lock.withLock {
            set(self)
            guard let first, let second else { return nil }
            return (first, second)
        }
        guard let (a, b) = both else { return }
        let longest = max(a.count, b.count)
        let same = zip(a, b).filter { $0 == $1 }.count
        record(longest == 0 ? 1 : Double(same) / Double(longest))
    }
}

/// Requests by route and status, and a latency histogram per route.
final class GatewayMetrics: Sendable {
    static let buckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    private struct Histogram: Sendable {
        var counts = [Int](repeating: 0, count: GatewayMetrics.buckets.count)
        var sum = 0.0
        var count = 0
    }
    private let state = Mutex<(requests: [String: Int], latency: [String: Histogram])>(([:], [:]))

    func record(route: String, status: Int, seconds: Double) {
        state.withLock { state in
            state.requests["route=\"\(route)\",status=\"\(status)\"", default: 0] += 1
            var histogram = state.latency[route] ?? Histogram()
            for (i, bound) in Self.buckets.enumerated() where seconds <= bound { histogram.counts[i] += 1 }
            histogram.sum += seconds
            histogram.count += 1
            state.latency[route] = histogram
        }
    }

    /// p50 and p99 per route, from the histogram buckets (upper bounds).
    func latencies() -> [(route: String, p50: Double, p99: Double, count: Int)] {
        state.withLock { state in
            state.latency.sorted { $0.key < $1.key }.map { route, histogram in
                func quantile(_ q: Double) -> Double {
                    let target = Double(histogram.count) * q
                    for (bound, count) in zip(Self.buckets, histogram.counts) where Double(count) >= target { return bound }
                    return Self.buckets.last ?? 0
                }
                return (route, quantile(0.5), quantile(0.99), histogram.count)
            }
        }
    }

    func lines() -> [String] {
        state.withLock { state in
            var lines = ["# TYPE sluice_gateway_requests_total counter"]
            for (labels, count) in state.requests.sorted(by: { $0.key < $1.key }) { lines.append("sluice_gateway_requests_total{\(labels)} \(count)") }
            lines.append("# TYPE sluice_gateway_request_seconds histogram")
            for (route, histogram) in state.latency.sorted(by: { $0.key < $1.key }) {
                for (bound, count) in zip(Self.buckets, histogram.counts) {
                    lines.append("sluice_gateway_request_seconds_bucket{route=\"\(route)\",le=\"\(bound)\"} \(count)")
                }
                lines.append("sluice_gateway_request_seconds_bucket{route=\"\(route)\",le=\"+Inf\"} \(histogram.count)")
                lines.append("sluice_gateway_request_seconds_sum{route=\"\(route)\"} \(histogram.sum)")
                lines.append("sluice_gateway_request_seconds_count{route=\"\(route)\"} \(histogram.count)")
            }
            return lines
        }
    }
}

/// JSONSerialization's values, told apart (on Linux a JSON number bridges to Bool and a JSON boolean to Int).
enum JSONValue {
    static func isBoolean(_ value: Any) -> Bool {
        guard let number = value as? NSNumber else { return false }
        return String(cString: number.objCType) == "c"
    }

    static func boolean(_ value: Any) -> Bool? { isBoolean(value) ? (value as? NSNumber)?.boolValue : nil }

    static func number(_ value: Any) -> Double? {
        guard !isBoolean(value), let number = value as? NSNumber else { return nil }
        let double = number.doubleValue
        return double.isFinite ? double : nil
    }

    static func integer(_ value: Any) -> Int? {
        guard let double = number(value), double == double.rounded(), abs(double) < 9e15 else { return nil }
        return Int(double)
    }
}

/// Where a byte stream can be cut without splitting a UTF-8 character.
enum UTF8Chunks {
    /// The length of the longest prefix that does not end inside a multi-byte character.
    static func completePrefix(_ bytes: [UInt8]) -> Int {
        var index = bytes.count
        var back = 0
        while index > 0 && back < 4 {
            let byte = bytes[index - 1]
            if byte & 0xC0 == 0x80 {
                index -= 1
                back += 1
                continue
            }
            let needed = byte < 0x80 ? 1 : byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
            return back + 1 >= needed ? bytes.count : index - 1
        }
        return bytes.count
    }
}

/// A bare Hummingbird server with one route, `GET /healthz` → "ok": the baseline `sluice eval http-baseline`
/// measures the gateway's own overhead against.
public enum BareHTTPServer {
    public static func run(host: String, port: Int, logger: Logger, onListening: @escaping @Sendable (Int) -> Void) async throws {
        let router = Router()
        router.get("/healthz") { _, _ in Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) }, logger: logger)
        try await app.run()
    }
}
