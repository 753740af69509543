internal import CRdKafka
internal import Foundation
public import Logging
internal import Synchronization

/// A Kafka producer over librdkafka.
///
/// Sends are non-blocking: ``send(_:)`` suspends until the broker acknowledged the record and returns where it
/// landed; ``enqueue(_:)`` hands the record to librdkafka and reports delivery to the `deliveryHandler`. A
/// dedicated thread serves delivery reports, so nothing blocks the cooperative thread pool. Idempotence
/// (`enable.idempotence=true`) is on unless the configuration turns it off.
///
/// Thread-safe. Call ``shutdown(flushTimeout:)`` before dropping the producer to deliver what is queued;
/// dropping it without shutdown stops the poll thread and purges unsent records.
public final class KafkaProducer: Sendable {
    private let client: ProducerClient

    /// Creates a producer.
    ///
    /// - Parameters:
    ///   - configuration: librdkafka properties; `bootstrap.servers` is required.
    ///   - deliveryHandler: called on the poll thread with the report of every ``enqueue(_:)``-ed record.
    ///     Keep it short; it must not block.
    ///   - tagHandler: when given, called instead of `deliveryHandler` for records sent with a tag: just the tag
    ///     and the failure, if any; no report is built (the fast path for callers that track records by tag).
    /// - Throws: ``KafkaError`` `.invalidConfiguration` for an unknown property or invalid value.
    public init(
        configuration: KafkaConfiguration, logger: Logger = Logger(label: "sluice.kafka"),
        deliveryHandler: (@Sendable (DeliveryReport) -> Void)? = nil,
        tagHandler: (@Sendable (UInt64, KafkaError?) -> Void)? = nil
    ) throws {
        var configuration = configuration
        configuration.setDefault("enable.idempotence", "true")
        configuration.setDefault("allow.auto.create.topics", "false")
        configuration.setDefault("linger.ms", "5")
        guard configuration.bootstrapServers != nil else {
            throw KafkaError.invalidConfiguration("bootstrap.servers is not set; give --bootstrap HOST:PORT")
        }
        client = try ProducerClient(
            configuration: configuration, logger: logger, deliveryHandler: deliveryHandler, tagHandler: tagHandler)
    }

    deinit {
        client.requestStop(flushTimeoutMilliseconds: 0)
    }

    /// Sends one record and waits for the broker's acknowledgement.
    ///
    /// Suspends while the local queue is full instead of failing.
    /// - Returns: the partition and offset the record was written to.
    /// - Throws: ``KafkaError`` with the delivery failure (`.messageDelivery`, `.unknownTopic`, `.timedOut`…).
    @discardableResult
    public func send(_ message: ProducerMessage) async throws -> DeliveryReport {
        try await client.sendAndAwait(message)
    }

    /// Sends records and waits until the broker acknowledged all of them (one wait for the lot, not one per
    /// record). Suspends while the local queue is full.
    /// - Throws: ``KafkaError`` with the first delivery failure; the other records may have been written.
    public func send(batch messages: [ProducerMessage]) async throws {
        try await client.sendBatchAndAwait(messages)
    }

    /// Hands one record to librdkafka without waiting; its report goes to the `deliveryHandler`.
    ///
    /// - Throws: ``KafkaError`` `.queueFull` (retriable) when `queue.buffering.max.messages` is reached.
    public func enqueue(_ message: ProducerMessage) throws {
        try client.produce(message, awaiterID: 0)
    }

    /// Like ``enqueue(_:)``, but suspends until delivery reports free queue space instead of throwing `.queueFull`.
    public func enqueueWhenCapacity(_ message: ProducerMessage) async throws {
        while true {
            do throws(KafkaError) {
                try client.produce(message, awaiterID: 0)
                return
            } catch {
                guard error.code == .queueFull else { throw error }
            }
            await client.waitForCapacity()
        }
    }

