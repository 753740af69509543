import ArgumentParser
import Foundation
import Logging
import SluiceConfig
import SluiceGRPC
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

            --config gateway.yaml holds the same settings (keys are the flag names with underscores: model, port, \
            api_keys, rate_limit, upstreams as a list, tls: {certificate, key}, …); flags win over it. \
            config/gateway.yaml shows every key.
            """)

    @Option(help: ArgumentHelp("A gateway.yaml file (flags win over it).", valueName: "file")) var config: String?

    @Option(help: ArgumentHelp("A model.safetensors file, a checkpoint directory, or a training output directory (its newest checkpoint).", valueName: "path")) var model: String?
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
    @Option(help: "Threads of one scoring pass (1 leaves the other core to generation and HTTP).") var scoreThreads = 1
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
    @Option(help: ArgumentHelp("A PEM certificate chain: serve HTTPS, and gRPC over TLS (with --tls-key).", valueName: "file")) var tlsCertificate: String?
    @Option(help: ArgumentHelp("The PEM private key of --tls-certificate.", valueName: "file")) var tlsKey: String?
    @Option(help: "Serve sluice.v1.ModelService over gRPC (HTTP/2) on this port too (0: any free port); its address is printed after the HTTP one.")
    var grpcPort: Int?
    @Option(help: "Log level.") var logLevel = "notice"

    func run() async throws {
        if let config {
            // The file's settings become flags in front of the command line's, so the command line wins.
            let fileArguments = try GatewayFile.arguments(fromFile: config)
            var given = Array(CommandLine.arguments.dropFirst(2))
            if let index = given.firstIndex(where: { $0 == "--config" }) { given.removeSubrange(index...min(index + 1, given.count - 1)) }
            given.removeAll { $0.hasPrefix("--config=") }
            var merged = try ServeCommand.parse(fileArguments + given)
            merged.config = nil
            try await merged.run()
            return
        }
        guard var model else { throw ValidationError("give --model PATH (or model: in --config)") }
        // A training output directory serves its newest checkpoint (the one checkpoints/LATEST names).
        if FileManager.default.fileExists(atPath: model + "/checkpoints"), let latest = Trainer.latestCheckpoint(in: URL(fileURLWithPath: model)) {
            model = latest.path
        }
        guard let level = Logger.Level(rawValue: logLevel.lowercased()) else { throw ValidationError("unknown log level '\(logLevel)'") }
        let logger = makeLogger(level: level)
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        if let grpcPort, !(0...65535).contains(grpcPort) { throw ValidationError("--grpc-port must be 0…65535") }
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
        guard (1...64).contains(scoreThreads) else { throw ValidationError("--score-threads must be 1…64") }
        settings.scoreThreads = scoreThreads
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
            settings.adminKeyHashes = GatewayConfiguration.adminKeys(fromFile: text)
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
        if let bootstrap {
            var kafka = KafkaConfiguration()
            kafka.bootstrapServers = bootstrap
            settings.kafka = kafka
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
        var grpc: Task<Void, any Error>?
        if let grpcPort {
            let provider = ModelServiceProvider(generator: gateway.generator, maxTokens: maxTokens)
            let host = self.host
            let tls = tlsCertificate.flatMap { certificate in tlsKey.map { (certificate: certificate, key: $0) } }
            let scheme = tls == nil ? "grpc" : "grpcs"
            grpc = Task {
                try await GRPCFrontend.run(host: host, port: grpcPort, provider: provider, tls: tls) { Terminal.out("\(scheme)://\(host):\($0)") }
            }
        }
        let grpcTask = grpc
        let sources = stopOnSignals("stopping the gateway: finishing requests in progress (again to exit at once)") {
            grpcTask?.cancel()
            Task { await gateway.shutdown() }
        }
        defer { sources.forEach { $0.cancel() } }
        do { try await server.value } catch is CancellationError {}
        follower.stop()
    }
}

/// `gateway.yaml`: the flags of `sluice serve` as keys (underscores for dashes).
enum GatewayFile {
    static let scalarKeys = [
        "model", "host", "port", "api_keys", "shards", "slots", "queue", "max_tokens", "score_batch", "score_delay_ms", "score_threads", "max_body",
        "rate_limit", "request_timeout", "pii", "blocklist", "bootstrap", "models_topic", "canary", "local_weight", "log_level", "grpc_port",
    ]

    static func arguments(fromFile path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CommandError("cannot read \(path)") }
        do {
            let interpolated = try ConfigText.interpolate(text, file: path, environment: ProcessInfo.processInfo.environment)
            guard let root = try ConfigText.sections(ofYAML: interpolated, file: path) else { return [] }
            let reader = SectionReader(file: path)
            try reader.keys(root, scalarKeys + ["shadow", "upstreams", "tls"])
            var arguments: [String] = []
            for key in scalarKeys {
                guard let value = root[key] else { continue }
                guard value is String || value is Int || value is Double else { throw reader.error(key, "expected a single value") }
                arguments += ["--" + key.replacingOccurrences(of: "_", with: "-"), "\(value)"]
            }
            if let shadow = root["shadow"] {
                guard let flag = shadow as? Bool else { throw reader.error("shadow", "expected true or false") }
                if flag { arguments.append("--shadow") }
            }
            if let upstreams = root["upstreams"] {
                guard let list = upstreams as? [Any] else { throw reader.error("upstreams", "expected a list") }
                for (index, item) in list.enumerated() {
                    if let spec = item as? String {
                        arguments += ["--upstream", spec]
                    } else if let fields = item as? [String: Any] {
                        var entry = SectionReader(file: path)
                        entry.section = "upstreams[\(index)]"
                        try entry.keys(fields, ["name", "url", "weight", "key"])
                        guard let name = fields["name"] as? String, let url = fields["url"] as? String else {
                            throw entry.error("", "an upstream needs name and url")
                        }
                        var spec = "\(name)=\(url)"
                        if let weight = fields["weight"] { spec += ",weight=\(weight)" }
                        if let key = fields["key"] as? String { spec += ",key=\(key)" }
                        arguments += ["--upstream", spec]
                    } else {
                        throw reader.error("upstreams[\(index)]", "expected NAME=URL or {name, url, weight, key}")
                    }
                }
            }
            if let tls = root["tls"] {
                guard let fields = tls as? [String: Any] else { throw reader.error("tls", "expected {certificate, key}") }
                var section = SectionReader(file: path)
                section.section = "tls"
                try section.keys(fields, ["certificate", "key"])
                if let certificate = try section.string(fields, "certificate") { arguments += ["--tls-certificate", certificate] }
                if let key = try section.string(fields, "key") { arguments += ["--tls-key", key] }
            }
            return arguments
        } catch let error as ConfigError {
            throw CommandError("\(error)")
        }
    }
}
