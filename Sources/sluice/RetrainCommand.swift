import ArgumentParser
import Foundation
import Logging
import SluiceConfig
import SluiceKafka
import SluiceTrain

struct RetrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retrain",
        abstract: "Event-driven retraining: watch the shards topic for reasons to retrain, and serve training requests.",
        discussion: """
            Two long-running consumers, usually run side by side:
              sluice retrain watch --config train.yaml   # sluice.shards → requests on sluice.train
              sluice retrain serve --config train.yaml   # sluice.train → models on sluice.models

            `watch` profiles every new shard (tokens, quality-score bins, languages) and requests a model when new \
            tokens reach retrain.min_new_tokens, when retrain.max_interval_seconds passed with new shards waiting, \
            or when the quality-score or language distribution of the new shards drifts from the data covered \
            before (population stability index ≥ retrain.psi_threshold). Every request lists why it fired.

            `serve` continues the current model on a request's new shards plus a replay sample of older ones, \
            evaluates candidate and current model on the same held-out windows, and publishes the candidate on \
            sluice.models only when validation loss does not regress; otherwise the registry \
            (OUTPUT/models/registry.jsonl) records it as rejected. config/train.yaml shows every key.
            """,
        subcommands: [Watch.self, Serve.self])

    struct Common: ParsableArguments {
        @Option(help: ArgumentHelp("A train.yaml file (its kafka, input, model, training, optimizer, loader and retrain sections).", valueName: "file"))
        var config: String?
        @Option(help: ArgumentHelp("Kafka bootstrap servers (wins over the file).", valueName: "host:port")) var bootstrap: String?
        @Option(name: [.customShort("X"), .customLong("property")], help: ArgumentHelp("A librdkafka property (repeatable).", valueName: "key=value"))
        var properties: [String] = []
        @Option(help: ArgumentHelp("Resolve relative shard paths of announcements here.", valueName: "dir")) var shardsRoot: String?
        @Flag(help: "Stop when the input topic is drained instead of waiting for more.") var exitAtEnd = false
        @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel = "notice"

        func load() throws -> (TrainFile, KafkaConfiguration, Logger) {
            var file = TrainFile()
            if let config {
                guard let text = try? String(contentsOfFile: config, encoding: .utf8) else { throw CommandError("cannot read \(config)") }
                do { file = try TrainFile.load(yaml: text, file: config, environment: ProcessInfo.processInfo.environment) } catch {
                    throw CommandError("\(error)")
                }
            }
            var kafka = KafkaConfiguration()
            for (key, value) in file.kafka { kafka[key] = value }
            for property in properties {
                guard let equals = property.firstIndex(of: "="), equals != property.startIndex else {
                    throw ValidationError("-X expects key=value, got '\(property)'")
                }
                kafka[String(property[..<equals])] = String(property[property.index(after: equals)...])
            }
            if let bootstrap = bootstrap ?? ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"] { kafka.bootstrapServers = bootstrap }
            guard kafka.bootstrapServers != nil else {
                throw ValidationError("no Kafka cluster: pass --bootstrap HOST:PORT (or kafka.bootstrap.servers in the config file); `sluice broker` starts one locally")
            }
            if let shardsRoot { file.shardsRoot = shardsRoot }
            if exitAtEnd { file.exitAtEnd = true }
            guard let level = Logger.Level(rawValue: logLevel.lowercased()) else { throw ValidationError("unknown log level '\(logLevel)'") }
            return (file, kafka, makeLogger(level: level))
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Follow the shards topic and publish retrain requests on sluice.train.")
        @OptionGroup var common: Common
        @Option(help: ArgumentHelp("Where the controller keeps its position and profiles (default: .sluice/retrain-controller.json).", valueName: "file"))
        var state: String?
        @Option(help: "Request after this many new tokens (bytes of text).") var minNewTokens: Int?
        @Option(help: "Request when this many seconds passed with new shards waiting.") var maxInterval: Double?
        @Option(help: "Request when the PSI of quality scores or languages reaches this.") var psi: Double?

        func run() async throws {
            let (file, kafka, logger) = try common.load()
            var settings = RetrainController.Settings(
                kafka: kafka, stateFile: URL(fileURLWithPath: state ?? file.stateFile ?? ".sluice/retrain-controller.json"))
            settings.shardsTopic = file.topic
            settings.trainTopic = file.trainTopic
            settings.shardsRoot = file.shardsRoot.map { URL(fileURLWithPath: $0) }
            settings.exitAtEnd = file.exitAtEnd
            settings.policy = file.policy
            if let minNewTokens { settings.policy.minNewTokens = minNewTokens }
            if let maxInterval { settings.policy.maxIntervalSeconds = maxInterval }
            if let psi { settings.policy.psiThreshold = psi }
            let controller: RetrainController
            do { controller = try RetrainController(settings: settings, logger: logger) } catch { throw CommandError(error.reason) }
            let sources = stopOnSignals { controller.requestStop() }
            defer { sources.forEach { $0.cancel() } }
            let requests = try await controller.run()
            Terminal.err("\(requests.count) request(s) sent; state in \(settings.stateFile.path)")
            for request in requests {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                var compact = request
                compact.shards = []
                print(String(decoding: try encoder.encode(compact), as: UTF8.self))
            }
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take retrain requests, train candidates, publish the ones that do not regress.")
        @OptionGroup var common: Common
        @Option(help: ArgumentHelp("Where model versions and the registry go.", valueName: "dir")) var output: String?
        @Option(help: "Most steps of one retraining round.") var maxSteps: Int?
        @Option(help: "Older shards replayed per new shard (default 0.25).") var replay: Double?
        @Option(help: "Accept a candidate whose validation loss is at most the current's × (1 + this); default 0.") var tolerance: Float?
        @Option(help: "Threads (default 2).") var threads: Int?

        func run() async throws {
            let (file, kafka, logger) = try common.load()
            guard let output = output ?? file.output else { throw ValidationError("give --output DIR (or output: in the config file)") }
            var training = file.configuration
            if !file.scheduleLengthGiven { training.steps = 500 }
            if let maxSteps { training.steps = maxSteps }
            if let threads { training.threads = threads }
            if let problem = training.problem { throw ValidationError(problem) }
            var settings = RetrainService.Settings(kafka: kafka, output: URL(fileURLWithPath: output), training: training)
            settings.trainTopic = file.trainTopic
            settings.modelsTopic = file.modelsTopic
            settings.shardsRoot = file.shardsRoot.map { URL(fileURLWithPath: $0) }
            settings.exitAtEnd = file.exitAtEnd
            settings.replayFraction = replay ?? file.replayFraction
            settings.regressionTolerance = tolerance ?? file.regressionTolerance
            guard settings.replayFraction >= 0 else { throw ValidationError("--replay must be 0 or more") }
            let service: RetrainService
            do { service = try RetrainService(settings: settings, logger: logger) } catch { throw CommandError(error.reason) }
            let sources = stopOnSignals { service.requestStop() }
            defer { sources.forEach { $0.cancel() } }
            let versions = try await service.run()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for version in versions { print(String(decoding: try encoder.encode(version), as: UTF8.self)) }
        }
    }
}

/// SIGINT/SIGTERM print `message` and call `stop` once; a second signal exits at once (status 130).
func stopOnSignals(
    _ message: String = "stopping after the current step or request (again to exit at once)", _ stop: @escaping @Sendable () -> Void
) -> [any DispatchSourceSignal] {
    let flag = LockedFlag()
    return [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number)
        source.setEventHandler {
            if flag.set() {
                Terminal.err(message)
                stop()
            } else {
                Foundation.exit(130)
            }
        }
        source.resume()
        return source
    }
}
