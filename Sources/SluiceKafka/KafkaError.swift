internal import CRdKafka

/// The one error type of `SluiceKafka`.
///
/// Carries a matchable ``code``, a reason that says what to do, and where it came from librdkafka's numeric
/// code and text. The description never contains record keys, values or credentials.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is; match it in `catch` with `error.code == .queueFull`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Kind: String, Sendable {
            case invalidConfiguration, clientCreation, queueFull, messageDelivery, unknownTopic, commit,
                dataLostToRetention, brokerUnavailable, timedOut, admin, adminUnsupported, closed, consumer,
                fatal, embeddedBroker, invalidArgument
        }
        fileprivate let kind: Kind
        /// A librdkafka property was unknown or had an invalid value.
        public static let invalidConfiguration = Code(kind: .invalidConfiguration)
        /// librdkafka refused to create a client.
        public static let clientCreation = Code(kind: .clientCreation)
        /// The local producer queue is full; retry after delivery reports free space.
        public static let queueFull = Code(kind: .queueFull)
        /// A message could not be delivered.
        public static let messageDelivery = Code(kind: .messageDelivery)
        /// The topic or partition does not exist.
        public static let unknownTopic = Code(kind: .unknownTopic)
        /// An offset commit failed.
        public static let commit = Code(kind: .commit)
        /// Records between the committed offset and the log start were deleted before being consumed.
        public static let dataLostToRetention = Code(kind: .dataLostToRetention)
        /// No broker could be reached.
        public static let brokerUnavailable = Code(kind: .brokerUnavailable)
        /// An operation did not finish in time.
        public static let timedOut = Code(kind: .timedOut)
        /// An admin request failed.
        public static let admin = Code(kind: .admin)
        /// The broker does not implement the admin API that was asked for.
        public static let adminUnsupported = Code(kind: .adminUnsupported)
        /// The client was already closed.
        public static let closed = Code(kind: .closed)
        /// A consumer-side error reported by librdkafka.
        public static let consumer = Code(kind: .consumer)
        /// librdkafka raised a fatal error; the client cannot continue.
        public static let fatal = Code(kind: .fatal)
        /// The embedded broker could not be started or controlled.
        public static let embeddedBroker = Code(kind: .embeddedBroker)
        /// An argument was out of range.
        public static let invalidArgument = Code(kind: .invalidArgument)

        public var description: String { kind.rawValue }
    }

    /// What kind of failure this is.
    public let code: Code
    /// What happened and what the user can do about it.
    public let reason: String
    /// librdkafka's `rd_kafka_resp_err_t` value, when the failure came from librdkafka.
    public let nativeCode: Int32?
    /// Whether retrying the same operation later can succeed.
    public let isRetriable: Bool
    /// Where the error was raised.
    public let file: String
    /// Where the error was raised.
    public let line: UInt

    init(
        code: Code, reason: String, nativeCode: Int32? = nil, isRetriable: Bool = false,
        file: String = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.reason = reason
        self.nativeCode = nativeCode
        self.isRetriable = isRetriable
        self.file = file
        self.line = line
    }

    public var description: String {
        var text = "KafkaError.\(code): \(reason)"
        if let nativeCode { text += " (librdkafka code \(nativeCode): \(Self.name(of: nativeCode)))" }
        return text
    }

    /// librdkafka's symbolic name of a response code, e.g. `UNKNOWN_TOPIC_OR_PART`.
    static func name(of nativeCode: Int32) -> String {
        String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(nativeCode)))
    }
}

extension KafkaError {
    static func invalidConfiguration(_ reason: String, file: String = #fileID, line: UInt = #line) -> KafkaError {
        KafkaError(code: .invalidConfiguration, reason: reason, file: file, line: line)
    }

    static func closed(_ what: String, file: String = #fileID, line: UInt = #line) -> KafkaError {
        KafkaError(code: .closed, reason: "\(what) was already closed; create a new client", file: file, line: line)
    }

    static func invalidArgument(_ reason: String, file: String = #fileID, line: UInt = #line) -> KafkaError {
        KafkaError(code: .invalidArgument, reason: reason, file: file, line: line)
    }

    static func dataLost(
        topic: String, partition: Int32, detail: String, file: String = #fileID, line: UInt = #line
    ) -> KafkaError {
        KafkaError(
            code: .dataLostToRetention,
            reason: """
                records of \(topic) [\(partition)] were deleted by retention before this group consumed them: \
                \(detail). Sluice does not skip silently; reprocess from the source or reset the group's offsets \
                explicitly after deciding the loss is acceptable
                """,
            nativeCode: Int32(RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE.rawValue), file: file, line: line)
    }

    /// Maps a librdkafka response code to a typed error with advice.
    static func fromLibrdkafka(
        _ err: rd_kafka_resp_err_t, context: String, detail: String? = nil, file: String = #fileID,
        line: UInt = #line
    ) -> KafkaError {
        let text = detail ?? String(cString: rd_kafka_err2str(err))
        let code: Code
        var advice = ""
        var retriable = false
        switch err {
        case RD_KAFKA_RESP_ERR__QUEUE_FULL:
            code = .queueFull
            retriable = true
            advice = "; the producer queue is full, wait for deliveries or raise queue.buffering.max.messages"
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
            code = .unknownTopic
            advice = "; create the topic first (sluice topics apply, or sluice broker --topics DIR for the embedded broker)"
        case RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__RESOLVE:
            code = .brokerUnavailable
            retriable = true
            advice = "; check bootstrap.servers and that the brokers are running"
        case RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
            code = .timedOut
            retriable = true
            advice = "; the broker did not answer in time (message.timeout.ms / socket.timeout.ms)"
        case RD_KAFKA_RESP_ERR__FATAL:
            code = .fatal
        case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
            code = .dataLostToRetention
        default:
            code = .messageDelivery
            retriable = rd_kafka_resp_err_t_isRetriable(err)
        }
        return KafkaError(
            code: code, reason: "\(context): \(text)\(advice)", nativeCode: Int32(err.rawValue),
            isRetriable: retriable, file: file, line: line)
    }

    static func withCode(_ code: Code, _ err: rd_kafka_resp_err_t, context: String, file: String = #fileID,
                         line: UInt = #line) -> KafkaError {
        KafkaError(
            code: code, reason: "\(context): \(String(cString: rd_kafka_err2str(err)))",
            nativeCode: Int32(err.rawValue), isRetriable: rd_kafka_resp_err_t_isRetriable(err), file: file,
            line: line)
    }
}

/// Errors librdkafka retries by itself or that clear up when the cluster recovers.
private func rd_kafka_resp_err_t_isRetriable(_ err: rd_kafka_resp_err_t) -> Bool {
    switch err {
    case RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return true
    default:
        return false
    }
}
