internal import CRdKafka
internal import Foundation
internal import Logging
internal import CoreMetrics
internal import Synchronization

/// Owns a consumer handle, its poll thread and the C callbacks (rebalance, commit replies).
///
/// Every call that can fire callbacks (poll, assign, seek, pause, close) runs on the poll thread; blocking
/// broker queries and synchronous commits run on a serial queue that close drains before destroying the handle.
///
/// `@unchecked Sendable`: `handleStorage` and `consumerQueue` are written once at the end of `init` and
/// destroyed by the poll thread only after `lifecycle.destroyed` is set under its lock; fields marked
/// "poll thread" are only touched by that thread; the rest are immutable or `Mutex`es.
final class ConsumerClient: ClientContext, @unchecked Sendable {
    let buffer: ConsumerBuffer
    let options: KafkaConsumer.Options
    private let groupID: String?
    private var handleStorage: OpaquePointer?
    private var consumerQueueStorage: OpaquePointer?
    private var handle: OpaquePointer { handleStorage.unsafelyUnwrapped }
    private let blockingQueue = DispatchQueue(label: "sluice.kafka.consumer.blocking")
    /// Captured at creation (a task-local factory in tests); metrics are created from it on the poll thread.
    private let metricsFactory: any MetricsFactory

    private struct Lifecycle {
        var closeRequested = false
        var closing = false
        var destroyed = false
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
    }
    private let lifecycle = Mutex(Lifecycle())
    private let commands = Mutex<[@Sendable (OpaquePointer) -> Void]>([])

    // Poll thread only. Records of a batch wait in `pending` with ranges into `pendingBytes` until
    // `flushPending` turns them into events that share one buffer.
    private enum Pending {
        case record(KafkaRecord, key: Range<Int>?, value: Range<Int>?)
        case event(ConsumerEvent)
    }
    private var pending: [Pending] = []
    private var pendingBytes: [UInt8] = []
    private var outgoing: [ConsumerEvent] = []
    private var recordsSinceNudge = 0
    private var lastTopicPointer: OpaquePointer?
    private var lastTopicName = ""
    private var terminated = false

    init(configuration: KafkaConfiguration, options: KafkaConsumer.Options, logger: Logger) throws {
        buffer = ConsumerBuffer(capacity: options.bufferCapacity)
        self.options = options
        metricsFactory = MetricsSystem.factory
        groupID = configuration.groupID
        var configuration = configuration
        if configuration.groupID == nil {
            // librdkafka's consumer queue exists only with a group id. A consumer without a group uses a private
            // id that never joins (only assign is allowed) and never commits.
            configuration.groupID = "sluice-unjoined-\(UUID().uuidString)"
        }
        var logger = logger
        if let groupID { logger[metadataKey: LogKeys.groupID] = .string(groupID) }
        super.init(logger: logger)
        let opaque = Unmanaged.passUnretained(self).toOpaque()
        let handle = try RDKafkaHandle.make(kind: .consumer, configuration: configuration, opaque: opaque) { conf in
            if self.groupID != nil { rd_kafka_conf_set_rebalance_cb(conf, rebalanceCallback) }
            rd_kafka_conf_set_offset_commit_cb(conf, offsetCommitCallback)
            rd_kafka_conf_set_error_cb(conf, consumerErrorCallback)
        }
        rd_kafka_poll_set_consumer(handle)
        handleStorage = handle
        consumerQueueStorage = rd_kafka_queue_get_consumer(handle)
        let thread = Thread { [self] in self.pollLoop() }
        thread.name = "sluice-consumer-poll"
        thread.start()
    }

    // MARK: Poll thread

