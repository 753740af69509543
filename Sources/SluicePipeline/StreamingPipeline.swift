internal import SluiceConfig
public import Foundation
public import Logging
public import SluiceKafka
internal import SluiceShards
internal import SluiceText
internal import CoreMetrics
internal import Dispatch
internal import Synchronization
internal import SluiceTrain

/// The streaming driver behind `sluice pipeline`: raw topics in a consumer group → decode → clean → desensitize →
/// quality → dedup → one open shard per partition, following the delivery rules of the design:
///
/// - A partition's records are accounted for in *checkpoints*: its shard (when any record was kept) is sealed,
///   then the shard, its samples, the rejected records and the dedup entries of the kept ones are recorded in the
///   index in one transaction, then the shard and the rejected records are announced, and only then is the
///   partition's offset committed.
/// - On assignment a partition resumes at the highest checkpointed offset in the index, so a crash between the
///   index transaction and the commit never duplicates a record and a crash before it never loses one.
/// - Undecodable records go to the DLQ topic at once (original bytes, position and reason in headers; at least
///   once: a replay after a crash may repeat them) and into the next checkpoint's audit.
/// - Revocation, shutdown: in-flight batches finish, every open partition checkpoints, then partitions go.
/// - A shard or index failure (disk full, unwritable directory) stops consumption at once; nothing unsealed is
///   committed and ``run()`` throws.
///
/// Batches of records run on per-worker serial queues; one sink queue applies their results in consumption
/// order (dedup decisions, shard writes, checkpoints), so commits stay in order per partition.
public final class StreamingPipeline: @unchecked Sendable {
    // @unchecked: `consumeTask` is guarded by `taskLock`; everything else is immutable or confined as noted.
    public let configuration: PipelineConfiguration
    private let logger: Logger
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    private let sink: PipelineSink
    private let sinkQueue = DispatchQueue(label: "sluice.pipeline.sink")
    private let boxes: [StageBox]
    private let workerQueues: [DispatchQueue]
    private let inFlight: AsyncLimiter
    /// Worker results by batch number, taken in order by the sink.
    private let results = NumberedResults<[WorkerResult]>()
    private let topicFormats: TopicFormats
    private let taskLock = NSLock()
    private var consumeTask: Task<Void, any Error>?
    private var stopRequested = false
    /// Health and progress for `/healthz`.
    public let health = PipelineHealth()
    /// Follows the models topic for the perplexity filter, when configured.
    private let modelFollower = ModelFollower()
    private let advisor = Mutex(AutoscaleAdvisor())
    private let partitionCount = Mutex<Int?>(nil)
    private var modelsToFollow: (kafka: KafkaConfiguration, topic: String, slot: ModelSlot)?

    /// Opens the index and the Kafka clients. `kafka` must name the cluster (`bootstrap.servers`).
    /// - Throws: ``ShardError`` for an unusable output directory or index, ``KafkaError`` for client settings,
    ///   ``TextConfigurationError`` for stage settings.
    public init(configuration: PipelineConfiguration, kafka: KafkaConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        try Self.prepareDirectory(configuration.outputDirectory)
        let index = try ShardIndex(path: configuration.outputDirectory.appendingPathComponent("index.sqlite").path)
        try index.registerDataset(
            name: configuration.dataset, input: configuration.topics.joined(separator: ","), config: nil, now: Date())
        let store = try DedupStore(writer: index.writer, configuration: configuration.stages.dedup)
        let dedup = try Deduplicator(configuration.stages.dedup, index: try store.load())

        var consumerConfiguration = kafka
        consumerConfiguration.groupID = configuration.groupID
        if configuration.exitAtEnd { consumerConfiguration["enable.partition.eof"] = "true" }
        // Skipping lost data: librdkafka resets to the log start; the sink sees the gap and reports it.
        if configuration.onDataLoss == .skip { consumerConfiguration["auto.offset.reset"] = "earliest" }
        var options = KafkaConsumer.Options()
        options.bufferCapacity = max(1024, configuration.batchRecords * 2)
        consumer = try KafkaConsumer(configuration: consumerConfiguration, options: options, logger: logger)
        var producerConfiguration = kafka
        producerConfiguration["group.id"] = nil
        for key in ["auto.offset.reset", "enable.auto.commit", "enable.auto.offset.store", "session.timeout.ms",
                    "heartbeat.interval.ms", "max.poll.interval.ms", "partition.assignment.strategy",
                    "group.instance.id", "enable.partition.eof", "fetch.wait.max.ms", "fetch.min.bytes",
                    "queued.min.messages", "queued.max.messages.kbytes", "isolation.level"]
        {
            producerConfiguration[key] = nil
        }
        producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)