    /// Like ``enqueueWhenCapacity(_:)`` for code on a dedicated thread (a stdin reader, a file tailer): blocks
    /// the calling thread while the queue is full. Never call it from the cooperative thread pool.
    public func enqueueBlocking(_ message: ProducerMessage) throws {
        try withOptionalBytes(message.key) { key, keyCount in
            try withOptionalBytes(message.value) { value, valueCount in
                try enqueueBlocking(
                    topic: message.topic, partition: message.partition,
                    key: key.map { UnsafeRawBufferPointer(start: $0, count: keyCount) },
                    value: value.map { UnsafeRawBufferPointer(start: $0, count: valueCount) }, headers: message.headers)
            }
        }
    }

    /// Hands one record given as borrowed bytes to librdkafka (which copies them), blocking the calling thread
    /// while the queue is full. The zero-copy path for readers on a dedicated thread; never call it from the
    /// cooperative thread pool. `partition` `nil` lets the partitioner choose. `tag` (below 2^63) comes back in
    /// the record's ``DeliveryReport/tag``, so a caller can tell which of its records was acknowledged.
    public func enqueueBlocking(
        topic: String, partition: Int32? = nil, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?,
        headers: [KafkaHeader] = [], tag: UInt64 = 0
    ) throws {
        precondition(tag < ProducerContext.tagFlag, "delivery tags must be below 2^63")
        let opaque = tag == 0 ? 0 : UInt(tag | ProducerContext.tagFlag)
        while true {
            do throws(KafkaError) {
                try client.produce(
                    topic: topic, partition: partition, key: key, value: value, headers: headers, awaiterID: opaque)
                client.serveReportsInline()
                return
            } catch {
                guard error.code == .queueFull else { throw error }
            }
            // Serve delivery reports here until some space is free (returns as soon as one is served).
            client.waitForSpaceInline()
        }
    }

    /// One record for ``enqueueBatchBlocking(topic:records:)``: borrowed key and value, and a delivery tag.
    public struct BatchRecord {
        public var key: UnsafeRawBufferPointer?
        public var value: UnsafeRawBufferPointer
        public var tag: UInt64
        public init(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, tag: UInt64) {
            self.key = key
            self.value = value
            self.tag = tag
        }
    }

    /// Hands many records for one topic to librdkafka in one call (which copies them), without headers, each
    /// placed by the partitioner; blocks the calling thread while the queue lacks room for them. The fast path
    /// for readers on a dedicated thread; never call it from the cooperative thread pool.
    public func enqueueBatchBlocking(topic: String, records: [BatchRecord]) throws {
        try client.produceBatch(topic: topic, records: records)
    }

    /// Fetches `topic`'s metadata now (blocking up to `timeout`), so the first record does not wait for it, and
    /// returns its partitions. Call it off the cooperative pool (a source's thread) or through `Task.detached`.
    /// - Throws: ``KafkaError`` `.unknownTopic` when the topic does not exist.
    public func prepare(topic: String, timeout: Duration = .seconds(10)) throws -> [Int32] {
        try client.prepare(topic: topic, timeoutMilliseconds: Int32(clamping: timeout.milliseconds))
    }

    /// Like ``flush(timeout:)`` for code on a dedicated thread: sends what lingers at once and blocks until every
    /// queued record was delivered or failed, or `timeout` passed. Never call it from the cooperative thread pool.
    /// - Returns: whether nothing is outstanding.
    @discardableResult
    public func flushBlocking(timeout: Duration) -> Bool {
        client.flushInline(timeoutMilliseconds: Int32(clamping: timeout.milliseconds))
    }

    /// Waits until every queued record was delivered or failed.
    ///
    /// - Throws: ``KafkaError`` `.timedOut` when records are still outstanding after `timeout`.
    public func flush(timeout: Duration = .seconds(30)) async throws {
        try await client.flush(timeoutMilliseconds: Int32(clamping: timeout.milliseconds))
    }

    /// How many records are queued or in flight.
    public var outstanding: Int { Int(client.outqLength) }

    /// Counts of delivered and failed records since the producer started.
    public var statistics: ProducerStatistics { client.statistics }

