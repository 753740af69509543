import ArgumentParser
import Foundation
import Logging
import SluiceConnectors
import SluiceKafka
import SluicePipeline
import SluiceShards
import SluiceTrain

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the whole platform on the embedded broker, supervised, with live progress; state under ./var.",
        discussion: """
            Starts the embedded broker in this process and applies --topics, then runs and supervises these parts, \
            each a `sluice` child process logging to VAR/logs/<part>.log:
              generator       sluice connect: English and Chinese records with duplicates, personal data, junk
              files           sluice connect: the JSON Lines, CSV, text and HTML samples of --connectors/samples
              pipeline        sluice pipeline: the curation chain into VAR/shards (metrics on --metrics-port)
              retrain-watch   sluice retrain watch: asks for a model when enough new text arrived
              trainer         sluice retrain serve: trains candidates, publishes those that do not regress
              gateway         sluice serve: completions, scoring, the dashboard (from the first model on)

            The terminal shows records/s per stage, shards sealed, training progress and the gateway's address. \
            A part that exits is restarted with exponential backoff (1 s doubling to 30 s) and the event is shown: \
            kill one by hand to see it (pids in VAR/run). Ctrl-C, or the end of --duration, stops the parts in \
            order (connectors, pipeline, trainer, gateway), prints a summary and writes VAR/demo-summary.json.

            Everything lands under VAR: shards and index, connector positions, model versions and checkpoints, \
            logs, and the broker journal (VAR/broker), which replays the topics and committed offsets into the \
            next run's broker, so a second run continues where the first stopped. Remove VAR to start afresh.
            """)

    @Option(name: .customLong("var"), help: ArgumentHelp("Where everything lands; a second run continues from it.", valueName: "dir"))
    var varDirectory = "var"

    @Option(help: ArgumentHelp("Stop after this long (90, 90s, 2m, 1h); default: run until Ctrl-C.", valueName: "duration"))
    var duration: String?

    @Option(help: ArgumentHelp("Directory of topic declarations.", valueName: "dir"))
    var topics = "topics"

    @Option(help: ArgumentHelp("Directory of connector files (generator.yaml, file-*.yaml and samples/).", valueName: "dir"))
    var connectors = "connectors"

    @Option(help: "Records per second from the generator.")
    var rate = 40.0

    @Option(help: "Gateway port (0: any free port).")
    var port = 8080

    @Option(help: "Port of the pipeline's /metrics (0: any free port).")
    var metricsPort = 0

    @Option(help: "Curated text (bytes) that triggers a retraining round.")
    var retrainTokens = 300_000

    @Option(help: "Training steps per retraining round.")
    var trainSteps = 60

    @Option(help: "Log level of the demo's own messages (the parts log at notice to VAR/logs).")
    var logLevel = "warning"

    func validate() throws {
        if let duration, parseDemoDuration(duration) == nil {
            throw ValidationError("--duration '\(duration)' is not a duration: use 90, 90s, 2m or 1h")
        }
        guard rate > 0, rate <= 2000 else { throw ValidationError("--rate must be above 0 and at most 2000 records/s (the embedded broker keeps 5 MiB per partition)") }
        guard (0...65535).contains(port), (0...65535).contains(metricsPort) else { throw ValidationError("ports are 0 to 65535") }
        guard retrainTokens > 0, trainSteps > 0 else { throw ValidationError("--retrain-tokens and --train-steps must be positive") }
    }

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level '\(logLevel)'") }
        let logger = makeLogger(level: level)
        let demo = try DemoRun(command: self, logger: logger)
        try await demo.run()
    }
}

/// The state of one `sluice demo`.
final class DemoRun: @unchecked Sendable {
    // @unchecked: everything is used from the command's task; `stopRequested` is a LockedFlag.
    let command: DemoCommand
    let logger: Logger
    let root: URL
    let executable: String
    let limit: Double?
    let stopRequested = LockedFlag()
    let clock = ContinuousClock()
    let started: ContinuousClock.Instant
    var events: [String] = []
    var parts: [DemoPart] = []
    var gateway: DemoPart?
    var gatewayPort = 0
    var metricsPort = 0
    var lockDescriptor: Int32 = -1
    var previous: (time: ContinuousClock.Instant, raw: Double, passed: [Double])?
    var rates: (raw: Double, passed: [Double]) = (0, [])
    /// The chain's stages in order; a record that passes one goes on to the next.
    static let stages = ["decode", "clean", "desensitize", "quality", "quarantine", "perplexity", "dedup", "shards"]
    var drawnLines = 0
    let interactive = isatty(1) == 1

