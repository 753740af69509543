internal import CRdKafka
public import Logging
internal import Synchronization

/// Creates, lists and describes topics on a Kafka cluster.
///
/// Creation uses the CreateTopics admin API and is idempotent: existing topics are reported, not changed.
/// Brokers without that API (librdkafka's mock cluster, which the embedded broker runs) give
/// ``KafkaError`` `.adminUnsupported`; the embedded broker creates topics through ``EmbeddedBroker`` instead.
///
/// Thread-safe; every call blocks only a dedicated executor, never the cooperative pool.
public final class KafkaAdmin: Sendable {
    private let client: AdminClient

    /// Connects to the cluster named by `bootstrap.servers`.
    /// - Throws: ``KafkaError`` `.invalidConfiguration` with librdkafka's message.
    public init(configuration: KafkaConfiguration, logger: Logger = Logger(label: "sluice.kafka")) throws {
        guard configuration.bootstrapServers != nil else {
            throw KafkaError.invalidConfiguration("bootstrap.servers is not set; give --bootstrap HOST:PORT")
        }
        client = try AdminClient(configuration: configuration, logger: logger)
    }

    /// Creates topics that do not exist yet.
    /// - Returns: the outcome per topic name.
    /// - Throws: ``KafkaError`` `.adminUnsupported` when the broker has no CreateTopics API, `.admin` for a
    ///   rejected request (e.g. more replicas than brokers), `.timedOut`.
    public func createTopics(_ topics: [TopicSpecification], timeout: Duration = .seconds(30)) async throws
        -> [String: TopicCreationOutcome]
    {
        let client = self.client
        return try await BlockingExecutor.run {
            try client.createTopics(topics, timeoutMilliseconds: Int32(clamping: timeout.milliseconds))
        }
    }

    /// All topics of the cluster, sorted by name.
    public func listTopics(timeout: Duration = .seconds(10)) async throws -> [TopicDescription] {
        let client = self.client
        return try await BlockingExecutor.run {
            try client.withHandle { try Metadata.topics(handle: $0, timeout: Int32(clamping: timeout.milliseconds)) }
        }
    }

    /// One topic's partitions, leaders and replicas.
    /// - Throws: ``KafkaError`` `.unknownTopic` when it does not exist.
    public func describeTopic(_ name: String, timeout: Duration = .seconds(10)) async throws -> TopicDescription {
        guard let topic = try await listTopics(timeout: timeout).first(where: { $0.name == name }),
            topic.errorCode == nil
        else {
            throw KafkaError.fromLibrdkafka(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, context: "topic '\(name)' does not exist")
        }
        return topic
    }

    /// The low and high watermarks (first retained offset, next offset to be written) of a partition.
    public func watermarks(topic: String, partition: Int32, timeout: Duration = .seconds(10)) async throws -> (low: Int64, high: Int64) {
        let client = self.client
        let pair = try await BlockingExecutor.run {
            try client.withHandle { handle -> [Int64] in
                var low: Int64 = 0, high: Int64 = 0
                let err = rd_kafka_query_watermark_offsets(handle, topic, partition, &low, &high, Int32(clamping: timeout.milliseconds))
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    throw KafkaError.fromLibrdkafka(err, context: "could not read watermarks of \(topic)/\(partition)")
                }
                return [low, high]
            }
        }
        return (pair[0], pair[1])
    }

    /// Destroys the client. Idempotent.
    public func close() {
        client.close()
    }
}

/// `@unchecked Sendable`: the handle is used only under `state`'s lock and destroyed once.
final class AdminClient: ClientContext, @unchecked Sendable {
    private let state: Mutex<NativeHandle?>

    init(configuration: KafkaConfiguration, logger: Logger) throws {
        state = Mutex(nil)
        super.init(logger: logger)
        let handle = try RDKafkaHandle.make(
            kind: .producer, configuration: configuration, opaque: Unmanaged.passUnretained(self).toOpaque()
        ) { _ in }
        state.withLock { $0 = NativeHandle(pointer: handle) }
    }

    deinit { close() }

    func close() {
        state.withLock { handle in
            if let current = handle { rd_kafka_destroy(current.pointer) }
            handle = nil
        }
    }