    private func pollLoop() {
        while true {
            runCommands()
            if lifecycle.withLock({ $0.closeRequested }) { break }
            if terminated {
                Thread.sleep(forTimeInterval: 0.05)
                continue
            }
            let space = buffer.waitForSpace {
                self.commands.withLock { $0.isEmpty } && !self.lifecycle.withLock { $0.closeRequested }
            }
            if space == 0 { continue }
            let limit = min(space, 1024)
            let bursting = recordsSinceNudge >= Self.nudgeAfterRecords
            var message = rd_kafka_consumer_poll(handle, bursting ? 5 : 100)
            if message == nil && bursting { nudgeFetchers() }
            while let current = message {
                handleMessage(current)
                rd_kafka_message_destroy(current)
                recordsSinceNudge &+= 1
                if pending.count >= limit || terminated { break }
                message = rd_kafka_consumer_poll(handle, 0)
            }
            // Nudge before the prefetch runs dry rather than after, so fetching never pauses after a burst.
            if recordsSinceNudge >= Self.nudgeAfterRecords && rd_kafka_queue_length(consumerQueueStorage) < 2048 {
                nudgeFetchers()
            }
            flushPending()
        }
        closeOnPollThread()
    }

    /// After a burst of at least this many records, a nearly drained prefetch queue (or an empty poll) nudges
    /// the fetchers.
    private static let nudgeAfterRecords = 10_000

