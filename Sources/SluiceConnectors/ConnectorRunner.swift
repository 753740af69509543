internal import Foundation
public import Logging
public import SluiceKafka
internal import Synchronization

/// What every source implements. `run` is called on a dedicated thread and may block; it returns when the input
/// is exhausted (`once`) or after `stop()`.
protocol ConnectorSource: AnyObject, Sendable {
    func run(emitter: Emitter, once: Bool) throws(ConnectorError)
    /// Applies acknowledged positions and returns the state to persist.
    func acknowledged(_ positions: [Int32: SourcePosition]) -> [String: Any]
    func stop()
    /// A short progress note (e.g. how far through the input), or nil.
    var progressNote: String? { get }
}

extension ConnectorSource {
    var progressNote: String? { nil }
}

/// Runs one connector: its source on a dedicated thread, checkpoints of acknowledged positions every
/// `checkpoint_interval_ms`, and retention-aware backpressure refreshes; at the end (input exhausted with
/// `once`, or ``requestStop()``) it waits for every acknowledgement, writes the last checkpoint and closes.
public final class ConnectorRunner: Sendable {
    public let configuration: ConnectorConfiguration
    let emitter: Emitter
    private let source: any ConnectorSource
    private let store: StateStore?
    private let logger: Logger
    private let started = Mutex<Date?>(nil)
    private let metricsServer: ConnectorMetricsServer?

    /// Counters for progress lines and summaries.
    public struct Progress: Sendable {
        public var records: Int
        public var bytes: Int
        public var dlq: Int
        public var acknowledged: Int
        public var outstanding: Int
        public var seconds: Double
        /// Set while backpressure holds the source.
        public var holding: String?
        public var note: String?
    }

    /// Creates the producer, loads the checkpoint and prepares the source.
    /// - Parameter kafka: the connector's `kafka` properties merged with the command line (bootstrap included).
    public init(configuration: ConnectorConfiguration, kafka: KafkaConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        emitter = try Emitter(configuration: configuration, kafka: kafka, logger: logger)
        store = try configuration.stateDirectory.map { directory throws(ConnectorError) in
            try StateStore(directory: directory, connector: configuration.name)
        }
        let state = try store?.load() ?? [:]
        switch configuration.type {
        case .file: source = FileSource(configuration: configuration, state: state)
        case .stdin: source = StdinSource(configuration: configuration)
        case .generator: source = GeneratorSource(configuration: configuration, state: state)
        case .sqlite: source = try SQLiteSource(configuration: configuration, state: state)
        case .http: source = HTTPSource(configuration: configuration, logger: logger)
        }
        metricsServer = configuration.type == .http ? nil : configuration.metricsPort.map {
            ConnectorMetricsServer(host: "127.0.0.1", port: $0, name: configuration.name, logger: logger)
        }
        (source as? HTTPSource)?.progress = { [weak self] in self?.progress }
        metricsServer?.progress = { [weak self] in self?.progress }
    }

    public var progress: Progress {
        let seconds = started.withLock { $0.map { -$0.timeIntervalSinceNow } } ?? 0
        return Progress(
            records: emitter.records.load(ordering: .relaxed), bytes: emitter.bytes.load(ordering: .relaxed),
            dlq: emitter.dlqRecords.load(ordering: .relaxed),
            acknowledged: emitter.tracker.releasedTotal + emitter.acknowledgedDirectly.load(ordering: .relaxed),
            outstanding: emitter.tracker.outstanding, seconds: seconds,
            holding: emitter.retention.flatMap { guardState in
                let status = guardState.status
                return status.holding ? status.detail : nil
            }, note: source.progressNote)
    }

    /// Asks the source to stop; ``run(once:)`` then finishes the acknowledgements and returns.
    public func requestStop() {
        emitter.requestStop()
        emitter.retention?.stop()
        source.stop()
    }

