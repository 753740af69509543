internal import Foundation
internal import Hummingbird
internal import Logging
internal import NIOCore
internal import SluiceKafka
internal import SluiceText
internal import Synchronization

/// The `http` source: `POST /ingest/<source>` with one JSON envelope, a JSON array of them, or NDJSON. The answer
/// is 202 only after the broker acknowledged every record of the request; a request with a bad record is
/// refused whole (400, naming the record), so a client never has to guess what was taken.
///
/// Bearer-token auth when `tokens` are configured (401 otherwise), `max_body_bytes` (413), and 429 with
/// `Retry-After` while more than `max_in_flight` records await acknowledgement or backpressure holds the topic.
/// `GET /healthz` and `GET /metrics` (Prometheus text) answer without auth.
final class HTTPSource: ConnectorSource, @unchecked Sendable {
    // @unchecked: `progress` is set once before `run`; counters are atomics.
    let configuration: ConnectorConfiguration
    private let logger: Logger
    private let stopSignal = DispatchSemaphore(value: 0)
    private let statusCounts = Mutex<[Int: Int]>([:])
    private let inFlight = Atomic<Int>(0)
    private let preparedTopics = Mutex<Set<String>>([])
    var progress: (@Sendable () -> ConnectorRunner.Progress?)?

    /// The producer queue's capacity (`queue.buffering.max.messages`): a request that would overflow it gets 429.
    private let queueLimit: Int

    init(configuration: ConnectorConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        queueLimit = Int(configuration.kafka["queue.buffering.max.messages"] ?? "") ?? 100_000
    }

    func stop() { stopSignal.signal() }

    func acknowledged(_ positions: [Int32: SourcePosition]) -> [String: Any] { [:] }

    var progressNote: String? {
        let counts = statusCounts.withLock { $0 }
        return counts.sorted { $0.key < $1.key }.map { "\($0.value)×\($0.key)" }.joined(separator: " ")
    }