    init(command: DemoCommand, logger: Logger) throws {
        self.command = command
        self.logger = logger
        root = URL(fileURLWithPath: command.varDirectory).standardizedFileURL.absoluteURL
        limit = command.duration.flatMap(parseDemoDuration)
        started = clock.now
        guard let path = Bundle.main.executablePath ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) else {
            throw CommandError("cannot find the sluice executable to start the demo's parts")
        }
        executable = path
    }

    func event(_ text: String) {
        let stamp = DateFormatter.localizedString(from: Date(), dateStyle: .none, timeStyle: .medium)
        events.append("\(stamp) \(text)")
        if !interactive { Terminal.out("  event: \(text)") }
    }

    func run() async throws {
        for (flag, path) in [("--topics", command.topics), ("--connectors", command.connectors)] {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CommandError("no directory \(path) (\(flag)): run the demo from the repository root, or pass \(flag) DIR")
            }
        }
        for directory in ["logs", "run", "shards", "model", "connect", "retrain", "config", "broker"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(directory), withIntermediateDirectories: true)
        }
        // One demo per directory.
        lockDescriptor = open(root.appendingPathComponent("demo.lock").path, O_CREAT | O_RDWR, 0o644)
        guard lockDescriptor >= 0, flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            throw CommandError("another sluice demo is running on \(root.path)")
        }
        defer { close(lockDescriptor) }
        for file in (try? FileManager.default.contentsOfDirectory(at: root.appendingPathComponent("run"), includingPropertiesForKeys: nil)) ?? [] {
            DemoPart.killStale(pidFile: file)
        }

        // The broker, with the topics and committed offsets of the previous run.
        let broker = try EmbeddedBroker(logger: logger)
        defer { broker.shutdown() }
        let journal = try BrokerJournal(directory: root.appendingPathComponent("broker"), logger: logger)
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = broker.bootstrapServers
        kafka.applyLowLatencyDefaults()
        let restored: BrokerJournal.RestoreSummary
        do { restored = try await journal.restore(into: broker, configuration: kafka) } catch {
            throw CommandError("cannot replay the broker journal in \(journal.directory.path): \(error). Remove \(root.path) to start afresh.")
        }
        let declarations = try TopicCatalog.load(directory: URL(fileURLWithPath: command.topics))
        _ = try TopicProvisioner.apply(declarations, broker: broker)
        try journal.register(Dictionary(uniqueKeysWithValues: declarations.map { ($0.name, Int32($0.partitions)) }))
        let journalTask = Task { try await journal.follow(configuration: kafka) }

        if restored.records > 0 {
            Terminal.out("Continuing the demo in \(root.path): \(restored.records) records of \(restored.topics) topics replayed into the broker from its journal.")
        } else {
            Terminal.out("Starting a new demo in \(root.path).")
        }
        try writeConfiguration()
        definePartsAndPorts(bootstrap: broker.bootstrapServers)
        let environment = ProcessInfo.processInfo.environment.merging([
            "SLUICE_STATE": root.appendingPathComponent("connect").path,
            "SLUICE_SAMPLES": URL(fileURLWithPath: command.connectors).appendingPathComponent("samples").standardizedFileURL.path,
            "SLUICE_PARENT_PID": String(getpid()),
            "SLUICE_LOG_LEVEL": "notice",
        ]) { $1 }

        let signals = stopOnSignals("stopping the demo's parts (again to exit at once)") { [stopRequested] in _ = stopRequested.set() }
        defer { signals.forEach { $0.cancel() } }
        for part in parts { try part.start(executable: executable, environment: environment) }
        Terminal.out("Broker \(broker.bootstrapServers); parts started; logs in \(root.appendingPathComponent("logs").path)")

        var lastDraw = clock.now - .seconds(10)
        while !stopRequested.isSet {
            if let limit, (clock.now - started).inSeconds >= limit { break }
            let now = clock.now
            for part in parts + [gateway].compactMap({ $0 }) {
                if let message = part.noticeExit(now: now) { event(message) }
                if !part.isRunning, let restartAt = part.restartAt, now >= restartAt {
                    do { try part.start(executable: executable, environment: environment) } catch { event("cannot restart \(part.name): \(error)") }
                }
            }
            if gateway == nil, let model = latestAcceptedModel() {
                let part = DemoPart(
                    name: "gateway",
                    arguments: ["serve", "--model", model, "--bootstrap", broker.bootstrapServers, "--shards", root.appendingPathComponent("shards").path,
                                "--port", String(gatewayPort), "--slots", "8"],
                    directory: root)
                gateway = part
                do { try part.start(executable: executable, environment: environment) } catch { event("cannot start the gateway: \(error)") }
                event("gateway started on http://127.0.0.1:\(gatewayPort)/ with \(URL(fileURLWithPath: model).lastPathComponent)")
            }
            if now - lastDraw >= .seconds(interactive ? 2 : 10) {
                lastDraw = now
                await draw(broker: broker)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }

        // Connectors first, then the pipeline (it seals and commits what it holds), then the rest.
        if interactive { Terminal.out("") }
        Terminal.out("Stopping: connectors, pipeline, trainer, gateway…")
        let order = ["generator", "files", "pipeline", "retrain-watch", "trainer", "gateway"]
        let all = parts + [gateway].compactMap { $0 }
        for name in order {
            guard let part = all.first(where: { $0.name == name }) else { continue }
            await part.stop(grace: name == "pipeline" ? .seconds(60) : .seconds(20))
        }
        journal.stop()
        do { try await journalTask.value } catch { Terminal.err("warning: the broker journal stopped with \(error); the next run may miss records") }
        try await summarize(broker: broker)
        admin?.close()
    }

    // MARK: Parts

    private func writeConfiguration() throws {
        // The generator runs until stopped, at the demo's rate; its position is checkpointed in VAR/connect.
        let source = URL(fileURLWithPath: command.connectors).appendingPathComponent("generator.yaml")
        guard let text = try? String(contentsOf: source, encoding: .utf8) else { throw CommandError("cannot read \(source.path)") }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeAll { $0.hasPrefix("count:") || $0.hasPrefix("rate:") }
        lines.append("rate: \(command.rate)")
        let generator = root.appendingPathComponent("config/generator.yaml")
        try lines.joined(separator: "\n").write(to: generator, atomically: true, encoding: .utf8)
        do { _ = try ConnectorConfiguration.load(path: generator.path, environment: ["SLUICE_STATE": root.appendingPathComponent("connect").path]) } catch {
            throw CommandError("\(error)")
        }

        // A small model and short rounds, so a round finishes within a minute on two cores beside the pipeline.
        let train = """
            # Written by `sluice demo`: the retrain controller and trainer of the demo.
            input:
              topic: sluice.shards
              shards_root: \(root.appendingPathComponent("shards").path)
            output: \(root.appendingPathComponent("model").path)
            model: {layers: 2, dim: 64, heads: 2, context: 64}
            training: {steps: \(command.trainSteps), batch: 8, threads: 1, checkpoint_every: \(command.trainSteps), validation_windows: 16}
            optimizer: {lr: 3.0e-3, min_lr: 3.0e-4, warmup: 5}
            loader: {shuffle_buffer: 64, holdout: 20}
            retrain:
              min_new_tokens: \(command.retrainTokens)
              max_interval_seconds: 120
              psi_threshold: null
              state_file: \(root.appendingPathComponent("retrain/controller.json").path)

            """
        try train.write(to: root.appendingPathComponent("config/train.yaml"), atomically: true, encoding: .utf8)
    }

    private func definePartsAndPorts(bootstrap: String) {
        metricsPort = command.metricsPort != 0 ? command.metricsPort : (LocalHTTP.freePort() ?? 9464)
        if command.port == 0 || !LocalHTTP.isFree(port: command.port) {
            gatewayPort = LocalHTTP.freePort() ?? 8081
            if command.port != 0 { event("port \(command.port) is taken; the gateway uses \(gatewayPort)") }
        } else {
            gatewayPort = command.port
        }
        let files = ["file-jsonl", "file-csv", "file-text", "file-html"].map { URL(fileURLWithPath: command.connectors).appendingPathComponent("\($0).yaml").path }
        let train = root.appendingPathComponent("config/train.yaml").path
        let shards = root.appendingPathComponent("shards").path
        // A restarted part gets its partitions back within seconds, not after the 45 s default session timeout.
        let fastRejoin = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]
        parts = [
            DemoPart(name: "generator", arguments: ["connect", "--bootstrap", bootstrap, "--quiet", root.appendingPathComponent("config/generator.yaml").path], directory: root),
            DemoPart(name: "files", arguments: ["connect", "--bootstrap", bootstrap, "--quiet"] + files, directory: root),
            DemoPart(
                name: "pipeline",
                arguments: ["pipeline", "--bootstrap", bootstrap, "--topic", "^raw\\..*", "--group", "sluice-curate", "--output", shards,
                            "--dataset", "demo", "--seal-after", "5", "--metrics-port", String(metricsPort)] + fastRejoin,
                directory: root),
            DemoPart(name: "retrain-watch", arguments: ["retrain", "watch", "--config", train, "--bootstrap", bootstrap], directory: root),
            DemoPart(name: "trainer", arguments: ["retrain", "serve", "--config", train, "--bootstrap", bootstrap, "--threads", "1"] + fastRejoin, directory: root),
        ]
    }

    private func latestAcceptedModel() -> String? {
        registry().last(where: { $0.status == "accepted" })?.checkpoint
    }

    private func registry() -> [ModelVersion] {
        guard let text = try? String(contentsOf: root.appendingPathComponent("model/models/registry.jsonl"), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(ModelVersion.self, from: Data($0.utf8)) }
    }

    // MARK: Progress

    private struct Snapshot {
        var raw: [String: Int64] = [:]
        var dlq: Int64 = 0
        var shardsAnnounced: Int64 = 0
        var metrics: [String: Double]?
    }

    /// One admin client for every progress snapshot of the run.
    private var admin: KafkaAdmin?

    private func snapshot(broker: EmbeddedBroker) async -> Snapshot {
        var result = Snapshot()
        if admin == nil {
            var configuration = KafkaConfiguration()
            configuration.bootstrapServers = broker.bootstrapServers
            admin = try? KafkaAdmin(configuration: configuration, logger: logger)
        }
        if let admin {
            for description in (try? await admin.listTopics(timeout: .seconds(2))) ?? [] {
                var total: Int64 = 0
                for partition in description.partitions {
                    total += (try? await admin.watermarks(topic: description.name, partition: partition.id, timeout: .seconds(2)).high) ?? 0
                }
                if description.name.hasPrefix("raw.") { result.raw[description.name] = total }
                if description.name == "sluice.dlq" { result.dlq = total }
                if description.name == "sluice.shards" { result.shardsAnnounced = total }
            }
        }
        result.metrics = LocalHTTP.get(port: metricsPort, path: "/metrics").map(PrometheusText.parse)
        return result
    }

    private func draw(broker: EmbeddedBroker) async {
        let state = await snapshot(broker: broker)
        let now = clock.now
        let rawTotal = Double(state.raw.values.reduce(0, +))
        let pipelineIn = state.metrics.map { PrometheusText.sum($0, "sluice_records_in_total") } ?? 0
        // Records that passed each stage: in, less the drops of that stage and the ones before it.
        let drops = state.metrics.map { PrometheusText.byLabel($0, "sluice_records_dropped_total", "stage") } ?? [:]
        var passed: [Double] = [pipelineIn]
        for stage in Self.stages { passed.append(passed.last! - (drops[stage] ?? 0)) }
        if let previous, now > previous.time, previous.passed.count == passed.count {
            let seconds = (now - previous.time).inSeconds
            rates = (max(0, rawTotal - previous.raw) / seconds, zip(passed, previous.passed).map { max(0, $0 - $1) / seconds })
        }
        previous = (now, rawTotal, passed)

        let elapsed = Int((now - started).inSeconds)
        var lines: [String] = []
        let until = limit.map { " of \(clockText(Int($0)))" } ?? ""
        lines.append("Sluice demo \(clockText(elapsed))\(until) · broker \(broker.bootstrapServers) · \(root.path) · Ctrl-C stops")
        let topics = state.raw.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "  ")
        lines.append("  connectors  \(topics)  (+\(Int(rates.raw.rounded()))/s) · sluice.dlq \(state.dlq)")
        if let metrics = state.metrics {
            // Records/s into each stage that ran (a stage without drops so far is shown when it has a rate).
            var flow = "in \(Int((rates.passed.first ?? 0).rounded()))/s"
            for (index, stage) in Self.stages.enumerated() where drops[stage] != nil || ["clean", "quality", "dedup"].contains(stage) {
                flow += " → \(stage) \(Int((rates.passed.count > index ? rates.passed[index] : 0).rounded()))/s"
            }
            flow += " → kept \(Int((rates.passed.last ?? 0).rounded()))/s"
            let dropped = drops.sorted { $0.key < $1.key }.map { "\($0.key) \(Int($0.value))" }.joined(separator: ", ")
            lines.append("  pipeline    \(flow)")
            lines.append(
                "              totals: in \(Int(pipelineIn)), kept \(Int(PrometheusText.sum(metrics, "sluice_records_out_total")))"
                    + ", dropped \(dropped.isEmpty ? "none yet" : dropped); shards sealed \(state.shardsAnnounced)")
        } else {
            lines.append("  pipeline    starting (joining its consumer group)…")
            lines.append("              shards sealed \(state.shardsAnnounced)")
        }
        let versions = registry()
        var training = versions.last.map { String(format: "model v%d %@ (validation loss %.3f)", $0.version, $0.status, $0.validationLoss) } ?? "no model yet"
        if let data = try? Data(contentsOf: root.appendingPathComponent("model/models/status.json")),
            let status = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let progress = status["progress"] as? String,
            let request = status["request"] as? String, !versions.contains(where: { $0.request == request })
        {
            training += " · training: " + progress.split(separator: " ").prefix(4).joined(separator: " ")
        }
        lines.append("  training    \(training)")
        if let gateway {
            let state = gateway.isRunning ? "" : " (restarting)"
            lines.append("  gateway     http://127.0.0.1:\(gatewayPort)/ (dashboard; /v1/completions, /v1/score)\(state)")
        } else {
            lines.append("  gateway     waits for the first model")
        }
        for index in 0..<4 { lines.append(index < events.suffix(4).count ? "  event       \(Array(events.suffix(4))[index])" : "") }

        if interactive {
            var text = drawnLines > 0 ? "\u{1B}[\(drawnLines)F" : ""
            for line in lines { text += "\u{1B}[2K" + String(line.prefix(160)) + "\n" }
            Terminal.write(1, text)
            drawnLines = lines.count
        } else {
            Terminal.out(lines.prefix(6).joined(separator: "\n"))
        }
    }

    private func clockText(_ seconds: Int) -> String { String(format: "%02d:%02d", seconds / 60, seconds % 60) }

    // MARK: Summary

    private func summarize(broker: EmbeddedBroker) async throws {
        let raw = await snapshot(broker: broker).raw.values.reduce(0, +)
        let index = try? ShardIndex(path: root.appendingPathComponent("shards/index.sqlite").path)
        let overview = try? index?.overview()
        let versions = registry()
        let all = parts + [gateway].compactMap { $0 }
        let rejected = overview?.rejections.values.reduce(0, +) ?? 0
        var summary: [String: Any] = [
            "seconds": Int((clock.now - started).inSeconds),
            "var": root.path,
            "shards": overview?.shards.count ?? 0,
            "samples": overview?.samples ?? 0,
            "rejected": rejected,
            "raw_records": raw,
            "rejections": overview?.rejections ?? [:],
            "languages": overview?.languages ?? [:],
            "models": versions.map { ["version": $0.version, "status": $0.status, "validation_loss": Double($0.validationLoss), "steps": $0.steps] },
            "parts": Dictionary(uniqueKeysWithValues: all.map { ($0.name, ["starts": $0.starts, "restarts": $0.restarts]) }),
            "events": events,
        ]
        summary["gateway"] = gateway.map { _ in "http://127.0.0.1:\(gatewayPort)/" }
        let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted])
        try data.write(to: root.appendingPathComponent("demo-summary.json"), options: .atomic)

        Terminal.out("")
        Terminal.out("Summary (\(root.appendingPathComponent("demo-summary.json").path)):")
        Terminal.out("  dataset     \(overview?.samples ?? 0) samples in \(overview?.shards.count ?? 0) shards, \(rejected) records dropped and audited: \(root.appendingPathComponent("shards").path)")
        let accounted = (overview?.samples ?? 0) + rejected
        Terminal.out("  records     \(raw) in the raw topics: \(accounted) curated or dropped, \(Int(raw) - accounted) waiting for the next run")
        if let languages = overview?.languages, !languages.isEmpty {
            Terminal.out("  languages   " + languages.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if let rejections = overview?.rejections, !rejections.isEmpty {
            Terminal.out("  dropped     " + rejections.sorted { $0.value > $1.value }.prefix(6).map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if let first = versions.first, let last = versions.last {
            let accepted = versions.filter { $0.status == "accepted" }.count
            let span = versions.count == 1 ? "" : String(format: "v%d validation loss %.3f … ", first.version, first.validationLoss)
            Terminal.out(String(
                format: "  models      %d version%@ (%d accepted): %@v%d %.3f (%@); registry %@", versions.count, versions.count == 1 ? "" : "s",
                accepted, span, last.version, last.validationLoss, last.status, root.appendingPathComponent("model/models/registry.jsonl").path))
        } else {
            Terminal.out("  models      none yet (a round starts after \(command.retrainTokens) bytes of new text)")
        }
        Terminal.out("  parts       " + all.map { "\($0.name) \($0.restarts) restart\($0.restarts == 1 ? "" : "s")" }.joined(separator: ", "))
        Terminal.out("  next        sluice shards ls \(root.appendingPathComponent("shards").path); run the demo again to continue; remove \(root.path) to start afresh")
    }
}