    /// Runs until the input is exhausted (`once`) or ``requestStop()``.
    /// - Throws: ``ConnectorError`` when the source failed or records could not be delivered; the checkpoint then
    ///   holds only what was acknowledged in order.
    public func run(once: Bool) async throws -> Progress {
        if once && configuration.type == .http {
            throw ConnectorError(reason: "\(configuration.name): --once does not apply to an http source (it has no end)", errno: nil)
        }
        started.withLock { $0 = Date() }
        if let retention = emitter.retention { retention.watch(configuration.topic.replacingOccurrences(of: "{source}", with: "")) }
        let completion = Completion()
        let source = self.source
        let emitter = self.emitter
        let topic = configuration.topic
        let dlqTopic = configuration.dlqTopic
        let acknowledgementTimeout = Double(Int(configuration.kafka["message.timeout.ms"] ?? "") ?? 300_000) / 1000 + 5
        let thread = Thread {
            let result: Result<Void, ConnectorError>
            do throws(ConnectorError) {
                // Topic metadata before the first record: a missing topic is a clear error now, and the first
                // delivery does not wait for the client's periodic metadata scan.
                for name in [topic, dlqTopic] where !name.contains("{") {
                    do {
                        _ = try emitter.producer.prepare(topic: name)
                    } catch {
                        throw ConnectorError(reason: "cannot use topic \(name): \(error)", errno: nil)
                    }
                }
                try source.run(emitter: emitter, once: once)
                // Send what lingers at once instead of after linger.ms.
                emitter.producer.flushBlocking(timeout: .milliseconds(1))
                result = .success(())
            } catch {
                result = .failure(error)
            }
            // Wait here for the acknowledgements of everything sent (librdkafka retries until message.timeout.ms).
            _ = emitter.tracker.waitUntilReleased(deadline: Date().addingTimeInterval(acknowledgementTimeout))
            completion.finish(result)
        }
        thread.name = "sluice-connector-\(configuration.name)"
        thread.stackSize = 8 << 20
        thread.start()
        let metricsTask = metricsServer.map { server in Task { try await server.run() } }
        // Checkpoints and backpressure refreshes run beside the source until it is done.
        let interval = Duration.milliseconds(configuration.checkpointIntervalMilliseconds)
        let periodic = Task { [self] in
            var lastCheckpoint = ContinuousClock.now
            var lastRefresh = ContinuousClock.now - .seconds(1)
            var failure: (any Error)?
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(10))
                if let retention = emitter.retention, ContinuousClock.now - lastRefresh >= .milliseconds(250) {
                    await retention.refresh()
                    lastRefresh = .now
                }
                if ContinuousClock.now - lastCheckpoint >= interval {
                    do { try saveCheckpoint() } catch {
                        failure = error
                        requestStop()
                        break
                    }
                    lastCheckpoint = .now
                }
                if emitter.tracker.failure != nil { requestStop() }
            }
            return failure
        }
        var outcome = await completion.wait()
        periodic.cancel()
        if let failure = await periodic.value, case .success = outcome {
            outcome = .failure(ConnectorError(reason: "cannot write the checkpoint: \(failure)", errno: nil))
        }
        emitter.retention?.stop()
        try saveCheckpoint()
        await emitter.producer.shutdown(flushTimeout: .seconds(5))
        await emitter.retention?.close()
        metricsTask?.cancel()
        let summary = progress
        if case .failure(let error) = outcome { throw error }
        if let failure = emitter.tracker.failure { throw Emitter.deliveryFailure(failure) }
        if summary.outstanding > 0 {
            throw ConnectorError(reason: "\(summary.outstanding) records were not acknowledged in time; the checkpoint stops before them", errno: nil)
        }
        return summary
    }

    private func saveCheckpoint() throws {
        let released = emitter.tracker.takeReleased()
        guard let store else { return }
        let state = source.acknowledged(released)
        guard !released.isEmpty || state.isEmpty == false else { return }
        try store.save(state)
    }
}

/// A one-time result handed from a thread to an async waiter.
final class Completion: @unchecked Sendable {
    // @unchecked: all state is behind `state`.
    private let state = Mutex<(result: Result<Void, ConnectorError>?, waiter: CheckedContinuation<Result<Void, ConnectorError>, Never>?)>((nil, nil))

    func finish(_ result: Result<Void, ConnectorError>) {
        let waiter = state.withLock { state -> CheckedContinuation<Result<Void, ConnectorError>, Never>? in
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: result)
    }

    func wait() async -> Result<Void, ConnectorError> {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<Void, ConnectorError>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