    /// Flushes (up to `flushTimeout`), fails what is left, stops the poll thread and destroys the client.
    /// Idempotent.
    public func shutdown(flushTimeout: Duration = .seconds(30)) async {
        await client.shutdown(flushTimeoutMilliseconds: Int32(clamping: flushTimeout.milliseconds))
    }
}

/// Counters a producer keeps.
public struct ProducerStatistics: Sendable {
    /// Records acknowledged by the broker.
    public var delivered: Int
    /// Records whose delivery failed.
    public var failed: Int
    /// The first delivery failure, if any.
    public var firstError: KafkaError?
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// The acknowledgements one ``KafkaProducer/send(batch:)`` call waits for. Mutated only under the producer
/// context's state lock (`continuation` is taken once, by whoever brings `remaining` to zero).
final class BatchWaiter: @unchecked Sendable {
    var remaining: Int
    var error: KafkaError?
    var continuation: CheckedContinuation<Void, any Error>?
    init(remaining: Int) { self.remaining = remaining }
}

/// The producer's state shared with the C delivery callback.
///
/// `@unchecked Sendable`: all mutable state is inside `state`, a `Mutex`.
final class ProducerContext: ClientContext, @unchecked Sendable {
    struct State {
        var nextAwaiterID: UInt = 1
        var awaiters: [UInt: CheckedContinuation<DeliveryReport, any Error>] = [:]
        /// Records of ``KafkaProducer/send(batch:)`` calls by awaiter id; one waiter per call.
        var batchMembers: [UInt: BatchWaiter] = [:]
        var capacityWaiters: [CheckedContinuation<Void, Never>] = []
        var firstError: KafkaError?
    }
    let state = Mutex(State())
    // Counted without the lock: the delivery callback runs once per record.
    let delivered = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let capacityWaiterCount = Atomic<Int>(0)
    let deliveryHandler: (@Sendable (DeliveryReport) -> Void)?
    /// Names of topic handles seen in delivery reports: one String per topic, not one per record.
    private let topicNames = Mutex<[UInt: String]>([:])

    func topicName(_ handle: OpaquePointer) -> String {
        let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        let native = rd_kafka_topic_name(handle)!
        // Compared, not trusted: a destroyed handle's address could be reused by another topic.
        if let name = topicNames.withLock({ $0[key] }), name.withCString({ strcmp($0, native) == 0 }) { return name }
        let name = String(cString: native)
        topicNames.withLock { $0[key] = name }
        return name
    }

    /// Set in a message opaque that carries a caller's tag rather than an awaiter id (those count up from 1).
    static let tagFlag: UInt64 = 1 << 63

    let tagHandler: (@Sendable (UInt64, KafkaError?) -> Void)?

