internal import CRdKafka
public import Logging
internal import Synchronization

/// An in-process Kafka-protocol broker: librdkafka's mock cluster, listening on 127.0.0.1.
///
/// For trying Sluice out and for tests. It keeps data in memory only and has sharp edges that Sluice makes
/// safe: at most 5 MiB or 100,000 batches per partition (older data is dropped; Sluice's consumers report
/// that loudly as ``KafkaError`` `.dataLostToRetention`), no admin API (create topics here with
/// ``createTopic(_:partitions:replicationFactor:)``), about 3 s before a new group's first assignment, and no
/// transaction markers. Fault injection (brokers down and up, latency, request errors) works only in the
/// process that owns the broker.
///
/// Thread-safe. ``shutdown()`` (or `deinit`) destroys the cluster and then its owning handle.
public final class EmbeddedBroker: Sendable {
    /// The bootstrap address list, e.g. `127.0.0.1:40123`.
    public let bootstrapServers: String
    /// Number of brokers, with ids 1…N.
    public let brokerCount: Int
    private let state: Mutex<(handle: NativeHandle, cluster: NativeHandle)?>
    private let context: ClientContext

    /// Starts a cluster of `brokers` brokers on kernel-chosen loopback ports.
    /// - Throws: ``KafkaError`` `.embeddedBroker` when librdkafka cannot start it.
    public init(brokers: Int = 1, logger: Logger = Logger(label: "sluice.kafka.broker")) throws {
        guard (1...16).contains(brokers) else {
            throw KafkaError.invalidArgument("an embedded cluster has 1 to 16 brokers, not \(brokers)")
        }
        context = ClientContext(logger: logger)
        var configuration = KafkaConfiguration()
        configuration.clientID = "sluice-embedded-broker"
        // The owning handle is idle; it exists only to own the cluster.
        configuration["log.connection.close"] = "false"
        let handle = try RDKafkaHandle.make(
            kind: .producer, configuration: configuration, opaque: Unmanaged.passUnretained(context).toOpaque()
        ) { _ in }
        guard let cluster = rd_kafka_mock_cluster_new(handle, Int32(brokers)) else {
            rd_kafka_destroy(handle)
            throw KafkaError(code: .embeddedBroker, reason: "librdkafka could not start a mock cluster")
        }
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
        brokerCount = brokers
        state = Mutex((NativeHandle(pointer: handle), NativeHandle(pointer: cluster)))
        logger.debug("embedded broker started", metadata: [LogKeys.bootstrap: "\(bootstrapServers)"])
    }

    deinit { shutdown() }

    /// Creates a topic with an explicit partition count.
    /// - Returns: `.alreadyExists` when a topic of that name exists (it is left unchanged).
    @discardableResult
    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws
        -> TopicCreationOutcome
    {
        guard partitions >= 1 else { throw KafkaError.invalidArgument("topic '\(name)' needs at least 1 partition") }
        let replicas = replicationFactor < 1 ? 1 : min(replicationFactor, Int32(brokerCount))
        return try withCluster { cluster in
            let err = rd_kafka_mock_topic_create(cluster, name, partitions, replicas)
            switch err {
            case RD_KAFKA_RESP_ERR_NO_ERROR: return .created
            case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS: return .alreadyExists
            default: throw KafkaError.withCode(.embeddedBroker, err, context: "could not create topic '\(name)'")
            }
        }
    }

    /// Creates a topic from a specification; configuration entries are ignored (the mock cluster has none).
    @discardableResult
    public func createTopic(_ specification: TopicSpecification) throws -> TopicCreationOutcome {
        try createTopic(
            specification.name, partitions: specification.partitions,
            replicationFactor: specification.replicationFactor)
    }

    /// Takes a broker down (-1: all): connections close and new ones are refused; leadership does not move.
    public func setBrokerDown(_ brokerID: Int32) throws {
        try check(withCluster { rd_kafka_mock_broker_set_down($0, brokerID) }, "set broker \(brokerID) down")
    }

    /// Brings a broker back up (-1: all).
    public func setBrokerUp(_ brokerID: Int32) throws {
        try check(withCluster { rd_kafka_mock_broker_set_up($0, brokerID) }, "set broker \(brokerID) up")
    }

    /// Adds a round-trip delay to every response of a broker (-1: all).
    public func setRoundTripTime(_ brokerID: Int32, milliseconds: Int32) throws {
        try check(
            withCluster { rd_kafka_mock_broker_set_rtt($0, brokerID, milliseconds) }, "set rtt of broker \(brokerID)")
    }

    /// Makes the next `errors.count` requests of a Kafka API (cluster-wide) fail with the given error codes.
    ///
    /// `apiKey` is the protocol ApiKey (0 Produce, 1 Fetch, 8 OffsetCommit, …); codes are Kafka protocol error
    /// codes, or librdkafka's negative ones such as -195 (`__TRANSPORT`, which disconnects).
    public func pushRequestErrors(apiKey: Int16, errors: [Int32]) throws {
        guard !errors.isEmpty else { return }
        try withCluster { cluster in
            var native = errors.map { rd_kafka_resp_err_t(rawValue: $0) }
            native.withUnsafeMutableBufferPointer { buffer in
                rd_kafka_mock_push_request_errors_array(cluster, apiKey, buffer.count, buffer.baseAddress)
            }
        }
    }

    /// Makes the next request of a Kafka API to one broker fail with `error` after `milliseconds`.
    public func pushRequestError(brokerID: Int32, apiKey: Int16, error: Int32, afterMilliseconds milliseconds: Int32)
        throws
    {
        try check(
            withCluster {
                sluice_mock_broker_push_request_error_rtt($0, brokerID, apiKey, rd_kafka_resp_err_t(rawValue: error), milliseconds)
            }, "push a request error to broker \(brokerID)")
    }

    /// Makes Metadata requests for `topic` fail with a Kafka error code (e.g. 3, UNKNOWN_TOPIC_OR_PART), so the
    /// topic looks absent or broken to clients; 0 clears it.
    ///
    /// The mock cluster auto-creates any topic a client asks about (its Metadata API predates the
    /// allow-auto-create flag); this is how tests reproduce a real cluster's missing topic.
    public func setTopicError(_ topic: String, error: Int32) throws {
        try withCluster { rd_kafka_mock_topic_set_error($0, topic, rd_kafka_resp_err_t(rawValue: error)) }
    }

    /// Sets a partition's leader (-1: no leader).
    public func setPartitionLeader(topic: String, partition: Int32, brokerID: Int32) throws {
        try check(
            withCluster { rd_kafka_mock_partition_set_leader($0, topic, partition, brokerID) },
            "set leader of \(topic) [\(partition)]")
    }

    /// Destroys the cluster, then its owning handle. Clients still connected see the brokers go away. Idempotent.
    public func shutdown() {
        state.withLock { state in
            guard let (handle, cluster) = state else { return }
            // The cluster must go before its owner: rd_kafka_destroy asserts otherwise.
            rd_kafka_mock_cluster_destroy(cluster.pointer)
            rd_kafka_destroy(handle.pointer)
            state = nil
        }
    }

    private func withCluster<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        try state.withLock { state in
            guard let (_, cluster) = state else { throw KafkaError.closed("the embedded broker") }
            return try body(cluster.pointer)
        }
    }

    private func check(_ err: rd_kafka_resp_err_t, _ what: String) throws {
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.withCode(.embeddedBroker, err, context: "could not \(what)") }
    }
}
