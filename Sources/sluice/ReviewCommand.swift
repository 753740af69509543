import ArgumentParser
import Foundation
import Logging
import SluiceKafka
import SluicePipeline
import SluiceText

struct ReviewCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "review", abstract: "Review quarantined records: list them, accept or reject each.",
        discussion: """
            With quarantine: in the pipeline configuration, borderline records (a quality score inside the \
            configured band) go to the quarantine topic (default sluice.quarantine) with their original bytes, \
            position, reason and score, instead of being kept or dropped. `sluice review list` shows those still \
            undecided; `accept` sends a record back to its original topic, marked reviewed (it skips the quality \
            rules and the quarantine, and keeps its original position, so it lands once); `reject` leaves it \
            dropped. Each decision is recorded on the quarantine topic, and a record is decided once.

            Records are named topic/partition/offset, as `list` prints them.
            """,
        subcommands: [List.self, Accept.self, Reject.self])

    struct Options: ParsableArguments {
        @Option(help: "The quarantine topic.") var topic = "sluice.quarantine"
        @OptionGroup var kafka: KafkaOptions
    }

    /// A quarantined record, and whether it was decided.
    struct Entry {
        var position: String
        var record: KafkaRecord
        var reason: String
        var score: String?
        var decision: String?
    }

    static func entries(_ options: Options) async throws -> [Entry] {
        let logger = try options.kafka.bootstrapLogging()
        let records = try await ReplayCommand.readAll(topic: options.topic, configuration: try options.kafka.kafkaConfiguration(), logger: logger)
        var entries: [String: Entry] = [:]
        var order: [String] = []
        for record in records {
            func header(_ name: String) -> String? { record.headers.last { $0.name == name }?.value.map { String(decoding: $0, as: UTF8.self) } }
            if header("sluice.event") == "review" {
                guard let value = record.valueBytes, let event = (try? JSONSerialization.jsonObject(with: Data(value))) as? [String: Any],
                    let position = event["record"] as? String, let decision = event["decision"] as? String
                else { continue }
                if entries[position]?.decision == nil { entries[position]?.decision = decision }
                continue
            }
            guard let topic = header("sluice.source.topic"), let partition = header("sluice.source.partition"),
                let offset = header("sluice.source.offset")
            else { continue }
            let position = "\(topic)/\(partition)/\(offset)"
            if entries[position] == nil { order.append(position) }
            entries[position] = Entry(position: position, record: record, reason: header("sluice.reason") ?? "", score: header("sluice.score"))
        }
        return order.compactMap { entries[$0] }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Print undecided quarantined records as JSON lines.")
        @OptionGroup var options: Options
        @Flag(help: "Also print decided ones, with their decision.") var all = false
        func run() async throws {
            for entry in try await ReviewCommand.entries(options) where all || entry.decision == nil {
                let text = entry.record.valueBytes.map { String(decoding: $0.prefix(200), as: UTF8.self) } ?? ""
                Terminal.out(
                    "{\"record\":\(JSONText.string(entry.position)),\"reason\":\(JSONText.string(entry.reason)),\"score\":\(entry.score ?? "null"),"
                        + "\"decision\":\(entry.decision.map(JSONText.string) ?? "null"),\"value\":\(JSONText.string(text))}")
            }
        }
    }

    /// Accepts or rejects the named records (or every undecided one with --all).
    static func decide(_ decision: String, records: [String], all: Bool, options: Options) async throws {
        guard all != !records.isEmpty else { throw ValidationError("name records (topic/partition/offset) or give --all") }
        let entries = try await ReviewCommand.entries(options)
        let byPosition = Dictionary(entries.map { ($0.position, $0) }, uniquingKeysWith: { first, _ in first })
        var chosen: [Entry] = []
        for position in all ? entries.filter({ $0.decision == nil }).map(\.position) : records {
            guard let entry = byPosition[position] else { throw CommandError("\(position) is not in quarantine (see sluice review list)") }
            if let decided = entry.decision { throw CommandError("\(position) was already decided: \(decided)") }
            chosen.append(entry)
        }
        let logger = try options.kafka.bootstrapLogging()
        let producer = try KafkaProducer(configuration: try options.kafka.kafkaConfiguration(), logger: logger)
        var messages: [ProducerMessage] = []
        for entry in chosen {
            if decision == "accept" {
                let parts = entry.position.split(separator: "/")
                var headers = entry.record.headers.filter { !$0.name.hasPrefix("sluice.") }
                headers.append(KafkaHeader(name: ReplayHeader.name, string: entry.position))
                headers.append(KafkaHeader(name: ReviewHeader.name, string: "accept"))
                messages.append(ProducerMessage(
                    topic: parts.dropLast(2).joined(separator: "/"), key: entry.record.keyBytes.map(Array.init),
                    value: entry.record.valueBytes.map(Array.init), headers: headers))
            }
            let event = "{\"type\":\"review\",\"record\":\(JSONText.string(entry.position)),\"decision\":\"\(decision)\",\"decided_at\":\"\(ISO8601DateFormatter().string(from: Date()))\"}"
            messages.append(ProducerMessage(
                topic: options.topic, key: Array(entry.position.utf8), value: Array(event.utf8), headers: [KafkaHeader(name: "sluice.event", string: "review")]))
        }
        if !messages.isEmpty { try await producer.send(batch: messages) }
        await producer.shutdown(flushTimeout: .seconds(10))
        Terminal.out("{\"decision\":\"\(decision)\",\"records\":\(chosen.count)}")
    }

    struct Accept: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send records back through the pipeline, marked reviewed.")
        @OptionGroup var options: Options
        @Argument(help: "Records, as topic/partition/offset.") var records: [String] = []
        @Flag(help: "Every undecided record.") var all = false
        func run() async throws { try await ReviewCommand.decide("accept", records: records, all: all, options: options) }
    }

    struct Reject: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Leave records dropped, and record the decision.")
        @OptionGroup var options: Options
        @Argument(help: "Records, as topic/partition/offset.") var records: [String] = []
        @Flag(help: "Every undecided record.") var all = false
        func run() async throws { try await ReviewCommand.decide("reject", records: records, all: all, options: options) }
    }
}
