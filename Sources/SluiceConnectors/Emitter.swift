internal import Foundation
internal import Logging
internal import SluiceKafka
internal import SluiceText
internal import Synchronization

/// The producing side every source shares: envelopes go to the raw topic with their key and static headers,
/// bad input goes to the DLQ with where it came from, each record is followed to its acknowledgement
/// (``AckTracker``), and retention-aware backpressure holds the source while the pipeline is behind.
///
/// `send` and `sendToDLQ` block the calling thread (a source's own thread), never the cooperative pool.
public final class Emitter: @unchecked Sendable {
    // @unchecked: immutable after init except the atomics; the tracker and guard are thread-safe.
    let configuration: ConnectorConfiguration
    let producer: KafkaProducer
    let tracker: AckTracker
    let retention: RetentionGuard?
    /// The configured static headers, sorted by name.
    let staticHeaders: [KafkaHeader]
    private let logger: Logger
    let records = Atomic<Int>(0)
    let bytes = Atomic<Int>(0)
    let dlqRecords = Atomic<Int>(0)
    /// Records acknowledged outside the tracker (the HTTP source awaits each send).
    let acknowledgedDirectly = Atomic<Int>(0)
    private let stopFlag = Atomic<Bool>(false)
    /// The producer's `message.max.bytes`: larger records are refused by librdkafka.
    let maximumMessageBytes: Int

    init(configuration: ConnectorConfiguration, kafka: KafkaConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let tracker = AckTracker()
        self.tracker = tracker
        let retention = try configuration.backpressure.map {
            try RetentionGuard(options: $0, kafka: kafka, logger: logger)
        }
        self.retention = retention
        maximumMessageBytes = Int(kafka["message.max.bytes"] ?? "") ?? 1_000_000
        let dlqTopic = configuration.dlqTopic
        var kafka = kafka
        if configuration.type == .http {
            // A client waits for every answer: send at once (1 ms linger) and without Nagle's delay.
            kafka.setDefault("linger.ms", "1")
            kafka.setDefault("socket.nagle.disable", "true")
        }
        if let retention {
            // Backpressure needs each record's topic and size.
            producer = try KafkaProducer(configuration: kafka, logger: logger) { report in
                guard report.tag != 0 else { return }
                tracker.acknowledge(report.tag, error: report.error)
                if report.topic != dlqTopic { retention.delivered(topic: report.topic, bytes: report.size, succeeded: report.error == nil) }
            }
        } else {
            producer = try KafkaProducer(configuration: kafka, logger: logger, tagHandler: { tag, error in
                tracker.acknowledge(tag, error: error)
            })
        }
        staticHeaders = configuration.headers.sorted { $0.key < $1.key }.map { KafkaHeader(name: $0.key, string: $0.value) }
    }

    /// Whether the connector is shutting down; sources check it between records.
    public var isStopping: Bool { stopFlag.load(ordering: .relaxed) }

    func requestStop() {
        stopFlag.store(true, ordering: .relaxed)
    }

    /// Sends one envelope to the configured topic. A record larger than the producer's
    /// `message.max.bytes` goes to the DLQ as `oversize` with `origin` instead of stopping the connector.
    /// - Throws: ``ConnectorError`` when an earlier delivery failed for good or the producer is closed.
    public func send(
        key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, position: SourcePosition,
        origin: @autoclosure () -> [(String, String)]
    ) throws(ConnectorError) {
        if let failure = tracker.failure { throw Self.deliveryFailure(failure) }
        if value.count + (key?.count ?? 0) + 512 > maximumMessageBytes {
            return try sendToDLQ(
                value: value, reason: "oversize",
                detail: "\(value.count) bytes, over message.max.bytes \(maximumMessageBytes)", origin: origin(), position: position)
        }
        let topic = configuration.topic
        retention?.admit(topic: topic, bytes: value.count + (key?.count ?? 0))
        let sequence = tracker.register(position)
        do {
            try producer.enqueueBlocking(
                topic: topic, key: key, value: value,
                headers: staticHeaders, tag: sequence)
        } catch {
            throw ConnectorError(reason: "could not hand a record to the producer: \(error)", errno: nil)
        }
        records.add(1, ordering: .relaxed)
        bytes.add(value.count, ordering: .relaxed)
    }

    /// Whether ``sendBatch(_:)`` may hand records over in one call: no static headers (batch produce carries
    /// none) and no backpressure (which accounts record by record).
    var sendsBatches: Bool { staticHeaders.isEmpty && retention == nil }