    /// Wakes the broker threads that lead the assigned partitions.
    ///
    /// librdkafka 2.0.2 stops fetching once its forwarded consumer queue reaches `queued.min.messages` or
    /// `queued.max.messages.kbytes`, and re-checks only when its broker thread wakes up, up to a second later,
    /// even after the application drained the queue. Any request to a broker wakes its thread: one
    /// offsets-for-times lookup (one small ListOffsets request per leader) when a burst has nearly drained
    /// the queue restarts fetching before it runs dry. A trickle of records never triggers it.
    private func nudgeFetchers() {
        recordsSinceNudge = 0
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return }
        guard list.pointee.cnt > 0 else {
            rd_kafka_topic_partition_list_destroy(list)
            return
        }
        for index in 0..<Int(list.pointee.cnt) { list.pointee.elems[index].offset = -1 }
        let query = NativeList(pointer: list)
        // On the blocking queue, which close drains before destroying the handle.
        blockingQueue.async { [self] in
            _ = rd_kafka_offsets_for_times(handle, query.pointer, 1000)
            rd_kafka_topic_partition_list_destroy(query.pointer)
        }
    }

    private func flushPending() {
        guard !pending.isEmpty else { return }
        let storage = pendingBytes
        outgoing.reserveCapacity(pending.count)
        for item in pending {
            switch item {
            case .event(let event):
                outgoing.append(event)
            case .record(var record, let key, let value):
                record.keyBytes = key.map { storage[$0] }
                record.valueBytes = value.map { storage[$0] }
                outgoing.append(.record(record))
            }
        }
        pending.removeAll(keepingCapacity: true)
        buffer.append(moving: &outgoing)
        // A fresh buffer per batch: the previous one now belongs to the delivered records.
        pendingBytes = []
        pendingBytes.reserveCapacity(max(storage.count, 1 << 16))
    }

    private func runCommands() {
        let list = commands.withLock { list -> [@Sendable (OpaquePointer) -> Void] in
            defer { list.removeAll() }
            return list
        }
        for command in list { command(handle) }
    }

    private func topicName(_ topic: OpaquePointer?) -> String {
        guard let topic else { return "" }
        if topic != lastTopicPointer {
            lastTopicPointer = topic
            lastTopicName = String(cString: rd_kafka_topic_name(topic))
        }
        return lastTopicName
    }

    private func handleMessage(_ message: UnsafeMutablePointer<rd_kafka_message_t>) {
        let native = message.pointee
        let topic = topicName(native.rkt)
        switch native.err {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
            copyRecord(message, topic: topic)
        case RD_KAFKA_RESP_ERR__PARTITION_EOF:
            pending.append(.event(.partitionEOF(TopicPartitionOffset(topic: topic, partition: native.partition, offset: native.offset))))
        case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
            let detail = payloadText(native)
            Counter(label: ConsumerMetrics.dataLost, dimensions: [("topic", topic)], factory: metricsFactory).increment()
            logger.error(
                "data lost to retention: committed offset is before the log start",
                metadata: [LogKeys.topic: "\(topic)", LogKeys.partition: "\(native.partition)",
                           LogKeys.offset: "\(native.offset)"])
            flushPending()
            terminated = true
            buffer.finish(error: KafkaError.dataLost(topic: topic, partition: native.partition, detail: detail))
        case RD_KAFKA_RESP_ERR__FATAL:
            var errorBuffer = [CChar](repeating: 0, count: 512)
            let code = rd_kafka_fatal_error(handle, &errorBuffer, errorBuffer.count)
            flushPending()
            terminated = true
            buffer.finish(
                error: KafkaError(code: .fatal, reason: "fatal consumer error: \(decodeCString(errorBuffer))",
                                  nativeCode: Int32(code.rawValue)))
        default:
            let context = topic.isEmpty ? "consumer error" : "consumer error on \(topic) [\(native.partition)]"
            let error = KafkaError.fromLibrdkafka(native.err, context: context, detail: payloadText(native))
            logger.info("consumer error", metadata: [LogKeys.errorCode: "\(error.code)", "error": "\(error)"])
            pending.append(.event(.error(error)))
        }
    }

    private func payloadText(_ native: rd_kafka_message_t) -> String {
        guard let payload = native.payload, native.len > 0 else { return String(cString: rd_kafka_err2str(native.err)) }
        let bytes = UnsafeRawBufferPointer(start: payload, count: native.len)
        return String(decoding: bytes, as: UTF8.self)
    }

    private func copyRecord(_ message: UnsafeMutablePointer<rd_kafka_message_t>, topic: String) {
        let native = message.pointee
        let key = native.key.map { appendPending(UnsafeRawBufferPointer(start: $0, count: native.key_len)) }
        let value = native.payload.map { appendPending(UnsafeRawBufferPointer(start: $0, count: native.len)) }
        var headers: [KafkaHeader] = []
        var nativeHeaders: OpaquePointer?
        if rd_kafka_message_headers(message, &nativeHeaders) == RD_KAFKA_RESP_ERR_NO_ERROR, let nativeHeaders {
            var index = 0
            var name: UnsafePointer<CChar>?
            var headerValue: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(nativeHeaders, index, &name, &headerValue, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(
                    KafkaHeader(
                        name: name.map { String(cString: $0) } ?? "",
                        value: headerValue.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let milliseconds = rd_kafka_message_timestamp(message, &timestampType)
        let timestamp: KafkaTimestamp? =
            switch timestampType {
            case RD_KAFKA_TIMESTAMP_CREATE_TIME: KafkaTimestamp(milliseconds: milliseconds, kind: .createTime)
            case RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME: KafkaTimestamp(milliseconds: milliseconds, kind: .logAppendTime)
            default: nil
            }
        let record = KafkaRecord(
            topic: topic, partition: native.partition, offset: native.offset, keyBytes: nil, valueBytes: nil,
            headers: headers, timestamp: timestamp)
        pending.append(.record(record, key: key, value: value))
    }

    private func appendPending(_ bytes: UnsafeRawBufferPointer) -> Range<Int> {
        let start = pendingBytes.count
        pendingBytes.append(contentsOf: bytes)
        return start..<pendingBytes.count
    }

    /// Called by the C error callback on the poll thread (inside a poll): client-level errors such as a broker
    /// that cannot be reached become ``ConsumerEvent/error(_:)`` events.
    fileprivate func clientError(_ err: rd_kafka_resp_err_t, _ reason: String) {
        if err == RD_KAFKA_RESP_ERR__FATAL { return }  // surfaced by the poll as a fatal message
        let error = KafkaError.fromLibrdkafka(err, context: "client error", detail: reason)
        logger.debug("client error", metadata: [LogKeys.errorCode: "\(error.code)", "error": "\(reason)"])
        pending.append(.event(.error(error)))
    }

    /// Called by the C rebalance callback on the poll thread.
    fileprivate func rebalance(_ err: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let cooperative = rd_kafka_rebalance_protocol(handle).map { String(cString: $0) } == "COOPERATIVE"
        let partitions = TopicPartitionList.read(list).map { $0.0.topicPartition }
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            setStartOffsets(list)
            let result: rd_kafka_resp_err_t
            if cooperative {
                let error = rd_kafka_incremental_assign(handle, list)
                if let error {
                    result = rd_kafka_error_code(error)
                    rd_kafka_error_destroy(error)
                } else {
                    result = RD_KAFKA_RESP_ERR_NO_ERROR
                }
            } else {
                result = rd_kafka_assign(handle, list)
            }
            if result != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.error("assign failed", metadata: [LogKeys.errorCode: "\(KafkaError.name(of: Int32(result.rawValue)))"])
            }
            logger.debug("partitions assigned", metadata: ["partitions": "\(partitions)"])
            flushPending()
            buffer.append(contentsOf: [.assigned(partitions)])
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(handle) != 0
            flushPending()
            let event: ConsumerEvent = lost ? .lost(partitions) : .revoked(partitions)
            let closing = lifecycle.withLock { $0.closing }
            if closing || terminated {
                buffer.purge(Set(partitions))
            } else {
                let seconds = TimeInterval(options.revocationTimeout.milliseconds) / 1000
                let acknowledged = buffer.deliverRevocation(event, partitions: Set(partitions), waitUpTo: seconds)
                if !acknowledged && !buffer.isFinished {
                    logger.warning(
                        "the application did not acknowledge a revocation in time; releasing partitions",
                        metadata: ["partitions": "\(partitions)"])
                }
            }
            if !lost { commitStoredOnPollThread(reason: "revocation") }
            if cooperative {
                if let error = rd_kafka_incremental_unassign(handle, list) { rd_kafka_error_destroy(error) }
            } else {
                _ = rd_kafka_assign(handle, nil)
            }
            logger.debug("partitions released", metadata: ["partitions": "\(partitions)", "lost": "\(lost)"])
        default:
            logger.info("rebalance error", metadata: [LogKeys.errorCode: "\(KafkaError.name(of: Int32(err.rawValue)))"])
            _ = rd_kafka_assign(handle, nil)
        }
    }

    /// Fills in where each newly assigned partition starts: the committed offset, or the configured start for
    /// partitions without one (`auto.offset.reset=error` would otherwise fail them).
    private func setStartOffsets(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let query = rd_kafka_topic_partition_list_copy(list)!
        defer { rd_kafka_topic_partition_list_destroy(query) }
        let timeout = Int32(clamping: options.requestTimeout.milliseconds)
        let err = rd_kafka_committed(handle, query, timeout)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            logger.info(
                "could not read committed offsets at assignment; the configured auto.offset.reset applies",
                metadata: [LogKeys.errorCode: "\(KafkaError.name(of: Int32(err.rawValue)))"])
            return
        }
        let start = options.startWithoutCommittedOffset == .beginning ? sluice_offset_beginning() : sluice_offset_end()
        if options.ignoreCommittedOffsets {
            for index in 0..<Int(list.pointee.cnt) { list.pointee.elems[index].offset = start }
            return
        }
        for index in 0..<Int(list.pointee.cnt) {
            let committed = query.pointee.elems[index].offset
            list.pointee.elems[index].offset = committed >= 0 ? committed : start
        }
    }

    private func commitStoredOnPollThread(reason: String) {
        let err = rd_kafka_commit(handle, nil, 0)
        switch err {
        case RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_RESP_ERR__NO_OFFSET:
            break
        default:
            logger.info(
                "commit of stored offsets failed at \(reason); the next owner re-reads from the last commit",
                metadata: [LogKeys.errorCode: "\(KafkaError.name(of: Int32(err.rawValue)))"])
        }
    }

    private func closeOnPollThread() {
        lifecycle.withLock { $0.closing = true }
        flushPending()
        if groupID != nil { commitStoredOnPollThread(reason: "close") }
        let err = rd_kafka_consumer_close(handle)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.info("consumer close reported an error", metadata: [LogKeys.errorCode: "\(KafkaError.name(of: Int32(err.rawValue)))"])
        }
        // Let queued blocking calls (commits, queries) finish against the live handle.
        blockingQueue.sync {}
        runCommands()
        lifecycle.withLock { state in
            state.destroyed = true
            rd_kafka_queue_destroy(consumerQueueStorage)
        }
        rd_kafka_destroy(handle)
        buffer.finish()
        let waiters = lifecycle.withLock { state in
            defer { state.closeWaiters.removeAll() }
            return state.closeWaiters
        }
        for waiter in waiters { waiter.resume() }
        logger.debug("consumer closed")
    }

    // MARK: Application side

    private func wakePollThread() {
        lifecycle.withLock { state in
            if !state.destroyed { rd_kafka_queue_yield(consumerQueueStorage) }
        }
        buffer.wake()
    }

    func requestClose() {
        let first = lifecycle.withLock { state -> Bool in
            defer { state.closeRequested = true }
            return !state.closeRequested
        }
        if first {
            // A revocation waiting for the application would otherwise hold the poll thread, and so the close,
            // until its timeout.
            buffer.acknowledgeRevocation()
            wakePollThread()
        }
    }

    func close() async {
        requestClose()
        await withCheckedContinuation { continuation in
            let done = lifecycle.withLock { state -> Bool in
                if state.destroyed && state.closeWaiters.isEmpty && buffer.isFinished { return true }
                state.closeWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Runs `body` on the poll thread and returns its result.
    func onPollThread<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            let accepted = lifecycle.withLock { state -> Bool in
                guard !state.closeRequested else { return false }
                commands.withLock { list in
                    list.append { handle in continuation.resume(returning: Result { try body(handle) }) }
                }
                return true
            }
            if accepted { wakePollThread() } else { continuation.resume(returning: .failure(KafkaError.closed("the consumer"))) }
        }
        return try result.get()
    }

    /// Runs a blocking call on the serial blocking queue while the handle is alive.
    private func blocking<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let accepted = lifecycle.withLock { state -> Bool in
                guard !state.closing && !state.destroyed else { return false }
                blockingQueue.async { [self] in continuation.resume(with: Result { try body(handle) }) }
                return true
            }
            if !accepted { continuation.resume(throwing: KafkaError.closed("the consumer")) }
        }
    }

    func subscribe(_ topics: [String]) throws {
        guard groupID != nil else {
            throw KafkaError.invalidConfiguration("subscribe needs group.id; without a group use assign")
        }
        try lifecycle.withLock { state in
            guard !state.closeRequested else { throw KafkaError.closed("the consumer") }
            let list = TopicPartitionList.make(topics.map { TopicPartition(topic: $0, partition: sluice_partition_any()) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_subscribe(handle, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.fromLibrdkafka(err, context: "could not subscribe to \(topics)")
            }
        }
    }

    func store(_ positions: [TopicPartitionOffset]) throws {
        try lifecycle.withLock { state in
            guard !state.destroyed else { throw KafkaError.closed("the consumer") }
            let list = TopicPartitionList.make(positions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_offsets_store(handle, list)
            // __STATE: a partition no longer assigned (after a revocation); its next owner re-reads it.
            if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__STATE {
                throw KafkaError.withCode(.commit, err, context: "could not store offsets")
            }
        }
    }

    func commit(_ positions: [TopicPartitionOffset]?, async: Bool) async throws {
        guard groupID != nil else {
            throw KafkaError.invalidConfiguration("commit needs group.id; this consumer is not in a group")
        }
        try await blocking { handle in
            let list = positions.map { TopicPartitionList.make($0) }
            defer { if let list { rd_kafka_topic_partition_list_destroy(list) } }
            let err = rd_kafka_commit(handle, list, async ? 1 : 0)
            switch err {
            case RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_RESP_ERR__NO_OFFSET: return
            default: throw KafkaError.withCode(.commit, err, context: "offset commit failed")
            }
        }
    }

    /// Sends a commit of explicit positions without waiting (librdkafka keeps commits in order and waits for
    /// outstanding ones when the consumer closes); failures are logged by the commit callback.
    func commitInBackground(_ positions: [TopicPartitionOffset]) throws {
        guard groupID != nil else {
            throw KafkaError.invalidConfiguration("commit needs group.id; this consumer is not in a group")
        }
        try lifecycle.withLock { state in
            // Under the lock: the handle cannot be destroyed meanwhile; an asynchronous commit never blocks.
            guard !state.closing && !state.destroyed else { throw KafkaError.closed("the consumer") }
            let list = TopicPartitionList.make(positions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_commit(handle, list, 1)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
                throw KafkaError.withCode(.commit, err, context: "offset commit failed")
            }
        }
    }

    func committed(_ partitions: [TopicPartition]) async throws -> [TopicPartition: Int64?] {
        let timeout = Int32(clamping: options.requestTimeout.milliseconds)
        return try await blocking { handle in
            let list = TopicPartitionList.make(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_committed(handle, list, timeout)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.withCode(.commit, err, context: "could not read committed offsets")
            }
            var result: [TopicPartition: Int64?] = [:]
            for (position, _) in TopicPartitionList.read(list) {
                result[position.topicPartition] = position.offset >= 0 ? position.offset : nil
            }
            return result
        }
    }

    func watermarks(_ partition: TopicPartition) async throws -> (low: Int64, high: Int64) {
        let timeout = Int32(clamping: options.requestTimeout.milliseconds)
        let pair = try await blocking { handle -> [Int64] in
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_query_watermark_offsets(handle, partition.topic, partition.partition, &low, &high, timeout)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.fromLibrdkafka(err, context: "could not read watermarks of \(partition)")
            }
            return [low, high]
        }
        return (pair[0], pair[1])
    }

    func partitions(of topic: String) async throws -> [Int32] {
        let timeout = Int32(clamping: options.requestTimeout.milliseconds)
        return try await blocking { handle in try Metadata.partitions(handle: handle, topic: topic, timeout: timeout) }
    }

    func seek(_ positions: [TopicPartitionOffset]) async throws {
        let timeout = Int32(clamping: options.requestTimeout.milliseconds)
        let buffer = self.buffer
        try await onPollThread { handle in
            let list = TopicPartitionList.make(positions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            if let error = rd_kafka_seek_partitions(handle, list, timeout) {
                defer { rd_kafka_error_destroy(error) }
                throw KafkaError.fromLibrdkafka(rd_kafka_error_code(error), context: "seek failed")
            }
            for (position, err) in TopicPartitionList.read(list) where err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.fromLibrdkafka(err, context: "seek of \(position) failed")
            }
            buffer.purge(Set(positions.map(\.topicPartition)))
        }
    }

    func pauseResume(_ partitions: [TopicPartition], pause: Bool) async throws {
        try await onPollThread { handle in
            let list = TopicPartitionList.make(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = pause ? rd_kafka_pause_partitions(handle, list) : rd_kafka_resume_partitions(handle, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.fromLibrdkafka(err, context: pause ? "pause failed" : "resume failed")
            }
        }
    }
}

/// The C rebalance callback; runs on the poll thread inside `rd_kafka_consumer_poll` or `rd_kafka_consumer_close`.
private let rebalanceCallback:
    @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = {
        _, err, list, opaque in
        guard let list, let opaque else { return }
        Unmanaged<ConsumerClient>.fromOpaque(opaque).takeUnretainedValue().rebalance(err, list)
    }

/// The C error callback; runs on the poll thread inside `rd_kafka_consumer_poll`.
private let consumerErrorCallback:
    @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = {
        _, err, reason, opaque in
        guard let opaque else { return }
        Unmanaged<ConsumerClient>.fromOpaque(opaque).takeUnretainedValue()
            .clientError(rd_kafka_resp_err_t(rawValue: err), reason.map { String(cString: $0) } ?? "")
    }

/// The C commit-reply callback for asynchronous commits; failures are logged.
private let offsetCommitCallback:
    @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = {
        _, err, _, opaque in
        guard let opaque, err != RD_KAFKA_RESP_ERR_NO_ERROR, err != RD_KAFKA_RESP_ERR__NO_OFFSET else { return }
        let client = Unmanaged<ConsumerClient>.fromOpaque(opaque).takeUnretainedValue()
        client.logger.info("asynchronous commit failed", metadata: [LogKeys.errorCode: "\(KafkaError.name(of: Int32(err.rawValue)))"])
    }
