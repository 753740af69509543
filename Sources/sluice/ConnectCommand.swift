import ArgumentParser
import Foundation
import Logging
import SluiceConfig
import SluiceConnectors
import SluiceKafka
import SluiceText

struct ConnectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Run source connectors that produce envelope records into raw topics.",
        discussion: """
            Each FILE.yaml describes one connector (see docs/connectors.md and the examples in connectors/):
              name: web-files          type: file|http|sqlite|generator|stdin
              topic: raw.web           path: data/*.jsonl      format: jsonl|csv|text|html
              state_dir: var/connect   (where positions are checkpointed)
            Positions are checkpointed only after the broker acknowledged the records, so a restart neither \
            re-sends acknowledged records (beyond those of the last checkpoint interval) nor skips any. Bad input \
            (unparseable JSON, wrong CSV column count) goes to sluice.dlq with file and line, and the connector \
            goes on.

            Without --bootstrap (or kafka.bootstrap.servers, or $SLUICE_BOOTSTRAP) the embedded broker starts in \
            this process with each connector's topic (6 partitions) and the DLQ topic; there, backpressure \
            against the retention of 5 MiB per partition is on by default (group sluice-curate).

            --once stops when every input is exhausted and acknowledged (scripts and tests). Without it, file \
            sources with follow: true follow their input like tail -F (without follow they read once and end), \
            SQLite sources keep polling, the HTTP source keeps serving, and a generator runs to its count (or \
            forever without one). SIGINT or SIGTERM stops reading, waits for the acknowledgements, writes the \
            checkpoints and exits. The last line on standard output is a JSON summary.
            """)

    @Argument(help: ArgumentHelp("Connector files (YAML).", valueName: "FILE.yaml"))
    var files: [String] = []

    @Option(name: .long, help: ArgumentHelp("Bootstrap servers for every connector (default: each file's kafka.bootstrap.servers, then $SLUICE_BOOTSTRAP).", valueName: "host:port"))
    var bootstrap: String?

    @Flag(name: .long, help: "Stop when the inputs are exhausted and everything is acknowledged.")
    var once = false

    @Flag(name: .long, help: "Validate the connector files, print what each would do, and exit.")
    var check = false

    @Option(
        name: [.customShort("X"), .customLong("property")],
        help: ArgumentHelp("One librdkafka property for every connector, key=value (repeatable; wins over the files).", valueName: "key=value"))
    var properties: [String] = []

    @Flag(name: .long, help: "No progress line on standard error, even on a terminal.")
    var quiet = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = ProcessInfo.processInfo.environment["SLUICE_LOG_LEVEL"] ?? "notice"

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("give at least one connector file (FILE.yaml); examples are in connectors/") }
        guard Logger.Level(rawValue: logLevel.lowercased()) != nil else {
            throw ValidationError("unknown log level '\(logLevel)'; use trace, debug, info, notice, warning, error or critical")
        }
        for property in properties where property.firstIndex(of: "=").map({ $0 == property.startIndex }) ?? true {
            throw ValidationError("-X expects key=value, got '\(property)'")
        }
    }

    func loadConfigurations() throws -> [ConnectorConfiguration] {
        let environment = ProcessInfo.processInfo.environment
        var configurations: [ConnectorConfiguration] = []
        for file in files {
            var configuration: ConnectorConfiguration
            do { configuration = try ConnectorConfiguration.load(path: file, environment: environment) } catch {
                throw CommandError("\(error)")
            }
            for property in properties {
                let equals = property.firstIndex(of: "=")!
                configuration.kafka[String(property[..<equals])] = String(property[property.index(after: equals)...])
            }
            if let bootstrap = bootstrap ?? (configuration.kafka.bootstrapServers == nil ? environment["SLUICE_BOOTSTRAP"] : nil) {
                configuration.kafka["bootstrap.servers"] = bootstrap
            }
            if let other = configurations.first(where: { $0.name == configuration.name }) {
                throw CommandError("\(file): name \(configuration.name) is also used by \(other.file); names must be unique (they name the state files)")
            }
            configurations.append(configuration)
        }
        let embedded = configurations.contains { $0.kafka.bootstrapServers == nil }
        if embedded && configurations.contains(where: { $0.kafka.bootstrapServers != nil }) {
            throw CommandError("some connectors name a cluster and some do not; give --bootstrap to run them all against one")
        }
        return configurations
    }

    func run() async throws {
        let logger = makeLogger(level: Logger.Level(rawValue: logLevel.lowercased())!)
        var configurations = try loadConfigurations()
        if check {
            for configuration in configurations {
                let target = configuration.kafka.bootstrapServers.map { "bootstrap \($0)" } ?? "embedded broker"
                let guardText = configuration.backpressure.map { "backpressure: group \($0.group), \($0.retentionBytes) bytes × \($0.headroom)" }
                    ?? (configuration.kafka.bootstrapServers == nil && !configuration.backpressureConfigured ? "backpressure: embedded default" : "backpressure: off")
                Terminal.out("\(configuration.file): OK: \(configuration.name) (\(configuration.type.rawValue)) → \(configuration.topic); \(target); \(guardText)")
            }
            return
        }
        var broker: EmbeddedBroker?
        if configurations.contains(where: { $0.kafka.bootstrapServers == nil }) {
            let embedded = try EmbeddedBroker(logger: logger)
            var created = Set<String>()
            for configuration in configurations {
                for topic in [configuration.topic, configuration.dlqTopic] where !created.contains(topic) && !topic.contains("{") {
                    try embedded.createTopic(topic, partitions: topic == configuration.dlqTopic ? 3 : 6)
                    created.insert(topic)
                }
            }
            for index in configurations.indices {
                configurations[index].kafka["bootstrap.servers"] = embedded.bootstrapServers
                if !configurations[index].backpressureConfigured {
                    configurations[index].backpressure = ConnectorConfiguration.Backpressure()
                }
            }
            Terminal.err("embedded broker on \(embedded.bootstrapServers) (in memory); run the pipeline against it with --bootstrap \(embedded.bootstrapServers)")
            broker = embedded
        }
        defer { broker?.shutdown() }

        var created: [ConnectorRunner] = []
        for configuration in configurations {
            do {
                created.append(try ConnectorRunner(configuration: configuration, kafka: configuration.kafka, logger: logger))
            } catch {
                throw CommandError("\(configuration.file): \(error)")
            }
        }
        let runners = created
        let signalSources = stopOnSignals("stopping: waiting for acknowledgements, then writing checkpoints (again to exit at once)") {
            for runner in runners { runner.requestStop() }
        }
        defer { signalSources.forEach { $0.cancel() } }

        let showProgress = !quiet && isatty(2) != 0
        let once = self.once
        let progressTask = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                guard showProgress, !Task.isCancelled else { continue }
                Terminal.write(2, "\r\u{1B}[K" + runners.map { Self.progressLine($0) }.joined(separator: " | "))
            }
        }
        var failures: [String] = []
        var results: [(ConnectorRunner, ConnectorRunner.Progress)] = []
        await withTaskGroup(of: RunOutcome.self) { group in
            for (index, runner) in runners.enumerated() {
                group.addTask {
                    do {
                        return RunOutcome(index: index, progress: try await runner.run(once: once), error: nil)
                    } catch {
                        return RunOutcome(index: index, progress: nil, error: "\(error)")
                    }
                }
            }
            for await outcome in group {
                let runner = runners[outcome.index]
                if let progress = outcome.progress {
                    results.append((runner, progress))
                } else {
                    failures.append("\(runner.configuration.name): \(outcome.error ?? "failed")")
                    results.append((runner, runner.progress))
                    // One connector failing stops the others cleanly: their checkpoints stay exact.
                    for other in runners { other.requestStop() }
                }
            }
        }
        progressTask.cancel()
        await progressTask.value
        if showProgress { Terminal.write(2, "\r\u{1B}[K") }
        Terminal.out(Self.summary(results))
        if !failures.isEmpty { throw CommandError(failures.joined(separator: "; ")) }
    }

    static func progressLine(_ runner: ConnectorRunner) -> String {
        let progress = runner.progress
        let rate = progress.seconds > 0 ? Double(progress.records) / progress.seconds : 0
        var line = "\(runner.configuration.name): \(progress.records) records (\(Int(rate))/s), "
            + String(format: "%.1f MB", Double(progress.bytes) / 1e6) + ", dlq \(progress.dlq), unacked \(progress.outstanding)"
        if let note = progress.note, !note.isEmpty { line += ", \(note)" }
        if let holding = progress.holding { line += " — waiting: \(holding)" }
        return line
    }

    static func summary(_ results: [(ConnectorRunner, ConnectorRunner.Progress)]) -> String {
        let items = results.sorted { $0.0.configuration.name < $1.0.configuration.name }.map { runner, progress in
            let seconds = max(progress.seconds, 1e-9)
            return "{\"name\":\(JSONText.string(runner.configuration.name)),\"type\":\"\(runner.configuration.type.rawValue)\","
                + "\"topic\":\(JSONText.string(runner.configuration.topic)),\"records\":\(progress.records),\"bytes\":\(progress.bytes),"
                + "\"dlq\":\(progress.dlq),\"acknowledged\":\(progress.acknowledged),\"unacknowledged\":\(progress.outstanding),"
                + String(format: "\"seconds\":%.3f,\"records_per_second\":%.0f,\"mb_per_second\":%.2f}", progress.seconds,
                    Double(progress.records) / seconds, Double(progress.bytes) / 1e6 / seconds)
        }
        return "{\"connectors\":[" + items.joined(separator: ",") + "]}"
    }
}

/// How one connector's run ended.
struct RunOutcome: Sendable {
    let index: Int
    let progress: ConnectorRunner.Progress?
    let error: String?
}

/// A flag set once from a signal handler.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    /// Sets the flag; true when it was not set before.
    func set() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        defer { value = true }
        return !value
    }

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}
