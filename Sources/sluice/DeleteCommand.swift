import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import SluiceKafka
import SluiceShards
import SluiceText

/// What a deletion matches, from the command line.
struct DeletionSelector: ParsableArguments {
    @Option(help: "Delete the samples with this original id.") var id: String?
    @Option(help: ArgumentHelp("Delete the samples whose source matches this glob pattern.", valueName: "pattern")) var source: String?
    @Option(help: ArgumentHelp("Delete the samples whose url matches this glob pattern, e.g. 'https://example.com/*'.", valueName: "pattern"))
    var url: String?
    @Option(help: ArgumentHelp("Delete the samples whose curated text has this SHA-256 (hex).", valueName: "hex")) var contentSHA256: String?
    @Option(help: "Why (kept with the request and in the audit).") var reason: String?
    @Option(help: ArgumentHelp("The request's id (default: a new one); a request id is applied once.", valueName: "id")) var request: String?

    func validate() throws {
        guard [id, source, url, contentSHA256].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --id, --source, --url or --content-sha256")
        }
        if let contentSHA256, contentSHA256.count != 64 || !contentSHA256.allSatisfy(\.isHexDigit) {
            throw ValidationError("--content-sha256 takes 64 hex digits")
        }
        for pattern in [id, source, url, contentSHA256].compactMap({ $0 }) where pattern.isEmpty {
            throw ValidationError("the value to match must not be empty")
        }
    }

    var deletion: DeletionRequest {
        let (kind, value): (DeletionRequest.Kind, String) =
            if let id { (.id, id) } else if let source { (.source, source) } else if let url { (.url, url) } else { (.contentSHA256, contentSHA256 ?? "") }
        return DeletionRequest(
            request: request ?? "del-\(UUID().uuidString.prefix(8).lowercased())", kind: kind, value: value, reason: reason,
            requestedAt: ISO8601DateFormatter().string(from: Date()))
    }
}

struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete samples: mark them in a dataset's index, or send the request to the control topic.",
        discussion: """
            With --output DIR the request is applied to that dataset at once: matching samples are marked deleted \
            in its index, every reader (the trainer's loader, the gateway's sample lookup, sluice shards cat, the \
            Python client) skips them from then on, and `sluice shards compact DIR` rewrites their shards without \
            them. Prints what matched, as JSON.

            With --bootstrap (and no --output) the request goes to the control topic (default sluice.control) as \
            {"type":"delete","request":…,"by":"id|source|url|content_sha256","value":…}; `sluice control` applies it \
            to its dataset and audits the matches on the same topic.

            Patterns (--source, --url) are globs: * any run of characters, ? one, [abc] a set.
            """)

    @OptionGroup var selector: DeletionSelector
    @Option(help: ArgumentHelp("The dataset directory to apply the request to.", valueName: "dir")) var output: String?
    @Option(help: "The control topic (with --bootstrap).") var topic = "sluice.control"
    @OptionGroup var kafka: KafkaOptions

    func validate() throws {
        if output == nil && kafka.bootstrap == nil && ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"] == nil {
            throw ValidationError("give --output DIR (apply here) or --bootstrap HOST:PORT (send to the control topic)")
        }
    }

    func run() async throws {
        let deletion = selector.deletion
        if let output {
            let index = try ShardsCommand.openIndex(output)
            let outcome = try catching { try index.apply(deletion) }
            Terminal.out(ControlCommand.appliedEvent(deletion, outcome))
            return
        }
        let logger = try kafka.bootstrapLogging()
        let producer = try KafkaProducer(configuration: try kafka.kafkaConfiguration(), logger: logger)
        _ = try await producer.send(
            ProducerMessage(topic: topic, key: Array(deletion.request.utf8), value: Array(deletion.event.utf8)))
        await producer.shutdown(flushTimeout: .seconds(5))
        Terminal.out(deletion.event)
    }
}

