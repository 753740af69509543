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
            Empty lines are skipped; a trailing \\r is kept. With --key-field, each line must be a JSON object and \
            the field's value (string or number) becomes the record key, so records of one key share a partition. \
            Exits non-zero if any record was not delivered.

            Example: printf '{"id":"a","text":"hi"}\\n' | sluice produce --bootstrap 127.0.0.1:9092 --topic raw.web --key-field id
            """)

    @Option(name: .shortAndLong, help: "The topic to produce to.")
    var topic: String

    @Option(name: .shortAndLong, help: "A fixed partition (default: by key, or spread when there is no key).")
    var partition: Int32?

    @Option(name: .long, help: ArgumentHelp("Take the key from this field of each JSON line.", valueName: "field"))
    var keyField: String?

    @Option(
        name: .long,
        help: ArgumentHelp("Split each line at the first occurrence of this character: key before, value after (like kcat -K).", valueName: "char"))
    var keyDelimiter: String?

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
        if let keyDelimiter, keyDelimiter.utf8.count != 1 {
            throw ValidationError("--key-delimiter must be one ASCII character, e.g. '\t' given as $'\t'")
        }
        if keyDelimiter != nil && keyField != nil { throw ValidationError("use --key-field or --key-delimiter, not both") }
    }

    func run() async throws {
        let logger = try kafka.bootstrapLogging()
        let producer = try KafkaProducer(configuration: try kafka.kafkaConfiguration(), logger: logger)
        let recordHeaders = headers.map { header in
            let equals = header.firstIndex(of: "=")!
            return KafkaHeader(name: String(header[..<equals]), string: String(header[header.index(after: equals)...]))
        }
        let started = ContinuousClock.now
        let reading = StdinProducer(
            producer: producer, topic: topic, partition: partition, keyField: keyField,
            keyDelimiter: keyDelimiter?.utf8.first, headers: recordHeaders)
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
        if let error = statistics.firstError { Terminal.err("first delivery failure: \(error)") }
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
    let keyDelimiter: UInt8?
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
        // The topic's metadata first (blocking is fine on this thread): records enqueued before it is known wait
        // for librdkafka's next one-second topic scan.
        _ = try? producer.prepare(topic: topic)
        var reader = LineReader(descriptor: 0)
        var lineNumber = 0
        do {
            // Lines are handed to librdkafka straight from the reader's buffer: no copy per record here.
            while let problem = try reader.withNextLine({ line -> String? in
                lineNumber += 1
                if line.isEmpty { return nil }
                do {
                    if let keyDelimiter {
                        guard let split = line.firstIndex(of: keyDelimiter) else {
                            return "line \(lineNumber): no key delimiter"
                        }
                        try producer.enqueueBlocking(
                            topic: topic, partition: partition, key: UnsafeRawBufferPointer(rebasing: line[..<split]),
                            value: UnsafeRawBufferPointer(rebasing: line[(split + 1)...]), headers: headers)
                    } else if let keyField {
                        guard let key = Self.key(from: Array(line), field: keyField) else {
                            return "line \(lineNumber): no string or number field '\(keyField)' in a JSON object"
                        }
                        try key.withUnsafeBytes { key in
                            try producer.enqueueBlocking(
                                topic: topic, partition: partition, key: key, value: line, headers: headers)
                        }
                    } else {
                        try producer.enqueueBlocking(
                            topic: topic, partition: partition, key: nil, value: line, headers: headers)
                    }
                } catch {
                    return "line \(lineNumber): \(error)"
                }
                result.sent += 1
                return nil
            }) {
                if let problem {
                    result.problem = "\(problem); stopped there (\(result.sent) records sent before it)"
                    return result
                }
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