    init(
        logger: Logger, deliveryHandler: (@Sendable (DeliveryReport) -> Void)?,
        tagHandler: (@Sendable (UInt64, KafkaError?) -> Void)?
    ) {
        self.deliveryHandler = deliveryHandler
        self.tagHandler = tagHandler
        super.init(logger: logger)
    }
}

/// The C delivery-report callback; runs on the poll thread (inside `rd_kafka_poll` or `rd_kafka_flush`).
private let deliveryCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
    _, message, opaque in
    guard let message, let opaque else { return }
    let context = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
    let native = message.pointee
    let raw = UInt64(UInt(bitPattern: native._private))
    let isTag = raw & ProducerContext.tagFlag != 0
    let awaiterID = isTag ? 0 : UInt(raw)
    let failed = native.err != RD_KAFKA_RESP_ERR_NO_ERROR
    if failed {
        context.failed.add(1, ordering: .relaxed)
    } else {
        context.delivered.add(1, ordering: .relaxed)
    }
    if isTag, let tagHandler = context.tagHandler {
        let tag = raw & ~ProducerContext.tagFlag
        guard failed else { return tagHandler(tag, nil) }
        let topic = native.rkt.map { context.topicName($0) } ?? ""
        let error = KafkaError.fromLibrdkafka(native.err, context: "delivery to \(topic) [\(native.partition)] failed")
        context.state.withLock { state in state.firstError = state.firstError ?? error }
        return tagHandler(tag, error)
    }
    var finishedBatch: BatchWaiter?
    let continuation =
        awaiterID == 0
        ? nil
        : context.state.withLock { state -> CheckedContinuation<DeliveryReport, any Error>? in
            if let single = state.awaiters.removeValue(forKey: awaiterID) { return single }
            if let batch = state.batchMembers.removeValue(forKey: awaiterID) {
                batch.remaining -= 1
                if failed && batch.error == nil {
                    batch.error = KafkaError.fromLibrdkafka(native.err, context: "delivery failed")
                }
                if batch.remaining == 0 { finishedBatch = batch }
            }
            return nil
        }
    if let finishedBatch {
        if let error = finishedBatch.error { finishedBatch.continuation?.resume(throwing: error) } else { finishedBatch.continuation?.resume() }
        finishedBatch.continuation = nil
        return
    }
    guard continuation != nil || context.deliveryHandler != nil || failed else { return }
    let topic = native.rkt.map { context.topicName($0) } ?? ""
    let error: KafkaError? =
        failed ? KafkaError.fromLibrdkafka(native.err, context: "delivery to \(topic) [\(native.partition)] failed") : nil
    if let error { context.state.withLock { state in state.firstError = state.firstError ?? error } }
    var report = DeliveryReport(topic: topic, partition: native.partition, offset: native.offset, error: error)
    if isTag { report.tag = raw & ~ProducerContext.tagFlag }
    report.size = native.len + native.key_len
    if let continuation {
        if let error { continuation.resume(throwing: error) } else { continuation.resume(returning: report) }
    } else if let handler = context.deliveryHandler {
        handler(report)
    } else if let error {
        context.logger.info("record not delivered", metadata: [LogKeys.errorCode: "\(error.code)", "error": "\(error)"])
    }
}

/// Owns the producer handle and its poll thread.
///
/// `@unchecked Sendable`: `handle` and `mainQueue` are set once in `init` and destroyed only by the poll thread
/// after it stopped serving; `commands` and `lifecycle` are `Mutex`es.
final class ProducerClient: @unchecked Sendable {
    private let context: ProducerContext
    private let handle: OpaquePointer
    private let mainQueue: OpaquePointer
    private let logger: Logger

    private struct Lifecycle {
        var stopRequested = false
        var flushTimeoutMilliseconds: Int32 = 0
        var stopped = false
        var queueDestroyed = false
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
    }
    private let lifecycle = Mutex(Lifecycle())
    private let commands = Mutex<[@Sendable (OpaquePointer) -> Void]>([])
    // Lock-free fast paths: `stopFlag` mirrors `lifecycle.stopRequested`; `activeCalls` counts produce calls in
    // progress, which the poll thread waits out before destroying the handle; `commandCount` mirrors `commands`.
    private let stopFlag = Atomic<Bool>(false)
    private let activeCalls = Atomic<Int>(0)
    private let commandCount = Atomic<Int>(0)
    private let inlineCounter = Atomic<Int>(0)