    /// Sends several envelopes to the configured topic in one producer call; every record must fit
    /// `message.max.bytes` (check with ``fits(key:value:)``). Only when ``sendsBatches``.
    func sendBatch(_ records: [(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, position: SourcePosition)])
        throws(ConnectorError)
    {
        if let failure = tracker.failure { throw Self.deliveryFailure(failure) }
        guard !records.isEmpty else { return }
        let first = tracker.register(contentsOf: records.map(\.position))
        var total = 0
        let batch = records.enumerated().map { index, record in
            total += record.value.count
            return KafkaProducer.BatchRecord(key: record.key, value: record.value, tag: first + UInt64(index))
        }
        do {
            try producer.enqueueBatchBlocking(topic: configuration.topic, records: batch)
        } catch {
            throw ConnectorError(reason: "could not hand records to the producer: \(error)", errno: nil)
        }
        self.records.add(records.count, ordering: .relaxed)
        bytes.add(total, ordering: .relaxed)
    }

    /// Whether a record fits the producer's `message.max.bytes` (with room for the record's overhead).
    func fits(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer) -> Bool {
        value.count + (key?.count ?? 0) + 512 <= maximumMessageBytes
    }

    /// Sends bad input to the DLQ: the original bytes (cut at 1 MiB), `sluice.stage=connect`, `sluice.reason`,
    /// `sluice.detail` and where it came from (`origin`, e.g. `sluice.source.file` and `sluice.source.line`).
    public func sendToDLQ(
        value: UnsafeRawBufferPointer, reason: String, detail: String, origin: [(String, String)], position: SourcePosition
    ) throws(ConnectorError) {
        var headers = [
            KafkaHeader(name: "sluice.connector", string: configuration.name),
            KafkaHeader(name: "sluice.stage", string: "connect"),
            KafkaHeader(name: "sluice.reason", string: reason),
            KafkaHeader(name: "sluice.detail", string: detail),
        ]
        headers += origin.map { KafkaHeader(name: $0.0, string: $0.1) }
        let limit = min(1 << 20, maximumMessageBytes - 16_384)
        var cut = value
        if value.count > limit {
            cut = UnsafeRawBufferPointer(rebasing: value[0..<limit])
            headers.append(KafkaHeader(name: "sluice.truncated", string: "\(value.count)"))
        }
        if let failure = tracker.failure { throw Self.deliveryFailure(failure) }
        let sequence = tracker.register(position)
        do {
            try producer.enqueueBlocking(topic: configuration.dlqTopic, key: nil, value: cut, headers: headers, tag: sequence)
        } catch {
            throw ConnectorError(reason: "could not hand a DLQ record to the producer: \(error)", errno: nil)
        }
        dlqRecords.add(1, ordering: .relaxed)
        if dlqRecords.load(ordering: .relaxed) <= 10 {
            logger.warning("bad input sent to the DLQ", metadata: ["reason": "\(reason)", "detail": "\(detail)", "origin": "\(origin.map { "\($0.0)=\($0.1)" }.joined(separator: " "))"])
        }
    }

    static func deliveryFailure(_ error: KafkaError) -> ConnectorError {
        ConnectorError(
            reason: "a record could not be delivered (\(error)); stopping without checkpointing past it, so a restart re-sends it",
            errno: nil)
    }
}

/// Turns input into envelopes: JSON lines are checked (and renamed or given a `source` when configured), other
/// inputs are built from named fields.
struct EnvelopeShaper {
    let keyField: [UInt8]?
    private let renames: [String: String]
    private let additions: [(String, [UInt8])]
    private let fields: [String: String]
    private let source: String?
    private var scratch: [UInt8] = []

    init(configuration: ConnectorConfiguration) {
        keyField = configuration.keyField.map { Array($0.utf8) }
        fields = configuration.fields
        source = configuration.source
        var renames: [String: String] = [:]
        for (envelope, input) in configuration.fields where envelope != input { renames[input] = envelope }
        self.renames = renames
        var additions: [(String, [UInt8])] = []
        if let source = configuration.source {
            var value: [UInt8] = []
            JSONText.appendString(source, to: &value)
            additions.append(("source", value))
        }
        self.additions = additions
    }

    enum Outcome {
        /// The record to send: key and value (borrowed, valid inside the closure).
        case record
        case bad(reason: String, detail: String)
    }

