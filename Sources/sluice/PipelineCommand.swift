import SluiceConfig
import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals
import SluiceKafka
import SluicePipeline
import SluiceShards

struct PipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Curate raw Kafka topics into shards continuously: the streaming pipeline.",
        discussion: """
            Consumes the input topics in a consumer group, runs decode → clean → desensitize → quality → dedup, and \
            writes one shard per partition into the output directory (named <topic>+<partition>+<first offset>), \
            with the SQLite index beside them. Offsets are committed only after the shard holding the records is \
            sealed and recorded in the index; a restarted worker resumes after what the index has sealed, so \
            nothing is lost or written twice. Undecodable records go to the DLQ topic (original bytes, reason in \
            headers); dropped records become audit events on the rejected topic; every sealed shard is announced \
            on the shards topic.

            Flags override the --config file, so a one-liner works without one:
              sluice pipeline --bootstrap 127.0.0.1:9092 --topic raw.web --output data
            Without bootstrap.servers (no --bootstrap, no kafka.bootstrap.servers, no $SLUICE_BOOTSTRAP) the \
            embedded broker starts in this process with the input topics (6 partitions) and the sluice.* topics.

            SIGINT or SIGTERM stops fetching, finishes the records in flight, seals, commits and announces, then \
            leaves the group. See docs/pipeline.md for the configuration file.
            """)

    @Option(name: .long, help: ArgumentHelp("Pipeline configuration (YAML; see docs/pipeline.md).", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("Bootstrap servers; default: kafka.bootstrap.servers, then $SLUICE_BOOTSTRAP.", valueName: "host:port"))
    var bootstrap: String?

    @Option(name: .customLong("topic"), help: ArgumentHelp("An input topic or ^regex (repeatable; replaces input.topics).", valueName: "topic"))
    var topics: [String] = []

    @Option(name: .long, help: ArgumentHelp("Consumer group (default: kafka.group.id, then sluice-curate).", valueName: "group"))
    var group: String?

    @Option(name: .long, help: ArgumentHelp("Output directory for shards and index.sqlite (default: output.directory, then ./data).", valueName: "dir"))
    var output: String?

    @Option(name: .long, help: "Dataset name in the index (default: output.dataset, then stream).")
    var dataset: String?

    @Option(name: .long, help: "Worker threads for the stage chain (default: all cores).")
    var workers: Int?

    @Option(name: .long, help: ArgumentHelp("Seal a partition's shard this many seconds after its first record (default 60).", valueName: "seconds"))
    var sealAfter: Int?

    @Option(name: .long, help: ArgumentHelp("Serve /metrics and /healthz on this port (0: off).", valueName: "port"))
    var metricsPort: Int?

    @Option(
        name: [.customShort("X"), .customLong("property")],
        help: ArgumentHelp("One librdkafka property, key=value (repeatable; wins over the file).", valueName: "key=value"))
    var properties: [String] = []

    @Option(
        name: .long,
        help: ArgumentHelp(
            "When retention deleted records before they were read: fail (stop with an error) or skip (continue at the log start after an audit event).",
            valueName: "fail|skip"))
    var onDataLoss: String?

    @Flag(name: .long, help: "Stop once every assigned partition is at its end (a backfill): seal, commit, exit.")
    var exitAtEnd = false

    @Flag(name: .long, help: "Validate the configuration (file and flags), print the result, and exit.")
    var check = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = ProcessInfo.processInfo.environment["SLUICE_LOG_LEVEL"] ?? "notice"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel.lowercased()) != nil else {
            throw ValidationError("unknown log level '\(logLevel)'; use trace, debug, info, notice, warning, error or critical")
        }
        for property in properties where property.firstIndex(of: "=").map({ $0 == property.startIndex }) ?? true {
            throw ValidationError("-X expects key=value, got '\(property)'")
        }
        if let workers, !(1...256).contains(workers) { throw ValidationError("--workers must be 1…256") }
        if let sealAfter, !(1...86_400).contains(sealAfter) { throw ValidationError("--seal-after must be 1…86400 seconds") }
        if let metricsPort, !(0...65_535).contains(metricsPort) { throw ValidationError("--metrics-port must be 0…65535") }
    }

    /// The file, then the flags.
    func settings() throws -> PipelineConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var settings = PipelineConfiguration()
        let file = config ?? "flags"
        if let config {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                throw CommandError("cannot read config file \(config)")
            }
            do { settings = try PipelineConfiguration.load(yaml: text, file: config, environment: environment) } catch {
                throw CommandError("\(error)")
            }
        }
        for property in properties {
            let equals = property.firstIndex(of: "=")!
            settings.kafka[String(property[..<equals])] = String(property[property.index(after: equals)...])
        }
        if let bootstrap = bootstrap ?? (settings.kafka.bootstrapServers == nil ? environment["SLUICE_BOOTSTRAP"] : nil) {
            settings.kafka.bootstrapServers = bootstrap
        }
        if !topics.isEmpty { settings.topics = topics }
        if let group { settings.kafka.groupID = group }
        if let output { settings.outputDirectory = URL(fileURLWithPath: output) }
        if let dataset { settings.dataset = dataset }
        if let workers { settings.stages.workers = workers }
        if let sealAfter { settings.sealAfterSeconds = Double(sealAfter) }
        if let metricsPort { settings.metricsPort = metricsPort == 0 ? nil : metricsPort }
        if exitAtEnd { settings.exitAtEnd = true }
        if let onDataLoss {
            guard let policy = PipelineConfiguration.DataLossPolicy(rawValue: onDataLoss) else {
                throw CommandError("--on-data-loss must be fail or skip")
            }
            settings.onDataLoss = policy
        }
        do { try settings.validate(file: file) } catch { throw CommandError("\(error)") }
        return settings
    }

    func run() async throws {
        let logger = makeLogger(level: Logger.Level(rawValue: logLevel.lowercased())!)
        var settings = try settings()
        if check {
            Terminal.out(
                "configuration OK: topics \(settings.topics.joined(separator: ", ")); group \(settings.groupID); "
                    + "output \(settings.outputDirectory.path); dataset \(settings.dataset); "
                    + (settings.usesEmbeddedBroker ? "embedded broker" : "bootstrap \(settings.kafka.bootstrapServers!)")
                    + "; \(settings.stages.workers) workers; seal after \(Int(settings.sealAfterSeconds)) s")
            return
        }
        var broker: EmbeddedBroker?
        if settings.usesEmbeddedBroker {
            let embedded = try EmbeddedBroker(logger: logger)
            for topic in settings.topics where !topic.hasPrefix("^") { try embedded.createTopic(topic, partitions: 6) }
            for topic in [settings.shardsTopic, settings.rejectedTopic, settings.dlqTopic] {
                try embedded.createTopic(topic, partitions: topic == settings.shardsTopic ? 1 : 3)
            }
            settings.kafka.bootstrapServers = embedded.bootstrapServers
            Terminal.err("embedded broker on \(embedded.bootstrapServers) (in memory); produce into it with --bootstrap \(embedded.bootstrapServers)")
            broker = embedded
        }
        defer { broker?.shutdown() }

        // A file-size limit (ulimit -f) must fail the write with EFBIG, reported as an error, not kill the process.
        signal(SIGXFSZ, SIG_IGN)
        var server: MetricsServer?
        let pipeline: StreamingPipeline
        do {
            if let port = settings.metricsPort {
                let registry = PrometheusCollectorRegistry()
                MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
                pipeline = try StreamingPipeline(configuration: settings, kafka: settings.kafka, logger: logger)
                let health = pipeline.health
                server = try MetricsServer(
                    port: port, metrics: { registry.emitToString() }, health: { health.report() })
                Terminal.err("metrics on http://0.0.0.0:\(server!.port)/metrics, health on /healthz")
            } else {
                pipeline = try StreamingPipeline(configuration: settings, kafka: settings.kafka, logger: logger)
            }
        } catch let error as ShardError {
            throw CommandError(error.reason)
        } catch let error as KafkaError {
            throw CommandError("\(error)")
        } catch let error as MetricsServerError {
            throw CommandError("\(error)")
        }
        defer { server?.stop() }

        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(
                        service: PipelineService(pipeline: pipeline, lagInterval: settings.metricsPort == nil ? nil : .seconds(5)),
                        successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup)
                ],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch let error as ShardError {
            throw CommandError("the pipeline stopped: \(error.reason)")
        } catch let error as ConfigError {
            throw CommandError("\(error)")
        } catch let error as KafkaError where error.code == .dataLostToRetention {
            throw CommandError(
                "the pipeline stopped: \(error). Records between the committed offset and the log start are gone; "
                    + "to continue after recording the loss, run with --on-data-loss skip (or pipeline.on_data_loss: skip).")
        } catch let error as KafkaError {
            throw CommandError("the pipeline stopped: \(error)")
        }
    }
}

/// Runs the pipeline until graceful shutdown (SIGTERM/SIGINT), which stops fetching and lets it finish.
struct PipelineService: Service {
    let pipeline: StreamingPipeline
    let lagInterval: Duration?

    func run() async throws {
        try await withGracefulShutdownHandler {
            // Not awaited at the end: with the cluster down a watermark query can outlive its timeout in
            // librdkafka, and shutdown must not wait for it.
            let lag = lagInterval.map { interval in
                Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: interval)
                        await pipeline.refreshLag()
                    }
                }
            }
            defer { lag?.cancel() }
            let summary = try await pipeline.run()
            Terminal.out(summary.json)
        } onGracefulShutdown: {
            pipeline.requestStop()
        }
    }
}