        let workers = max(1, configuration.stages.workers)
        var stageConfiguration = configuration.stages
        if let perplexity = stageConfiguration.perplexity {
            let slot = ModelSlot(try perplexity.model.map { try ScoringModel.load($0, referencePerplexity: perplexity.referencePerplexity) })
            stageConfiguration.modelSlot = slot
            if let topic = perplexity.modelsTopic { modelsToFollow = (producerConfiguration, topic, slot) }
        }
        boxes = try (0..<workers).map { _ in
            var stages = try WorkerStages(stageConfiguration)
            stages.stageNanoseconds = [UInt64](repeating: 0, count: WorkerStages.timedStages.count)
            stages.profiles = true
            return StageBox(stages)
        }
        workerQueues = (0..<workers).map { DispatchQueue(label: "sluice.pipeline.worker\($0)") }
        inFlight = AsyncLimiter(limit: max(1, configuration.maxBatchesInFlight))
        topicFormats = TopicFormats(configuration.formats)
        sink = PipelineSink(
            configuration: configuration, index: index, dedup: dedup, consumer: consumer, producer: producer,
            health: health, logger: logger)
        sink.onFailure = { [weak self] in self?.requestStop() }
    }

    /// Creates the output directory and checks that it is writable.
    static func prepareDirectory(_ url: URL) throws(ShardError) {
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw ShardError.make(.io, "cannot create the output directory \(url.path): \(error.localizedDescription)")
        }
        let probe = url.appendingPathComponent(".sluice-write-check-\(getpid())")
        guard FileManager.default.createFile(atPath: probe.path, contents: Data("ok".utf8)) else {
            throw ShardError.make(.io, "the output directory \(url.path) is not writable")
        }
        try? FileManager.default.removeItem(at: probe)
    }

    /// What a run did.
    public struct Summary: Sendable {
        /// Records processed (replays of sealed records not counted).
        public var records = 0
        public var kept = 0
        public var rejected = 0
        public var deadLettered = 0
        /// Records skipped because a checkpoint already covered them (a replay after a crash).
        public var replaySkipped = 0
        public var checkpoints = 0
        public var shards = 0
        /// Bytes of decoded text (what `sluice curate` counts for MB/s).
        public var textBytes = 0
        /// Wall time of the whole run.
        public var seconds = 0.0
        /// From the first record applied to the last checkpoint: the processing time, without the group join.
        public var processingSeconds = 0.0

        public var json: String {
            String(
                format: "{\"records\":%d,\"kept\":%d,\"rejected\":%d,\"dead_lettered\":%d,\"replay_skipped\":%d,\"checkpoints\":%d,\"shards\":%d,\"text_bytes\":%d,\"seconds\":%.3f,\"processing_seconds\":%.3f,\"mb_per_s\":%.2f}",
                records, kept, rejected, deadLettered, replaySkipped, checkpoints, shards, textBytes, seconds,
                processingSeconds, processingSeconds > 0 ? Double(textBytes) / processingSeconds / 1e6 : 0)
        }
    }

    /// Consumes until ``requestStop()`` (or a fatal error), then seals, records, announces and commits what it
    /// holds and leaves the group.
    /// - Throws: the first fatal error: ``ShardError`` from the sink, ``KafkaError`` (`.dataLostToRetention`,
    ///   `.fatal`) from the consumer.
    @discardableResult
    public func run() async throws -> Summary {
        defer { modelFollower.stop() }
        if let follow = modelsToFollow {
            await modelFollower.start(kafka: follow.kafka, topic: follow.topic, slot: follow.slot, logger: logger)
        }
        let clock = ContinuousClock()
        let started = clock.now
        // The output topics must exist (the producer does not create topics): say so now, not in a delivery log.
        for topic in [configuration.shardsTopic, configuration.rejectedTopic, configuration.dlqTopic] {
            do {
                _ = try await consumer.partitions(of: topic)
            } catch let error as KafkaError where error.code == .unknownTopic {
                throw ConfigError(
                    file: "the cluster", path: "output",
                    reason: "the output topic \(topic) does not exist; create it (sluice topics apply creates those declared in topics/) or name another in output.*_topic")
            }
        }
        try await onSink { try self.sink.start() }
        // Age seals and announcement bookkeeping, on the sink queue; created here so that a pipeline that never
        // runs holds no suspended dispatch source.
        let timer = DispatchSource.makeTimerSource(queue: sinkQueue)
        timer.schedule(deadline: .now() + 0.5, repeating: 0.5)
        timer.setEventHandler { [sink] in sink.tick() }
        timer.resume()
        defer { timer.cancel() }
        try consumer.subscribe(configuration.topics)
        logger.info(
            "pipeline started",
            metadata: ["topics": "\(configuration.topics)", "group": "\(configuration.groupID)",
                       "output": "\(configuration.outputDirectory.path)"])
        let task = Task { try await consume() }
        let stopNow = taskLock.withLock { () -> Bool in
            consumeTask = task
            return stopRequested
        }
        if stopNow { task.cancel() }
        var failure: (any Error)?
        do { try await task.value } catch { failure = error }
        // Every submitted batch is applied before anything below runs on the sink queue.
        let sinkFailure = try await onSink { () -> (any Error)? in
            if self.sink.failure == nil { self.sink.checkpointAll(reason: "shutdown") }
            return self.sink.failure
        }
        await sink.waitForAnnouncements(producer: producer)
        // Leaving the group can hang while the cluster is unreachable; everything was committed above, so the
        // worker stops waiting after a while instead of hanging at shutdown.
        let consumer = self.consumer
        let closed = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let answered = Mutex(false)
            let answer: @Sendable (Bool) -> Void = { value in
                let first = answered.withLock { done in
                    defer { done = true }
                    return !done
                }
                if first { continuation.resume(returning: value) }
            }
            Task {
                await consumer.close()
                answer(true)
            }
            Task {
                try? await Task.sleep(for: .seconds(20))
                answer(false)
            }
        }
        if !closed {
            logger.warning("the consumer did not leave the group within 20 s (is the cluster reachable?); stopping anyway")
        }
        await producer.shutdown(flushTimeout: .seconds(10))
        var summary = try await onSink { () -> Summary in
            self.sink.markDeliveredAnnouncements()
            var summary = self.sink.summary
            summary.processingSeconds = self.sink.processingSeconds
            return summary
        }
        summary.seconds = (clock.now - started).inSeconds
        if let failure = sinkFailure ?? failure { throw failure }
        logger.info("pipeline stopped", metadata: ["summary": "\(summary.json)"])
        return summary
    }

    /// Asks ``run()`` to stop fetching and finish; callable from any thread (a signal handler's task).
    public func requestStop() {
        let task = taskLock.withLock { () -> Task<Void, any Error>? in
            stopRequested = true
            return consumeTask
        }
        task?.cancel()
    }

    private func consume() async throws {
        var events = consumer.events.makeAsyncIterator()
        var batch: [KafkaRecord] = []
        batch.reserveCapacity(configuration.batchRecords)
        var submitted = 0
        // --exit-at-end: partitions at their end (no record after their EOF event).
        var atEnd: [TopicPartition: Bool] = [:]
        func submit() async {
            guard !batch.isEmpty else { return }
            await inFlight.acquire()
            let records = batch
            batch.removeAll(keepingCapacity: true)
            let number = submitted
            submitted += 1
            let worker = number % boxes.count
            let box = boxes[worker]
            let formats = topicFormats
            workerQueues[worker].async { [results] in
                results.put(number, box.process(records, formats: formats))
            }
            // Sink blocks run in submission order, each waiting for its batch.
            sinkQueue.async { [sink, inFlight, results] in
                sink.apply(records, results.take(number, wait: true)!)
                inFlight.release()
            }
        }
        loop: while let event = try await events.next() {
            if health.sinkFailed { break }
            switch event {
            case .record(let record):
                if configuration.exitAtEnd { atEnd[record.topicPartition] = false }
                batch.append(record)
                if batch.count >= configuration.batchRecords || !events.hasBufferedEvents { await submit() }
            case .assigned(let partitions):
                for partition in partitions { atEnd[partition] = false }
                await submit()
                // Where each partition should resume, to tell a retention gap (skip mode) from a normal start.
                let committed = configuration.onDataLoss == .skip ? ((try? await consumer.committed(partitions)) ?? [:]) : [:]
                try await onSink { try self.sink.assign(partitions, committed: committed) }
            case .revoked(let partitions):
                for partition in partitions { atEnd[partition] = nil }
                await submit()
                await onSink { self.sink.release(partitions, lost: false) }
            case .lost(let partitions):
                for partition in partitions { atEnd[partition] = nil }
                await submit()
                await onSink { self.sink.release(partitions, lost: true) }
            case .partitionEOF(let position):
                await submit()
                if configuration.exitAtEnd {
                    atEnd[position.topicPartition] = true
                    if atEnd.values.allSatisfy({ $0 }) {
                        logger.info("every assigned partition is at its end; stopping (--exit-at-end)")
                        break loop
                    }
                }
            case .error(let error):
                health.noteBrokerError(error)
                logger.warning("consumer error", metadata: ["error": "\(error)"])
            }
        }
        await submit()
    }

    /// Runs `body` on the sink queue after everything queued there before.
    private func onSink<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            sinkQueue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    private func onSink(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            sinkQueue.async {
                body()
                continuation.resume()
            }
        }
    }

    /// Consumer lag per assigned partition (high watermark − next offset to process), and the replica count this
    /// worker recommends for its group (``AutoscaleAdvisor``); for metrics.
    public func refreshLag() async {
        let positions = health.positions()
        var totalLag: Int64 = 0
        for (partition, next) in positions {
            // Stops at shutdown and at the first failure: with the cluster down each query waits for its timeout.
            if Task.isCancelled { return }
            let marks: (low: Int64, high: Int64)
            do { marks = try await consumer.watermarks(of: partition) } catch let error as KafkaError {
                health.noteBrokerError(error)
                return
            } catch { return }
            health.noteBrokerReachable()
            Gauge(label: "sluice_consumer_lag", dimensions: [("topic", partition.topic), ("partition", "\(partition.partition)")])
                .record(max(0, marks.high - next))
            totalLag += max(0, marks.high - next)
        }
        guard !positions.isEmpty else { return }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        let sample = AutoscaleAdvisor.Sample(
            time: Date().timeIntervalSince1970, lag: totalLag, consumed: positions.values.reduce(0, +), cpuSeconds: cpu)
        let partitions = await totalPartitions(assigned: positions.count)
        guard let advice = advisor.withLock({ $0.observe(sample, assignedPartitions: positions.count, totalPartitions: partitions) }) else { return }
        Gauge(label: "sluice_recommended_replicas").record(advice.replicas)
        Gauge(label: "sluice_replica_demand").record(advice.share)
        Gauge(label: "sluice_cpu_seconds_per_record").record(advice.cpuSecondsPerRecord)
    }

    /// Partitions of the input topics (named ones; a `^regex` input counts what is assigned), cached.
    private func totalPartitions(assigned: Int) async -> Int {
        if let known = partitionCount.withLock({ $0 }) { return max(known, assigned) }
        var total = 0
        for topic in configuration.topics where !topic.hasPrefix("^") {
            guard let partitions = try? await consumer.partitions(of: topic) else { return assigned }
            total += partitions.count
        }
        if configuration.topics.contains(where: { $0.hasPrefix("^") }) { return max(total, assigned) }
        partitionCount.withLock { $0 = total }
        return max(total, assigned)
    }
}