    init(
        configuration: KafkaConfiguration, logger: Logger,
        deliveryHandler: (@Sendable (DeliveryReport) -> Void)?, tagHandler: (@Sendable (UInt64, KafkaError?) -> Void)?
    ) throws {
        let context = ProducerContext(logger: logger, deliveryHandler: deliveryHandler, tagHandler: tagHandler)
        self.context = context
        queueLimit = Int(configuration["queue.buffering.max.messages"] ?? "") ?? 100_000
        self.logger = logger
        handle = try RDKafkaHandle.make(
            kind: .producer, configuration: configuration,
            opaque: Unmanaged.passUnretained(context).toOpaque()
        ) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf, deliveryCallback)
        }
        mainQueue = rd_kafka_queue_get_main(handle)
        let thread = Thread { [self] in self.pollLoop() }
        thread.name = "sluice-producer-poll"
        thread.start()
    }

    var outqLength: Int32 { lifecycle.withLock { $0.queueDestroyed ? 0 : rd_kafka_outq_len(handle) } }

    var statistics: ProducerStatistics {
        ProducerStatistics(
            delivered: context.delivered.load(ordering: .relaxed), failed: context.failed.load(ordering: .relaxed),
            firstError: context.state.withLock { $0.firstError })
    }

    private func pollLoop() {
        while true {
            let served = rd_kafka_poll(handle, 100)
            if served > 0 { wakeCapacityWaiters() }
            if commandCount.load(ordering: .acquiring) > 0 {
                let pending = commands.withLock { list -> [@Sendable (OpaquePointer) -> Void] in
                    defer { list.removeAll() }
                    commandCount.store(0, ordering: .releasing)
                    return list
                }
                for command in pending { command(handle) }
            }
            if stopFlag.load(ordering: .acquiring) {
                finish(flushTimeoutMilliseconds: lifecycle.withLock { $0.flushTimeoutMilliseconds })
                return
            }
        }
    }

    /// Runs on the poll thread: flush, fail what is left, destroy.
    private func finish(flushTimeoutMilliseconds: Int32) {
        // Produce calls that started before the stop finish against the live handle.
        while activeCalls.load(ordering: .acquiring) > 0 { sched_yield() }
        if flushTimeoutMilliseconds > 0 {
            let result = rd_kafka_flush(handle, flushTimeoutMilliseconds)
            if result != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.warning(
                    "producer closed with undelivered records",
                    metadata: ["outstanding": "\(rd_kafka_outq_len(handle))"])
            }
        }
        // Answer flush requests that raced with the stop.
        let pending = commands.withLock { list -> [@Sendable (OpaquePointer) -> Void] in
            defer { list.removeAll() }
            return list
        }
        for command in pending { command(handle) }
        rd_kafka_purge(handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
        // Serve the purge reports so every awaiter hears about its record.
        _ = rd_kafka_poll(handle, 0)
        let (leftovers, batches) = context.state.withLock { state in
            defer {
                state.awaiters.removeAll()
                state.batchMembers.removeAll()
            }
            return (Array(state.awaiters.values), Array(state.batchMembers.values))
        }
        for continuation in leftovers { continuation.resume(throwing: KafkaError.closed("the producer")) }
        var answered = Set<ObjectIdentifier>()
        for batch in batches where answered.insert(ObjectIdentifier(batch)).inserted {
            batch.continuation?.resume(throwing: KafkaError.closed("the producer"))
            batch.continuation = nil
        }
        wakeCapacityWaiters()
        lifecycle.withLock { state in
            rd_kafka_queue_destroy(mainQueue)
            state.queueDestroyed = true
        }
        topicHandles.withLock { handles in
            for topicHandle in handles.values { rd_kafka_topic_destroy(topicHandle) }
            handles.removeAll()
        }
        rd_kafka_destroy(handle)
        let waiters = lifecycle.withLock { state in
            state.stopped = true
            defer { state.stopWaiters.removeAll() }
            return state.stopWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Interrupts `rd_kafka_poll`; safe from any thread until the poll thread destroyed the queue.
    private func wakePollThread() {
        lifecycle.withLock { state in
            if !state.queueDestroyed { rd_kafka_queue_yield(mainQueue) }
        }
    }

    private func wakeCapacityWaiters() {
        guard context.capacityWaiterCount.load(ordering: .acquiring) > 0 else { return }
        let waiters = context.state.withLock { state in
            defer {
                state.capacityWaiters.removeAll()
                context.capacityWaiterCount.store(0, ordering: .releasing)
            }
            return state.capacityWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func requestStop(flushTimeoutMilliseconds: Int32) {
        let first = lifecycle.withLock { state -> Bool in
            guard !state.stopRequested else { return false }
            state.stopRequested = true
            state.flushTimeoutMilliseconds = flushTimeoutMilliseconds
            stopFlag.store(true, ordering: .sequentiallyConsistent)
            return true
        }
        if first { wakePollThread() }
    }

    func shutdown(flushTimeoutMilliseconds: Int32) async {
        requestStop(flushTimeoutMilliseconds: flushTimeoutMilliseconds)
        await withCheckedContinuation { continuation in
            let done = lifecycle.withLock { state -> Bool in
                if state.stopped { return true }
                state.stopWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    func produce(_ message: ProducerMessage, awaiterID: UInt) throws(KafkaError) {
        try withOptionalBytes(message.value) { (value, valueCount) throws(KafkaError) in
            try withOptionalBytes(message.key) { (key, keyCount) throws(KafkaError) in
                try produce(
                    topic: message.topic, partition: message.partition,
                    key: key.map { UnsafeRawBufferPointer(start: $0, count: keyCount) },
                    value: value.map { UnsafeRawBufferPointer(start: $0, count: valueCount) },
                    headers: message.headers, awaiterID: awaiterID)
            }
        }
    }

    func produce(
        topic: String, partition: Int32?, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?,
        headers messageHeaders: [KafkaHeader], awaiterID: UInt
    ) throws(KafkaError) {
        var headers: OpaquePointer?
        if !messageHeaders.isEmpty {
            headers = rd_kafka_headers_new(messageHeaders.count)
            for header in messageHeaders {
                if let value = header.value {
                    value.withUnsafeBytes { bytes in
                        _ = rd_kafka_header_add(headers, header.name, -1, bytes.baseAddress, bytes.count)
                    }
                } else {
                    _ = rd_kafka_header_add(headers, header.name, -1, nil, 0)
                }
            }
        }
        let partition = partition ?? sluice_partition_any()
        let opaque = UnsafeMutableRawPointer(bitPattern: awaiterID)
        // Counted as active so that a concurrent shutdown waits for this call before destroying the handle.
        activeCalls.add(1, ordering: .sequentiallyConsistent)
        let result: rd_kafka_resp_err_t
        if stopFlag.load(ordering: .sequentiallyConsistent) {
            result = RD_KAFKA_RESP_ERR__DESTROY
        } else {
            result = sluice_produce(
                handle, topic, partition, value?.baseAddress, value?.count ?? 0, key?.baseAddress, key?.count ?? 0,
                headers, opaque)
        }
        activeCalls.subtract(1, ordering: .sequentiallyConsistent)
        if result != RD_KAFKA_RESP_ERR_NO_ERROR {
            if let headers { rd_kafka_headers_destroy(headers) }
            if result == RD_KAFKA_RESP_ERR__DESTROY { throw KafkaError.closed("the producer") }
            throw KafkaError.fromLibrdkafka(result, context: "could not produce to \(topic)")
        }
    }

    /// A topic handle per topic name for batch produce; destroyed with the client.
    private let topicHandles = Mutex<[String: OpaquePointer]>([:])
    private let queueLimit: Int

    func produceBatch(topic: String, records: [KafkaProducer.BatchRecord]) throws(KafkaError) {
        guard !records.isEmpty else { return }
        activeCalls.add(1, ordering: .sequentiallyConsistent)
        defer { activeCalls.subtract(1, ordering: .sequentiallyConsistent) }
        guard !stopFlag.load(ordering: .sequentiallyConsistent) else { throw KafkaError.closed("the producer") }
        let topicHandle = try topicHandles.withLock { (handles) throws(KafkaError) -> OpaquePointer in
            if let existing = handles[topic] { return existing }
            guard let created = rd_kafka_topic_new(handle, topic, nil) else {
                throw KafkaError.fromLibrdkafka(rd_kafka_last_error(), context: "could not create a handle for topic \(topic)")
            }
            handles[topic] = created
            return created
        }
        var messages = [rd_kafka_message_t](repeating: rd_kafka_message_t(), count: records.count)
        for (index, record) in records.enumerated() {
            messages[index].payload = UnsafeMutableRawPointer(mutating: record.value.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!)
            messages[index].len = record.value.count
            if let key = record.key {
                messages[index].key = UnsafeMutableRawPointer(mutating: key.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!)
                messages[index].key_len = key.count
            }
            messages[index]._private = UnsafeMutableRawPointer(bitPattern: UInt(record.tag | ProducerContext.tagFlag))
        }
        var start = 0
        while start < messages.count {
            // Wait for room for the rest, so that the queue never refuses a record in the middle of a call.
            let room = queueLimit - Int(rd_kafka_outq_len(handle))
            let count = min(messages.count - start, max(room, 0))
            if count == 0 {
                if rd_kafka_poll(handle, 10) > 0 { wakeCapacityWaiters() }
                continue
            }
            let accepted = messages.withUnsafeMutableBufferPointer { buffer in
                Int(sluice_produce_batch(topicHandle, buffer.baseAddress! + start, Int32(count)))
            }
            if accepted < count {
                let failure = messages[start..<(start + count)].first { $0.err != RD_KAFKA_RESP_ERR_NO_ERROR }
                throw KafkaError.fromLibrdkafka(failure?.err ?? RD_KAFKA_RESP_ERR__FAIL, context: "could not produce to \(topic)")
            }
            start += count
            serveReportsInline(every: count)
        }
    }

    func prepare(topic: String, timeoutMilliseconds: Int32) throws -> [Int32] {
        activeCalls.add(1, ordering: .sequentiallyConsistent)
        defer { activeCalls.subtract(1, ordering: .sequentiallyConsistent) }
        guard !stopFlag.load(ordering: .sequentiallyConsistent) else { throw KafkaError.closed("the producer") }
        return try Metadata.prepare(handle: handle, topic: topic, timeout: timeoutMilliseconds)
    }

    func flushInline(timeoutMilliseconds: Int32) -> Bool {
        activeCalls.add(1, ordering: .sequentiallyConsistent)
        defer { activeCalls.subtract(1, ordering: .sequentiallyConsistent) }
        guard !stopFlag.load(ordering: .sequentiallyConsistent) else { return false }
        let result = rd_kafka_flush(handle, timeoutMilliseconds)
        wakeCapacityWaiters()
        return result == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Blocks the producing thread in `rd_kafka_poll` for up to 10 ms: it returns as soon as delivery reports were
    /// served, which frees queue space (the poll thread may serve them too; the callback is thread-safe).
    func waitForSpaceInline() {
        activeCalls.add(1, ordering: .sequentiallyConsistent)
        if !stopFlag.load(ordering: .sequentiallyConsistent) {
            if rd_kafka_poll(handle, 10) > 0 { wakeCapacityWaiters() }
        } else {
            usleep(1000)
        }
        activeCalls.subtract(1, ordering: .sequentiallyConsistent)
    }

    /// Serves delivery reports on the calling (producing) thread every 256 records, so that librdkafka frees
    /// each message on the thread that allocated it: cross-thread frees contend on glibc's arena locks and
    /// cost more than the produce call itself. The delivery callback is thread-safe (atomics and a `Mutex`),
    /// so it may run here and on the poll thread at once.
    func serveReportsInline(every records: Int = 1) {
        let before = inlineCounter.add(records, ordering: .relaxed).newValue - records
        guard (before + records) >> 8 != before >> 8 else { return }
        activeCalls.add(1, ordering: .sequentiallyConsistent)
        if !stopFlag.load(ordering: .sequentiallyConsistent) {
            if rd_kafka_poll(handle, 0) > 0 { wakeCapacityWaiters() }
        }
        activeCalls.subtract(1, ordering: .sequentiallyConsistent)
    }

    func waitForCapacity() async {
        await withCheckedContinuation { continuation in
            context.state.withLock {
                $0.capacityWaiters.append(continuation)
                context.capacityWaiterCount.add(1, ordering: .releasing)
            }
        }
    }

    func sendAndAwait(_ message: ProducerMessage) async throws -> DeliveryReport {
        while true {
            let id = context.state.withLock { state -> UInt in
                defer { state.nextAwaiterID &+= 1 }
                return state.nextAwaiterID
            }
            var queueFull = false
            let report: DeliveryReport = try await withCheckedThrowingContinuation { continuation in
                context.state.withLock { $0.awaiters[id] = continuation }
                do throws(KafkaError) {
                    try produce(message, awaiterID: id)
                } catch {
                    let pending = context.state.withLock { $0.awaiters.removeValue(forKey: id) }
                    if error.code == .queueFull {
                        queueFull = true
                        pending?.resume(returning: DeliveryReport(topic: "", partition: -1, offset: -1, error: error))
                    } else {
                        pending?.resume(throwing: error)
                    }
                }
            }
            if !queueFull { return report }
            await waitForCapacity()
        }
    }

    /// Produces every message and returns when all were acknowledged; throws the first delivery failure.
    func sendBatchAndAwait(_ messages: [ProducerMessage]) async throws {
        guard !messages.isEmpty else { return }
        let waiter = BatchWaiter(remaining: messages.count)
        let firstID = context.state.withLock { state -> UInt in
            defer { state.nextAwaiterID &+= UInt(messages.count) }
            return state.nextAwaiterID
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            context.state.withLock { state in
                waiter.continuation = continuation
                for index in 0..<messages.count { state.batchMembers[firstID + UInt(index)] = waiter }
            }
            // Produced right here; only a full queue moves the rest to a task that waits for room.
            produceBatch(messages, from: 0, firstID: firstID, waiter: waiter)
        }
    }

    /// Produces `messages[from...]`; at a full queue hands the rest to a task that waits for room. A failure other
    /// than a full queue answers the waiter for the rest.
    private func produceBatch(_ messages: [ProducerMessage], from start: Int, firstID: UInt, waiter: BatchWaiter) {
        var index = start
        while index < messages.count {
            do throws(KafkaError) {
                try produce(messages[index], awaiterID: firstID + UInt(index))
                index += 1
            } catch {
                if error.code == .queueFull {
                    let resumeAt = index
                    Task {
                        await waitForCapacity()
                        produceBatch(messages, from: resumeAt, firstID: firstID, waiter: waiter)
                    }
                    return
                }
                let resume = context.state.withLock { state -> Bool in
                    for rest in index..<messages.count { state.batchMembers.removeValue(forKey: firstID + UInt(rest)) }
                    waiter.remaining -= messages.count - index
                    waiter.error = waiter.error ?? error
                    return waiter.remaining == 0
                }
                if resume {
                    waiter.continuation?.resume(throwing: waiter.error!)
                    waiter.continuation = nil
                }
                return
            }
        }
    }

    func flush(timeoutMilliseconds: Int32) async throws {
        let result: rd_kafka_resp_err_t? = await withCheckedContinuation { continuation in
            // Checked and appended under the lifecycle lock: the poll thread drains commands after it sees a stop.
            let accepted = lifecycle.withLock { state -> Bool in
                guard !state.stopRequested else { return false }
                commands.withLock { list in
                    list.append { handle in continuation.resume(returning: rd_kafka_flush(handle, timeoutMilliseconds)) }
                    commandCount.add(1, ordering: .releasing)
                }
                return true
            }
            if accepted { wakePollThread() } else { continuation.resume(returning: nil) }
        }
        guard let result else { throw KafkaError.closed("the producer") }
        wakeCapacityWaiters()
        if result != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError.fromLibrdkafka(result, context: "flush did not finish: \(outqLength) records outstanding")
        }
    }
}

/// Calls `body` with a pointer and length for optional bytes (`nil` → NULL, 0).
@inline(__always)
func withOptionalBytes<R, E: Error>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) throws(E) -> R) throws(E) -> R {
    guard let bytes else { return try body(nil, 0) }
    // An empty array may have no storage; keep "present but empty" distinct from "absent".
    if bytes.isEmpty { return try body(UnsafeRawPointer(bitPattern: 1), 0) }
    let result: Result<R, E> = bytes.withUnsafeBytes { buffer in
        do throws(E) { return .success(try body(buffer.baseAddress, buffer.count)) } catch { return .failure(error) }
    }
    return try result.get()
}