    /// Checks one JSON envelope; calls `body` with key and value (possibly rewritten) when it is good.
    mutating func shapeJSON(
        _ line: UnsafeBufferPointer<UInt8>, _ body: (UnsafeRawBufferPointer?, UnsafeRawBufferPointer) throws(ConnectorError) -> Void
    ) throws(ConnectorError) -> Outcome {
        var input = line
        if input.last == 0x0D { input = UnsafeBufferPointer(rebasing: input.dropLast()) }
        let inspection: EnvelopeLine.Inspection
        if renames.isEmpty {
            switch EnvelopeLine.inspect(input, keyField: keyField) {
            case .failure(let failure): return .bad(reason: failure.reason.rawValue, detail: failure.detail)
            case .success(let found): inspection = found
            }
            if additions.isEmpty || inspection.hasSource {
                try send(inspection, UnsafeRawBufferPointer(input), body)
                return .record
            }
        }
        scratch.removeAll(keepingCapacity: true)
        if case .failure(let failure) = EnvelopeLine.rewrite(input, renames: renames, additions: additions, into: &scratch) {
            return .bad(reason: failure.reason.rawValue, detail: failure.detail)
        }
        let rewritten = scratch
        let result: Result<EnvelopeLine.Inspection, DecodeFailure> = rewritten.withUnsafeBufferPointer {
            EnvelopeLine.inspect($0, keyField: keyField)
        }
        switch result {
        case .failure(let failure): return .bad(reason: failure.reason.rawValue, detail: failure.detail)
        case .success(let found):
            try withRawBytes(rewritten) { (value) throws(ConnectorError) in try send(found, value, body) }
            return .record
        }
    }

    private func send(
        _ inspection: EnvelopeLine.Inspection, _ value: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer?, UnsafeRawBufferPointer) throws(ConnectorError) -> Void
    ) throws(ConnectorError) {
        if let range = inspection.keyRange { return try body(UnsafeRawBufferPointer(rebasing: value[range]), value) }
        guard let key = inspection.decodedKey else { return try body(nil, value) }
        try withRawBytes(key) { (keyBytes) throws(ConnectorError) in try body(keyBytes, value) }
    }

    /// The input name of an envelope field (the `fields` mapping, or the field's own name).
    func inputName(of field: String) -> String { fields[field] ?? field }

    /// Builds an envelope from named values: `text`, `id`, `source`, `url`, `ts` come from their mapped input
    /// names; everything else goes into `meta` as strings. Returns nil with a reason when there is no text.
    func build(_ values: [String: String], fixed: [String: String] = [:]) -> (value: [UInt8], key: [UInt8]?)? {
        var envelope: [String: String] = fixed
        var used = Set<String>()
        for field in ["text", "id", "source", "url", "ts"] {
            let name = inputName(of: field)
            if let value = values[name], !value.isEmpty {
                envelope[field] = value
                used.insert(name)
            }
        }
        if envelope["source"] == nil, let source { envelope["source"] = source }
        guard let text = envelope["text"], !text.isEmpty else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 256)
        out.append(contentsOf: "{\"text\":".utf8)
        JSONText.appendString(text, to: &out)
        for field in ["id", "source", "url", "ts"] {
            guard let value = envelope[field] else { continue }
            out.append(contentsOf: ",\"\(field)\":".utf8)
            JSONText.appendString(value, to: &out)
        }
        let meta = values.filter { !used.contains($0.key) && !$0.value.isEmpty }.sorted { $0.key < $1.key }
        if !meta.isEmpty {
            out.append(contentsOf: ",\"meta\":{".utf8)
            for (index, (name, value)) in meta.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONText.appendString(name, to: &out)
                out.append(UInt8(ascii: ":"))
                JSONText.appendString(value, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
        let keyName = keyField.map { String(decoding: $0, as: UTF8.self) }
        let key = keyName.flatMap { envelope[$0] ?? values[$0] }.map { Array($0.utf8) }
        return (out, key)
    }
}

/// `withUnsafeBytes` for a body that throws ``ConnectorError`` (the standard one rethrows untyped).
func withRawBytes<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(ConnectorError) -> R) throws(ConnectorError) -> R {
    let result: Result<R, ConnectorError> = bytes.withUnsafeBytes { raw in
        do throws(ConnectorError) { return .success(try body(raw)) } catch { return .failure(error) }
    }
    return try result.get()
}