    func withHandle<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        try state.withLock { handle in
            guard let handle else { throw KafkaError.closed("the admin client") }
            return try body(handle.pointer)
        }
    }

    func createTopics(_ topics: [TopicSpecification], timeoutMilliseconds: Int32) throws -> [String: TopicCreationOutcome] {
        guard !topics.isEmpty else { return [:] }
        return try withHandle { handle in
            var newTopics: [OpaquePointer?] = []
            defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
            var errorBuffer = [CChar](repeating: 0, count: 512)
            for topic in topics {
                guard let newTopic = rd_kafka_NewTopic_new(
                    topic.name, topic.partitions, topic.replicationFactor, &errorBuffer, errorBuffer.count)
                else {
                    throw KafkaError.invalidArgument("topic '\(topic.name)': \(decodeCString(errorBuffer))")
                }
                newTopics.append(newTopic)
                for (key, value) in topic.config.sorted(by: { $0.key < $1.key }) {
                    let err = rd_kafka_NewTopic_set_config(newTopic, key, value)
                    if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                        throw KafkaError.withCode(.admin, err, context: "topic '\(topic.name)' config \(key)")
                    }
                }
            }
            let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS)
            defer { rd_kafka_AdminOptions_destroy(options) }
            _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMilliseconds, &errorBuffer, errorBuffer.count)
            _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMilliseconds, &errorBuffer, errorBuffer.count)
            let queue = rd_kafka_queue_new(handle)
            defer { rd_kafka_queue_destroy(queue) }
            newTopics.withUnsafeMutableBufferPointer { buffer in
                rd_kafka_CreateTopics(handle, buffer.baseAddress, buffer.count, options, queue)
            }
            guard let event = rd_kafka_queue_poll(queue, timeoutMilliseconds + 1000) else {
                throw KafkaError.fromLibrdkafka(RD_KAFKA_RESP_ERR__TIMED_OUT, context: "CreateTopics got no answer")
            }
            defer { rd_kafka_event_destroy(event) }
            let requestError = rd_kafka_event_error(event)
            if requestError != RD_KAFKA_RESP_ERR_NO_ERROR {
                let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
                throw Self.requestError(requestError, text: text)
            }
            guard let result = rd_kafka_event_CreateTopics_result(event) else {
                throw KafkaError(code: .admin, reason: "CreateTopics returned an unexpected event")
            }
            var count = 0
            let results = rd_kafka_CreateTopics_result_topics(result, &count)
            var outcome: [String: TopicCreationOutcome] = [:]
            for index in 0..<count {
                let topicResult = results![index]
                let name = String(cString: rd_kafka_topic_result_name(topicResult))
                let err = rd_kafka_topic_result_error(topicResult)
                switch err {
                case RD_KAFKA_RESP_ERR_NO_ERROR: outcome[name] = .created
                case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS: outcome[name] = .alreadyExists
                default:
                    let text = rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) } ?? ""
                    throw KafkaError(
                        code: .admin, reason: "could not create topic '\(name)': \(text)",
                        nativeCode: Int32(err.rawValue))
                }
            }
            return outcome
        }
    }

    private static func requestError(_ err: rd_kafka_resp_err_t, text: String) -> KafkaError {
        if err == RD_KAFKA_RESP_ERR__TIMED_OUT && text.contains("controller") {
            // librdkafka's mock cluster names no controller, so admin requests wait for one until they time out.
            return KafkaError(
                code: .adminUnsupported,
                reason: "no controller broker answered CreateTopics (\(text)). Sluice's embedded broker "
                    + "(librdkafka's mock cluster) has no admin API and no controller: create its topics when it "
                    + "starts with sluice broker --topics DIR or --topic NAME:PARTITIONS. On a real cluster, check "
                    + "that a controller is elected and reachable",
                nativeCode: Int32(err.rawValue), isRetriable: true)
        }
        switch err {
        case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE, RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION,
            RD_KAFKA_RESP_ERR_INVALID_REQUEST:
            return KafkaError(
                code: .adminUnsupported,
                reason: """
                    the broker does not support CreateTopics (\(text)). If this is Sluice's embedded broker \
                    (librdkafka's mock cluster, which has no admin API), create topics when it starts: \
                    sluice broker --topics DIR or --topic NAME:PARTITIONS
                    """,
                nativeCode: Int32(err.rawValue))
        default:
            return KafkaError.withCode(.admin, err, context: "CreateTopics failed: \(text)")
        }
    }
}
