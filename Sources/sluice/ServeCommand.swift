import ArgumentParser
import Foundation
import Logging
import SluiceGateway
import SluiceKafka
import SluiceTrain

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a Sluice model over HTTP: completions, scoring, curated samples, health and metrics.",
        discussion: """
            Routes: POST /v1/completions (OpenAI completions shape; "stream": true for server-sent events), \
            POST /v1/score ({"input": "text" | ["text", …]}: perplexity and quality score per text), \
            GET /v1/models, GET /v1/shards and GET /v1/samples/{key} (with --shards), /healthz, /readyz, /metrics.

            Generation runs with a KV cache and continuous batching over --slots sequences; scoring gathers texts \
            from concurrent requests into batches of up to --score-batch (1: no batching). Both queues are bounded: \
            when full the answer is 429 at once. With --bootstrap, the gateway follows the models topic and swaps \
            in each accepted model; requests already generating finish on the model they started with.

            The first line on standard output is the address, e.g. http://127.0.0.1:8080 (useful with --port 0).
            """)

    @Option(help: ArgumentHelp("A model.safetensors file or a checkpoint directory.", valueName: "path")) var model: String
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port (0: any free port).") var port = 8080
    @Option(help: ArgumentHelp("API keys, one per line (or sha256:<hex>); without it no key is needed.", valueName: "file"))
    var apiKeys: String?
    @Option(help: ArgumentHelp("A curated directory for /v1/shards and /v1/samples/{key}.", valueName: "dir")) var shards: String?
    @Option(help: "Concurrent generation sequences.") var slots = 32
    @Option(help: "Generation requests waiting beyond the running ones before 429.") var queue = 256
    @Option(help: "Largest max_tokens accepted.") var maxTokens = 1024
    @Option(help: "Texts per scoring batch (1: no dynamic batching).") var scoreBatch = 32
    @Option(help: "Longest wait for a scoring batch to fill, in milliseconds.") var scoreDelayMs = 2.0
    @Option(help: "Largest request body in bytes.") var maxBody = 1 << 20
    @Option(help: "Requests per second per API key under /v1 (bursts of twice that); default: no limit.") var rateLimit: Double?
    @Option(help: "Seconds a completion may take, queueing included, before 504.") var requestTimeout = 60.0
    @Option(help: "Personal data in prompts and completions: redact, reject (prompts; completions are redacted) or allow. A key's own pii= in the keys file wins.")
    var pii = "allow"
    @Option(help: ArgumentHelp("Blocked terms, one per line: prompts holding one are refused, completions masked.", valueName: "file"))
    var blocklist: String?
    @Option(help: ArgumentHelp("Kafka bootstrap servers: follow the models topic and swap models.", valueName: "host:port")) var bootstrap: String?
    @Option(help: "The models topic.") var modelsTopic = "sluice.models"
    @Option(help: "A newly announced model takes this percentage of completions until POST /v1/admin/promote (0: it replaces the current one at once).")
    var canary = 0.0
    @Flag(help: "A newly announced model runs on a copy of every completion and is compared, never answering.") var shadow = false
    @Option(help: ArgumentHelp("An OpenAI-compatible upstream (repeatable): NAME=URL[,weight=W][,key=K].", valueName: "spec"))
    var upstream: [String] = []
    @Option(help: "The built-in model's weight beside the upstreams (0: only a fallback).") var localWeight = 1.0
    @Option(help: ArgumentHelp("A PEM certificate chain: serve HTTPS (with --tls-key).", valueName: "file")) var tlsCertificate: String?
    @Option(help: ArgumentHelp("The PEM private key of --tls-certificate.", valueName: "file")) var tlsKey: String?
    @Option(help: "Log level.") var logLevel = "notice"

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel.lowercased()) else { throw ValidationError("unknown log level '\(logLevel)'") }
        let logger = makeLogger(level: level)
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        guard slots >= 1, slots <= 1024, queue >= 0, maxTokens >= 1, scoreBatch >= 1, scoreDelayMs >= 0, maxBody >= 1024 else {
            throw ValidationError("--slots 1…1024, --queue ≥ 0, --max-tokens, --score-batch ≥ 1, --score-delay-ms ≥ 0, --max-body ≥ 1024")
        }
        let validationLoss = ScoringModel.validationLoss(at: model)
        var settings = GatewayConfiguration()
        settings.host = host
        settings.port = port
        settings.slots = slots
        settings.generationQueue = queue
        settings.maxTokens = maxTokens
        settings.scoreBatch = scoreBatch
        settings.scoreDelay = scoreDelayMs / 1000
        settings.maxBodyBytes = maxBody
        guard (0...100).contains(canary) else { throw ValidationError("--canary must be a percentage, 0…100") }
        guard !(shadow && canary > 0) else { throw ValidationError("--canary and --shadow exclude each other") }
        settings.canaryPercent = canary
        settings.shadow = shadow
        do { settings.upstreams = try upstream.map(UpstreamConfiguration.parse) } catch { throw ValidationError("\(error)") }
        guard localWeight >= 0 else { throw ValidationError("--local-weight must be 0 or more") }
        settings.localWeight = localWeight
        settings.modelPath = model
        guard (tlsCertificate == nil) == (tlsKey == nil) else { throw ValidationError("--tls-certificate and --tls-key go together") }
        for file in [tlsCertificate, tlsKey].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: file) {
            throw CommandError("cannot read \(file)")
        }
        settings.tlsCertificate = tlsCertificate
        settings.tlsKey = tlsKey
        if let rateLimit {
            guard rateLimit > 0 else { throw ValidationError("--rate-limit must be positive") }
            settings.rateLimit = rateLimit
        }
        guard requestTimeout > 0 else { throw ValidationError("--request-timeout must be positive") }
        settings.requestTimeout = requestTimeout
        if let apiKeys {
            guard let text = try? String(contentsOfFile: apiKeys, encoding: .utf8) else { throw CommandError("cannot read \(apiKeys)") }
            settings.apiKeyHashes = GatewayConfiguration.keyHashes(fromFile: text)
            guard !settings.apiKeyHashes.isEmpty else { throw CommandError("\(apiKeys) holds no API key") }
            do { settings.keyActions = try GatewayConfiguration.keyActions(fromFile: text) } catch { throw CommandError("\(apiKeys): \(error)") }
        }
        guard let action = PIIAction(rawValue: pii) else { throw ValidationError("--pii must be redact, reject or allow") }
        settings.piiAction = action
        if let blocklist {
            guard let text = try? String(contentsOfFile: blocklist, encoding: .utf8) else { throw CommandError("cannot read \(blocklist)") }
            settings.blocklist = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        if let shards {
            guard FileManager.default.fileExists(atPath: shards + "/index.sqlite") else {
                throw CommandError("\(shards) is not a curated directory (no index.sqlite)")
            }
            settings.shardsDirectory = URL(fileURLWithPath: shards)
        }
        let gpt: GPT
        do { gpt = try GPT.load(URL(fileURLWithPath: model)) } catch { throw CommandError(error.reason) }  // keeps int8 weights
        let gateway = try Gateway(model: gpt, version: URL(fileURLWithPath: model).lastPathComponent, validationLoss: validationLoss,
                                  configuration: settings, logger: logger)
        let follower = ModelFollower()
        if let bootstrap {
            var kafka = KafkaConfiguration()
            kafka.bootstrapServers = bootstrap
            let slot = ModelSlot()
            await follower.start(kafka: kafka, topic: modelsTopic, slot: slot, logger: logger)
            Task {
                var seen = 0
                while !Task.isCancelled {
                    let (version, loaded) = slot.current
                    if version != seen, let loaded {
                        seen = version
                        gateway.announce(GPT(configuration: loaded.configuration, parameters: loaded.parameters), version: loaded.name,
                                         validationLoss: Float(Foundation.log(loaded.referencePerplexity)))
                    }
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
        }
        let server = Task {
            let scheme = tlsCertificate == nil ? "http" : "https"
            try await gateway.run { port in Terminal.out("\(scheme)://\(host):\(port)") }
        }
        let sources = stopOnSignals("stopping the gateway (again to exit at once)") { server.cancel() }
        defer { sources.forEach { $0.cancel() } }
        do { try await server.value } catch is CancellationError {}
        follower.stop()
    }
}