struct ControlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control", abstract: "Follow the control topic and apply deletion requests to a dataset.",
        discussion: """
            Reads the control topic (default sluice.control) in a consumer group and applies every deletion request \
            to the dataset in --output within moments of its arrival: matching samples are marked deleted in the \
            index (readers skip them from then on). Each request is applied once (by request id), and its outcome \
            is audited on the same topic as {"type":"deletion_applied","request":…,"matched":N,"keys":[…],…}. With \
            --compact, the affected shards are then rewritten without the deleted samples, audited as \
            {"type":"deletion_compacted",…}. Offsets are committed after a request is applied and audited, so a \
            crash repeats at most the audit. Stops on SIGINT/SIGTERM (or at the end with --exit-at-end).
            """)

    @Option(help: ArgumentHelp("The dataset directory (holds index.sqlite).", valueName: "dir")) var output: String
    @Option(help: "The control topic.") var topic = "sluice.control"
    @Option(help: "Consumer group (default: sluice-control).") var group = "sluice-control"
    @Flag(help: "Rewrite affected shards after each deletion (sluice shards compact).") var compact = false
    @Flag(help: "Exit once the topic's end is reached (for scripts and tests).") var exitAtEnd = false
    @OptionGroup var kafka: KafkaOptions

    static func appliedEvent(_ deletion: DeletionRequest, _ outcome: DeletionOutcome) -> String {
        let keys = outcome.keys.prefix(1000).map(JSONText.string).joined(separator: ",")
        return """
            {"type":"deletion_applied","request":\(JSONText.string(deletion.request)),"by":"\(deletion.kind.rawValue)",\
            "value":\(JSONText.string(deletion.value)),"matched":\(outcome.keys.count),"repeated":\(outcome.repeated),\
            "keys":[\(keys)],"shards":[\(outcome.shards.map(JSONText.string).joined(separator: ","))],\
            "applied_at":"\(ISO8601DateFormatter().string(from: Date()))"}
            """
    }

    static func compactedEvent(request: String, _ results: [CompactionResult]) -> String {
        let shards = results.map { result in
            "{\"retired\":\(JSONText.string(result.retired)),\"replacement\":\(result.replacement.map(JSONText.string) ?? "null"),"
                + "\"sha256\":\(result.replacementSHA256.map(JSONText.string) ?? "null"),\"kept\":\(result.kept),\"removed\":\(result.removed)}"
        }
        return "{\"type\":\"deletion_compacted\",\"request\":\(JSONText.string(request)),\"shards\":[\(shards.joined(separator: ","))]}"
    }

    func run() async throws {
        let index = try ShardsCommand.openIndex(output)
        let logger = try kafka.bootstrapLogging()
        var configuration = try kafka.kafkaConfiguration()
        configuration.groupID = group
        configuration.setDefault("fetch.wait.max.ms", "100")
        if exitAtEnd { configuration["enable.partition.eof"] = "true" }
        var options = KafkaConsumer.Options()
        options.startWithoutCommittedOffset = .beginning
        let consumer = try KafkaConsumer(configuration: configuration, options: options, logger: logger)
        let producer = try KafkaProducer(configuration: try kafka.kafkaConfiguration(), logger: logger)
        try consumer.subscribe([topic])
        let follower = ControlFollower(
            consumer: consumer, producer: producer, index: index, directory: URL(fileURLWithPath: output), topic: topic,
            compact: compact, exitAtEnd: exitAtEnd)
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: [.init(service: follower, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await serviceGroup.run()
        await consumer.close()
        await producer.shutdown(flushTimeout: .seconds(5))
        if let problem = follower.problem.value { throw CommandError(problem) }
    }
}

/// Applies the control topic's deletion requests as they arrive.
struct ControlFollower: Service {
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    let index: ShardIndex
    let directory: URL
    let topic: String
    let compact: Bool
    let exitAtEnd: Bool
    let problem = Box<String>()

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await follow() }
        } catch is CancellationError {
        } catch {
            problem.value = "\(error)"
        }
    }

    private func follow() async throws {
        var assigned = Set<TopicPartition>()
        var atEnd = Set<TopicPartition>()
        var iterator = consumer.events.makeAsyncIterator()
        while let event = try await iterator.next() {
            switch event {
            case .record(let record):
                atEnd.remove(record.topicPartition)
                try await handle(record)
                try consumer.store(record)
            case .assigned(let partitions):
                assigned.formUnion(partitions)
            case .revoked(let partitions), .lost(let partitions):
                assigned.subtract(partitions)
                atEnd.subtract(partitions)
            case .partitionEOF(let position):
                atEnd.insert(position.topicPartition)
                if exitAtEnd && !assigned.isEmpty && atEnd.isSuperset(of: assigned) && !iterator.hasBufferedEvents { return }
            case .error(let error):
                Terminal.err("sluice control: \(error)")
                if error.code == .unknownTopic { throw error }
            }
        }
    }

    private func handle(_ record: KafkaRecord) async throws {
        guard let value = record.valueBytes else { return }
        let deletion: DeletionRequest
        do {
            guard let parsed = try DeletionRequest.parse(event: Array(value)) else { return }  // an audit event or another type
            deletion = parsed
        } catch {
            try await audit(
                "{\"type\":\"deletion_refused\",\"offset\":\(record.offset),\"partition\":\(record.partition),\"reason\":\(JSONText.string(error.reason))}",
                key: "refused")
            return
        }
        let outcome = try index.apply(deletion)
        Terminal.out("deletion \(deletion.request): \(outcome.keys.count) samples\(outcome.repeated ? " (applied before)" : "")")
        try await audit(ControlCommand.appliedEvent(deletion, outcome), key: deletion.request)
        if compact && !outcome.shards.isEmpty {
            let results = try ShardsCommand.compact(index, directory: directory)
            try await audit(ControlCommand.compactedEvent(request: deletion.request, results), key: deletion.request)
        }
    }

    private func audit(_ event: String, key: String) async throws {
        _ = try await producer.send(ProducerMessage(topic: topic, key: Array(key.utf8), value: Array(event.utf8)))
    }
}
