import ArgumentParser
import Foundation
import Logging
import SluiceConnectors
import SluiceKafka

struct ProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Produce each line of standard input as one record.",
        discussion: """
            Empty lines are skipped; a trailing \\r is kept. With --key-field, each line must be a JSON object and
            the field's value (string or number) becomes the record key, so records of one key share a partition.
            Exits non-zero if any record was not delivered.

            Example: printf '{"id":"a","text":"hi"}\\n' | sluice produce --bootstrap 127.0.0.1:9092 --topic raw.web --key-field id
            """)

    @Option(name: .shortAndLong, help: "The topic to produce to.")
    var topic: String

    @Option(name: .shortAndLong, help: "A fixed partition (default: by key, or spread when there is no key).")
    var partition: Int32?

    @Option(name: .long, help: ArgumentHelp("Take the key from this field of each JSON line.", valueName: "field"))
    var keyField: String?

    @Option(name: .customLong("header"), help: ArgumentHelp("Add a header to every record (repeatable).", valueName: "name=value"))
    var headers: [String] = []

    @Option(name: .long, help: "Seconds to wait for outstanding deliveries at the end.")
    var flushTimeout: Int = 60

    @OptionGroup var kafka: KafkaOptions

    func validate() throws {
        for header in headers where !header.contains("=") {
            throw ValidationError("--header expects name=value, got '\(header)'")
        }
        if let partition, partition < 0 { throw ValidationError("--partition must be 0 or more") }
    }

    func run() async throws {
        let logger = try kafka.bootstrapLogging()
        let firstFailure = FirstFailure()
        let producer = try KafkaProducer(configuration: try kafka.kafkaConfiguration(), logger: logger) { report in
            if let error = report.error { firstFailure.record(error) }
        }
        let recordHeaders = headers.map { header in
            let equals = header.firstIndex(of: "=")!
            return KafkaHeader(name: String(header[..<equals]), string: String(header[header.index(after: equals)...]))
        }
        let started = ContinuousClock.now
        let reading = StdinProducer(
            producer: producer, topic: topic, partition: partition, keyField: keyField, headers: recordHeaders)
        let result = await reading.run()
        do {
            try await producer.flush(timeout: .seconds(flushTimeout))
        } catch {
            Terminal.err("sluice produce: \(error)")
        }
        await producer.shutdown(flushTimeout: .seconds(1))
        let statistics = producer.statistics
        let seconds = Double((ContinuousClock.now - started).milliseconds) / 1000
        Terminal.err(
            "produced \(statistics.delivered) record(s) to \(topic) in \(String(format: "%.2f", seconds)) s"
                + (statistics.failed > 0 ? "; \(statistics.failed) failed" : ""))
        if let error = firstFailure.error { Terminal.err("first delivery failure: \(error)") }
        if let problem = result.problem {
            Terminal.err("sluice produce: \(problem)")
            throw ExitCode.failure
        }
        if statistics.failed > 0 || statistics.delivered < result.sent { throw ExitCode.failure }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// Remembers the first delivery failure.
final class FirstFailure: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = NSLock()
    private var first: KafkaError?

    func record(_ error: KafkaError) {
        lock.lock()
        if first == nil { first = error }
        lock.unlock()
    }

    var error: KafkaError? {
        lock.lock()
        defer { lock.unlock() }
        return first
    }
}

/// Reads standard input on a dedicated thread (reads block) and enqueues each line.
struct StdinProducer: Sendable {
    struct Result: Sendable {
        var sent = 0
        var problem: String?
    }

    let producer: KafkaProducer
    let topic: String
    let partition: Int32?
    let keyField: String?
    let headers: [KafkaHeader]

    func run() async -> Result {
        await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: readAll()) }
            thread.name = "sluice-produce-stdin"
            thread.start()
        }
    }

    private func readAll() -> Result {
        var result = Result()
        var reader = LineReader(descriptor: 0)
        var lineNumber = 0
        do {
            while let line = try reader.nextLine() {
                lineNumber += 1
                if line.isEmpty { continue }
                var key: [UInt8]?
                if let keyField {
                    guard let extracted = Self.key(from: line, field: keyField) else {
                        result.problem = "line \(lineNumber): no string or number field '\(keyField)' in a JSON object; stopped there (\(result.sent) records sent before it)"
                        return result
                    }
                    key = extracted
                }
                try producer.enqueueBlocking(
                    ProducerMessage(topic: topic, partition: partition, key: key, value: line, headers: headers))
                result.sent += 1
            }
        } catch {
            result.problem = "line \(lineNumber): \(error)"
        }
        return result
    }

    static func key(from line: [UInt8], field: String) -> [UInt8]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return nil }
        switch object[field] {
        case let string as String: return Array(string.utf8)
        case let number as NSNumber: return Array(number.stringValue.utf8)
        default: return nil
        }
    }
}