    func run(emitter: Emitter, once: Bool) throws(ConnectorError) {
        let router = Router()
        router.get("/healthz") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        router.get("/metrics") { [self] _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: metricsText())))
        }
        router.post("/ingest/{source}") { [self] request, context in
            let response = await ingest(request, source: context.parameters.get("source") ?? "", emitter: emitter)
            statusCounts.withLock { $0[Int(response.status.code), default: 0] += 1 }
            return response
        }
        let host = configuration.host
        let name = configuration.name
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                FileHandle.standardError.write(Data("connector \(name): listening on http://\(host):\(port)\n".utf8))
            }, logger: logger)
        let failure = Mutex<(any Error)?>(nil)
        let done = DispatchSemaphore(value: 0)
        let task = Task {
            do { try await app.run() } catch { failure.withLock { $0 = error } }
            done.signal()
            stopSignal.signal()
        }
        stopSignal.wait()
        task.cancel()
        done.wait()
        if let error = failure.withLock({ $0 }) {
            throw ConnectorError(reason: "the HTTP server on \(host):\(configuration.port) failed: \(error)", errno: nil)
        }
    }

    private func reply(_ status: HTTPResponse.Status, _ json: String, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: json + "\n")))
    }

    private func ingest(_ request: Request, source: String, emitter: Emitter) async -> Response {
        if !configuration.tokens.isEmpty {
            let header = request.headers[.authorization] ?? ""
            let token = header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : ""
            guard configuration.tokens.contains(token) else {
                return reply(.unauthorized, #"{"error":"a valid bearer token is required"}"#, headers: [.wwwAuthenticate: "Bearer"])
            }
        }
        guard !source.isEmpty, source.utf8.count <= 100,
            source.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0)) })
        else {
            return reply(.badRequest, #"{"error":"the source name in /ingest/<source> may use letters, digits, '-', '_' and '.'"}"#)
        }
        if !configuration.sources.isEmpty && !configuration.sources.contains(source) {
            return reply(.notFound, "{\"error\":\(JSONText.string("unknown source '\(source)'; this endpoint accepts \(configuration.sources.joined(separator: ", "))"))}")
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > configuration.maxBodyBytes {
            return reply(.contentTooLarge, #"{"error":"the body is larger than \#(configuration.maxBodyBytes) bytes"}"#)
        }
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: configuration.maxBodyBytes) } catch {
            return reply(.contentTooLarge, #"{"error":"the body is larger than \#(configuration.maxBodyBytes) bytes"}"#)
        }
        // Split into envelopes and check every one before anything is sent.
        var records: [[UInt8]] = []
        let bytes = Array(body.readableBytesView)
        let first = bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        if first == UInt8(ascii: "[") {
            guard let array = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [Any] else {
                return reply(.badRequest, #"{"error":"the body starts with '[' but is not a JSON array"}"#)
            }
            for element in array {
                guard JSONSerialization.isValidJSONObject(element),
                    let data = try? JSONSerialization.data(withJSONObject: element, options: [.withoutEscapingSlashes])
                else { return reply(.badRequest, #"{"error":"array elements must be JSON objects"}"#) }
                records.append(Array(data))
            }
        } else {
            var start = 0
            while start < bytes.count {
                let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.count
                let line = bytes[start..<end]
                if line.contains(where: { ![0x20, 0x09, 0x0D].contains($0) }) { records.append(Array(line)) }
                start = end + 1
            }
        }
        guard !records.isEmpty else { return reply(.badRequest, #"{"error":"no records in the body"}"#) }
        var configuration = self.configuration
        configuration.source = configuration.source ?? source
        var shaper = EnvelopeShaper(configuration: configuration)
        var messages: [ProducerMessage] = []
        messages.reserveCapacity(records.count)
        let topic = configuration.topic.replacingOccurrences(of: "{source}", with: source)
        for (index, record) in records.enumerated() {
            if record.count + 512 > emitter.maximumMessageBytes {
                return reply(.contentTooLarge, "{\"error\":\"record \(index) is larger than message.max.bytes (\(emitter.maximumMessageBytes))\",\"index\":\(index),\"reason\":\"oversize\"}")
            }
            var message: ProducerMessage?
            let outcome = record.withUnsafeBufferPointer { line in
                try? shaper.shapeJSON(line) { (key, value) throws(ConnectorError) in
                    message = ProducerMessage(
                        topic: topic, key: key.map { Array($0) }, value: Array(value),
                        headers: emitter.staticHeaders)
                }
            }
            if case .bad(let reason, let detail)? = outcome {
                return reply(.badRequest, "{\"error\":\"record \(index) is not a valid envelope\",\"index\":\(index),\"reason\":\(JSONText.string(reason)),\"detail\":\(JSONText.string(detail))}")
            }
            if let message { messages.append(message) }
        }
        // Backpressure: too much unacknowledged, or the pipeline is behind on this topic.
        let size = { (message: ProducerMessage) in (message.value?.count ?? 0) + (message.key?.count ?? 0) }
        let holding = emitter.retention.map {
            !$0.tryAdmit(topic: topic, bytes: messages.reduce(0) { $0 + size($1) }, records: messages.count)
        } ?? false
        let queueFull = emitter.producer.outstanding + messages.count > queueLimit
        if holding || queueFull || inFlight.load(ordering: .relaxed) + messages.count > configuration.maxInFlight {
            return reply(.tooManyRequests, #"{"error":"busy: too many records await acknowledgement; retry later"}"#, headers: [.retryAfter: "1"])
        }
        inFlight.add(messages.count, ordering: .relaxed)
        defer { inFlight.subtract(messages.count, ordering: .relaxed) }
        let producer = emitter.producer
        do {
            try await prepare(topic, producer: producer)
        } catch {
            if let retention = emitter.retention { for message in messages { retention.delivered(topic: topic, bytes: size(message), succeeded: false) } }
            return reply(.notFound, "{\"error\":\(JSONText.string("cannot write to topic \(topic): \(error)"))}")
        }
        do {
            try await producer.send(batch: messages)
        } catch {
            for message in messages { emitter.retention?.delivered(topic: topic, bytes: size(message), succeeded: false) }
            return reply(.serviceUnavailable, "{\"error\":\(JSONText.string("not acknowledged by the broker: \(error)"))}", headers: [.retryAfter: "5"])
        }
        for message in messages {
            emitter.retention?.delivered(topic: topic, bytes: size(message), succeeded: true)
        }
        emitter.records.add(messages.count, ordering: .relaxed)
        emitter.bytes.add(messages.reduce(0) { $0 + ($1.value?.count ?? 0) }, ordering: .relaxed)
        emitter.acknowledgedDirectly.add(messages.count, ordering: .relaxed)
        return reply(.accepted, "{\"accepted\":\(messages.count),\"topic\":\(JSONText.string(topic))}")
    }

    /// Fetches a topic's metadata the first time it is used (off the event loop): a missing topic is a clear
    /// answer, and the first records do not wait for the client's periodic metadata scan.
    private func prepare(_ topic: String, producer: KafkaProducer) async throws {
        if preparedTopics.withLock({ $0.contains(topic) }) { return }
        _ = try await Task.detached { try producer.prepare(topic: topic) }.value
        preparedTopics.withLock { _ = $0.insert(topic) }
    }

    private func metricsText() -> String {
        var text = progress?().map { ConnectorMetricsServer.text(name: configuration.name, $0) } ?? ""
        text += "# TYPE sluice_connector_http_requests_total counter\n"
        for (status, count) in statusCounts.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            text += "sluice_connector_http_requests_total{connector=\"\(configuration.name)\",status=\"\(status)\"} \(count)\n"
        }
        return text
    }
}

/// `/metrics` and `/healthz` for sources other than HTTP, when `metrics_port` is set.
final class ConnectorMetricsServer: @unchecked Sendable {
    // @unchecked: `progress` is set once before `run`.
    let host: String
    let port: Int
    let logger: Logger
    var progress: (@Sendable () -> ConnectorRunner.Progress?)?
    private let name: String

    init(host: String, port: Int, name: String, logger: Logger) {
        self.host = host
        self.port = port
        self.name = name
        self.logger = logger
    }

    func run() async throws {
        let router = Router()
        router.get("/healthz") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        router.get("/metrics") { [self] _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: progress?().map { Self.text(name: name, $0) } ?? "")))
        }
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
        try await app.run()
    }

    static func text(name: String, _ progress: ConnectorRunner.Progress) -> String {
        let label = "{connector=\"\(name)\"}"
        return """
            # TYPE sluice_connector_records_total counter
            sluice_connector_records_total\(label) \(progress.records)
            # TYPE sluice_connector_bytes_total counter
            sluice_connector_bytes_total\(label) \(progress.bytes)
            # TYPE sluice_connector_dlq_records_total counter
            sluice_connector_dlq_records_total\(label) \(progress.dlq)
            # TYPE sluice_connector_acknowledged_total counter
            sluice_connector_acknowledged_total\(label) \(progress.acknowledged)
            # TYPE sluice_connector_outstanding gauge
            sluice_connector_outstanding\(label) \(progress.outstanding)
            # TYPE sluice_connector_backpressure_holding gauge
            sluice_connector_backpressure_holding\(label) \(progress.holding == nil ? 0 : 1)

            """
    }
}
