import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import SluiceConnectors
import SluiceKafka
import SluicePipeline

struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Run the embedded Kafka broker (librdkafka's mock cluster) until SIGINT or SIGTERM.",
        discussion: """
            Prints the bootstrap address as the first line on standard output, then serves other processes \
            (sluice, kcat, confluent-kafka) on 127.0.0.1. Data lives in memory only. The mock cluster has no admin \
            API, so topics with explicit partition counts are created here, at start (--topics, --topic) or by a \
            `topic NAME PARTITIONS` command. It keeps at most 5 MiB per partition and drops the oldest data \
            beyond that; Sluice's consumers report such loss as an error.

            Commands on standard input (one per line; each answers `ok …` or `error: …` on standard output):
              down ID|-1            take a broker (or all) down
              up ID|-1              bring it back
              rtt ID|-1 MS          add latency to every response
              err API CODE[,CODE…]  fail the next requests of Kafka API number API
                                    (0 Produce, 1 Fetch, 8 OffsetCommit)
              topic NAME PARTITIONS create a topic
            """)

    @Option(name: .long, help: "Number of brokers (ids 1…N).")
    var brokers: Int = 1

    @Option(name: .long, help: ArgumentHelp("Also write the bootstrap address to this file (atomically).", valueName: "path"))
    var bootstrapFile: String?

    @Option(name: .long, help: ArgumentHelp("Create the topics declared in this directory at start.", valueName: "dir"))
    var topics: String?

    @Option(name: .customLong("topic"), help: ArgumentHelp("Create a topic at start (repeatable).", valueName: "name:partitions"))
    var extraTopics: [String] = []

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    func validate() throws {
        guard (1...16).contains(brokers) else { throw ValidationError("--brokers must be from 1 to 16") }
        for spec in extraTopics { _ = try Self.parseTopic(spec) }
    }

    static func parseTopic(_ spec: String) throws -> (String, Int32) {
        let parts = spec.split(separator: ":")
        guard parts.count == 2, !parts[0].isEmpty, let count = Int32(parts[1]), count >= 1 else {
            throw ValidationError("--topic expects NAME:PARTITIONS (e.g. raw.web:6), got '\(spec)'")
        }
        return (String(parts[0]), count)
    }

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level '\(logLevel)'") }
        let logger = makeLogger(level: level)
        let declarations = try topics.map { try TopicCatalog.load(directory: URL(fileURLWithPath: $0)) } ?? []
        let broker = try EmbeddedBroker(brokers: brokers, logger: logger)
        for outcome in try TopicProvisioner.apply(declarations, broker: broker) {
            Terminal.err("topic \(outcome.name): \(outcome.partitions) partitions")
        }
        for spec in extraTopics {
            let (name, partitions) = try Self.parseTopic(spec)
            try broker.createTopic(name, partitions: partitions)
            Terminal.err("topic \(name): \(partitions) partitions")
        }
        if let bootstrapFile {
            let temporary = bootstrapFile + ".tmp"
            try Data((broker.bootstrapServers + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, bootstrapFile) == 0 else {
                throw ValidationError("cannot write \(bootstrapFile): \(String(cString: strerror(errno)))")
            }
        }
        Terminal.out(broker.bootstrapServers)
        Terminal.err("embedded broker with \(brokers) broker(s) on \(broker.bootstrapServers); SIGINT or SIGTERM stops it")

        let commands = Thread { BrokerControl.serve(broker) }
        commands.name = "sluice-broker-stdin"
        commands.start()

        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: EmbeddedBrokerService(broker: broker))],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        if let bootstrapFile { unlink(bootstrapFile) }
        Terminal.err("embedded broker stopped")
    }
}

/// Keeps the embedded broker up until graceful shutdown, then destroys it.
struct EmbeddedBrokerService: Service {
    let broker: EmbeddedBroker

    func run() async throws {
        try? await gracefulShutdown()
        broker.shutdown()
    }
}

/// The fault-injection commands read from standard input.
enum BrokerControl {
    static func serve(_ broker: EmbeddedBroker) {
        var reader = LineReader(descriptor: 0)
        while let line = try? reader.nextLine() {
            let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty, !text.hasPrefix("#") else { continue }
            do {
                Terminal.out("ok " + (try execute(text, on: broker)))
            } catch {
                Terminal.out("error: \(error)")
            }
        }
    }

    static func execute(_ line: String, on broker: EmbeddedBroker) throws -> String {
        let words = line.split(separator: " ").map(String.init)
        func int32(_ index: Int) throws -> Int32 {
            guard index < words.count, let value = Int32(words[index]) else {
                throw ValidationError("'\(line)': expected a number at position \(index + 1)")
            }
            return value
        }
        switch words[0] {
        case "down":
            try broker.setBrokerDown(try int32(1))
        case "up":
            try broker.setBrokerUp(try int32(1))
        case "rtt":
            try broker.setRoundTripTime(try int32(1), milliseconds: try int32(2))
        case "err":
            guard words.count == 3, let api = Int16(words[1]) else {
                throw ValidationError("'\(line)': expected err API CODE[,CODE…]")
            }
            let codes = try words[2].split(separator: ",").map { part -> Int32 in
                guard let code = Int32(part) else { throw ValidationError("'\(part)' is not an error code") }
                return code
            }
            try broker.pushRequestErrors(apiKey: api, errors: codes)
        case "topic":
            guard words.count == 3 else { throw ValidationError("'\(line)': expected topic NAME PARTITIONS") }
            let outcome = try broker.createTopic(words[1], partitions: try int32(2))
            return "\(line) (\(outcome == .created ? "created" : "already exists"))"
        default:
            throw ValidationError("unknown command '\(words[0])'; expected down, up, rtt, err or topic")
        }
        return line
    }
}