/// The record format of each topic: exact names first, then `^regex` entries, then JSON envelopes. Regex
/// answers are remembered per topic.
final class TopicFormats: Sendable {
    private let exact: [String: EnvelopeDecoder.Format]
    private let patterns: [(NSRegularExpression, EnvelopeDecoder.Format)]
    private let cache = Mutex<[String: EnvelopeDecoder.Format]>([:])

    init(_ formats: [String: EnvelopeDecoder.Format]) {
        exact = formats.filter { !$0.key.hasPrefix("^") }
        patterns = formats.filter { $0.key.hasPrefix("^") }.sorted { $0.key < $1.key }.compactMap { pattern, format in
            (try? NSRegularExpression(pattern: pattern)).map { ($0, format) }
        }
    }

    func format(of topic: String) -> EnvelopeDecoder.Format {
        if let format = exact[topic] { return format }
        if patterns.isEmpty { return .json }
        if let known = cache.withLock({ $0[topic] }) { return known }
        let range = NSRange(topic.startIndex..., in: topic)
        let format = patterns.first { $0.0.firstMatch(in: topic, range: range) != nil }?.1 ?? .json
        cache.withLock { $0[topic] = format }
        return format
    }
}

/// A counting limit that suspends (never blocks a thread) while `limit` permits are out.
final class AsyncLimiter: Sendable {
    private struct State {
        var available: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state: Mutex<State>

