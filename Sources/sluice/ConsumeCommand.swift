import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import SluiceKafka

struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Print a topic's records as JSON Lines (or raw values).",
        discussion: """
            Each output line is {"topic","partition","offset","key","value","headers","timestamp"}; keys and values \
            are strings when they are UTF-8, {"base64": …} otherwise, null when absent. With --group the consumer \
            joins that group, commits what it printed when it stops, and --from stored (the default) resumes at the \
            group's committed offsets. Without a group every partition is read. SIGINT or SIGTERM stops cleanly.
            """)

    enum Start: String, ExpressibleByArgument, CaseIterable {
        case beginning, end, stored
    }

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case json, value
    }

    @Option(name: .shortAndLong, help: "The topic to read.")
    var topic: String

    @Option(name: .shortAndLong, help: "Consumer group; committed offsets are kept per group.")
    var group: String?

    @Option(name: .long, help: "Where to start: beginning, end, or stored (the group's committed offsets; needs --group).")
    var from: Start?

    @Option(name: .shortAndLong, help: "Exit after this many records.")
    var count: Int?

    @Flag(name: .long, help: "Exit once every assigned partition reached its end.")
    var exitAtEnd = false

    @Option(name: .long, help: "Output: json (one object per line) or value (raw value bytes and a newline).")
    var format: Format = .json

    @OptionGroup var kafka: KafkaOptions

    func validate() throws {
        if from == .stored && group == nil { throw ValidationError("--from stored needs --group") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() async throws {
        let logger = try kafka.bootstrapLogging()
        var configuration = try kafka.kafkaConfiguration()
        configuration.groupID = group
        if exitAtEnd { configuration["enable.partition.eof"] = "true" }
        configuration.setDefault("fetch.wait.max.ms", "100")
        var options = KafkaConsumer.Options()
        let start = from ?? (group == nil ? .beginning : .stored)
        options.startWithoutCommittedOffset = start == .end ? .end : .beginning
        options.ignoreCommittedOffsets = start != .stored
        let consumer = try KafkaConsumer(configuration: configuration, options: options, logger: logger)
        var initialAssignment = Set<TopicPartition>()
        if group != nil {
            try consumer.subscribe([topic])
        } else {
            let partitions = try await consumer.partitions(of: topic)
            let offset = start == .end ? KafkaOffset.end : KafkaOffset.beginning
            try await consumer.assign(partitions.map { TopicPartitionOffset(topic: topic, partition: $0, offset: offset) })
            initialAssignment = Set(partitions.map { TopicPartition(topic: topic, partition: $0) })
        }
        let printer = RecordPrinter(
            consumer: consumer, format: format, count: count, exitAtEnd: exitAtEnd, commits: group != nil,
            initialAssignment: initialAssignment)
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: [.init(service: printer, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await serviceGroup.run()
        await consumer.close()
        if let problem = printer.problem.value {
            Terminal.err("sluice consume: \(problem)")
            throw ExitCode.failure
        }
    }
}

/// A value one task sets and another reads after it finished.
final class Box<T: Sendable>: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = NSLock()
    private var stored: T?
    var value: T? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// Prints records until the count, the end, or a graceful shutdown.
struct RecordPrinter: Service {
    let consumer: KafkaConsumer
    let format: ConsumeCommand.Format
    let count: Int?
    let exitAtEnd: Bool
    let commits: Bool
    let initialAssignment: Set<TopicPartition>
    let problem = Box<String>()

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await printRecords() }
        } catch is CancellationError {
        } catch {
            problem.value = "\(error)"
        }
    }

    private func printRecords() async throws {
        var output: [UInt8] = []
        output.reserveCapacity(1 << 17)
        var printed = 0
        var assigned = initialAssignment
        var atEnd = Set<TopicPartition>()
        var iterator = consumer.events.makeAsyncIterator()
        defer { flush(&output) }
        while let event = try await iterator.next() {
            switch event {
            case .record(let record):
                switch format {
                case .json: record.appendJSONLine(to: &output)
                case .value:
                    if let value = record.valueBytes { output.append(contentsOf: value) }
                    output.append(UInt8(ascii: "\n"))
                }
                if exitAtEnd && !atEnd.isEmpty { atEnd.remove(record.topicPartition) }
                if commits { try consumer.store(record) }
                printed += 1
                if let count, printed >= count { return }
            case .assigned(let partitions):
                assigned.formUnion(partitions)
            case .revoked(let partitions), .lost(let partitions):
                flush(&output)
                assigned.subtract(partitions)
                atEnd.subtract(partitions)
            case .partitionEOF(let position):
                atEnd.insert(position.topicPartition)
                if exitAtEnd && !assigned.isEmpty && atEnd.isSuperset(of: assigned) && !iterator.hasBufferedEvents {
                    return
                }
            case .error(let error):
                Terminal.err("sluice consume: \(error)")
                if error.code == .unknownTopic { throw error }
            }
            if output.count >= 1 << 16 || !iterator.hasBufferedEvents { flush(&output) }
        }
    }

    private func flush(_ output: inout [UInt8]) {
        guard !output.isEmpty else { return }
        output.withUnsafeBufferPointer { Terminal.writeAll(1, $0) }
        output.removeAll(keepingCapacity: true)
    }
}