    init(limit: Int) {
        state = Mutex(State(available: limit))
    }

    func acquire() async {
        await withCheckedContinuation { continuation in
            let granted = state.withLock { state -> Bool in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume()
    }
}

extension StageBox {
    /// Runs Kafka records through the worker's stages; results line up with `records`.
    func process(_ records: [KafkaRecord], formats: TopicFormats) -> [WorkerResult] {
        var out: [WorkerResult] = []
        out.reserveCapacity(records.count)
        for (number, record) in records.enumerated() {
            // A replayed record (`sluice replay`) keeps its original position: its sample key and fallback id are
            // the original's, so replaying it again finds it kept already (dedup drops a known id as a resend).
            let origin = ReplayHeader.origin(of: record)
                ?? SampleOrigin.kafka(topic: record.topic, partition: record.partition, offset: record.offset)
            let format = formats.format(of: record.topic)
            guard let value = record.valueBytes, !value.isEmpty else {
                out.append(.rejected(line: number, id: nil, stage: "decode", reason: "empty_record", detail: ("", 0)))
                continue
            }
            // A connector's static `source` header names the source of envelopes that carry none.
            let source = record.headers.isEmpty ? nil : record.headers.first { $0.name == "source" }?.value.map {
                String(decoding: $0, as: UTF8.self)
            }
            // A record a reviewer accepted (`sluice review accept`) skips quarantine and the quality rules.
            let reviewed = !record.headers.isEmpty && record.headers.contains { $0.name == ReviewHeader.name && $0.value == Array("accept".utf8) }
            out.append(value.withUnsafeBufferPointer {
                stages.process($0, number: number, origin: origin, format: format, source: source, reviewed: reviewed)
            })
        }
        // Stage latency: the mean time per record of each stage over the batch.
        if let spent = stages.stageNanoseconds, !records.isEmpty {
            for (stage, nanoseconds) in zip(WorkerStages.timedStages, spent) {
                Timer(label: "sluice_stage_seconds", dimensions: [("stage", stage)])
                    .recordNanoseconds(Int64(nanoseconds) / Int64(records.count))
            }
            stages.stageNanoseconds = [UInt64](repeating: 0, count: spent.count)
        }
        return out
    }
}

/// What `/healthz` reports, updated by the pipeline.
public final class PipelineHealth: Sendable {
    private struct State {
        var brokerError: String?
        var brokerErrorAt: Date?
        var lastRecordAt: Date?
        var lastSealAt: Date?
        var sinkFailure: String?
        var positions: [TopicPartition: Int64] = [:]
    }
    private let state = Mutex(State())

    func noteBrokerError(_ error: KafkaError) {
        state.withLock {
            $0.brokerError = "\(error)"
            $0.brokerErrorAt = Date()
        }
    }

    func noteRecords(positions: [TopicPartition: Int64]) {
        state.withLock {
            $0.lastRecordAt = Date()
            $0.brokerError = nil
            $0.positions.merge(positions) { max($0, $1) }
        }
    }

    func noteSeal() { state.withLock { $0.lastSealAt = Date() } }
    func noteBrokerReachable() { state.withLock { $0.brokerError = nil } }
    func noteAssigned(_ partitions: [TopicPartition], positions: [TopicPartition: Int64]) {
        state.withLock { s in for p in partitions { s.positions[p] = positions[p] ?? s.positions[p] ?? 0 } }
    }
    func forget(_ partitions: [TopicPartition]) { state.withLock { for p in partitions { $0.positions[p] = nil } } }
    func noteSinkFailure(_ error: any Error) { state.withLock { $0.sinkFailure = "\(error)" } }

    var sinkFailed: Bool { state.withLock { $0.sinkFailure != nil } }
    func positions() -> [TopicPartition: Int64] { state.withLock { $0.positions } }

    /// The `/healthz` answer: healthy unless the sink failed or the last broker error is recent and no record or
    /// commit came after it.
    public func report(now: Date = Date()) -> (healthy: Bool, json: String) {
        state.withLock { s in
            let brokerDown = s.brokerError != nil && now.timeIntervalSince(s.brokerErrorAt ?? now) < 60
            let healthy = s.sinkFailure == nil && !brokerDown
            var json = "{\"status\":\(healthy ? "\"ok\"" : "\"failing\""),\"broker\":"
            json += s.brokerError.map { "{\"connected\":false,\"error\":\(JSONText.string($0))}" } ?? "{\"connected\":true}"
            json += ",\"last_seal\":" + (s.lastSealAt.map { JSONText.string(ISO8601DateFormatter().string(from: $0)) } ?? "null")
            if let last = s.lastSealAt { json += String(format: ",\"seconds_since_last_seal\":%.1f", now.timeIntervalSince(last)) }
            json += ",\"last_record\":" + (s.lastRecordAt.map { JSONText.string(ISO8601DateFormatter().string(from: $0)) } ?? "null")
            json += ",\"assigned_partitions\":\(s.positions.count)"
            if let failure = s.sinkFailure { json += ",\"error\":\(JSONText.string(failure))" }
            return (healthy, json + "}")
        }
    }
}

/// The header `sluice replay` puts on a re-injected record: `sluice.replay-of: <topic>/<partition>/<offset>`, the
/// position the record first had.
public enum ReplayHeader {
    public static let name = "sluice.replay-of"

    public static func value(topic: String, partition: Int32, offset: Int64) -> String { "\(topic)/\(partition)/\(offset)" }

    static func origin(of record: KafkaRecord) -> SampleOrigin? {
        guard !record.headers.isEmpty, let header = record.headers.first(where: { $0.name == name })?.value else { return nil }
        let parts = String(decoding: header, as: UTF8.self).split(separator: "/")
        guard parts.count >= 3, let partition = Int32(parts[parts.count - 2]), let offset = Int64(parts[parts.count - 1]) else { return nil }
        return .kafka(topic: parts.dropLast(2).joined(separator: "/"), partition: partition, offset: offset)
    }
}

/// The header `sluice review accept` puts on a re-injected record: `sluice.review: accept`.
public enum ReviewHeader {
    public static let name = "sluice.review"
}
