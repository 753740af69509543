internal import CRdKafka
internal import Foundation
internal import Logging

/// Creates `rd_kafka_t` handles and owns the C callbacks every client shares (logging, errors).
enum RDKafkaHandle {
    enum Kind {
        case producer, consumer

        var native: rd_kafka_type_t { self == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER }
    }

    /// Creates a handle from a validated configuration.
    ///
    /// - Parameters:
    ///   - opaque: the client context passed to every callback. The caller keeps it alive until the handle is
    ///     destroyed.
    ///   - configure: sets kind-specific callbacks on the native configuration before creation.
    /// - Throws: ``KafkaError`` `.invalidConfiguration` or `.clientCreation` with librdkafka's message.
    static func make(
        kind: Kind, configuration: KafkaConfiguration, opaque: UnsafeMutableRawPointer,
        configure: (OpaquePointer) -> Void
    ) throws -> OpaquePointer {
        let conf = try configuration.makeNative()
        rd_kafka_conf_set_opaque(conf, opaque)
        rd_kafka_conf_set_log_cb(conf, logCallback)
        configure(conf)
        var errorBuffer = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(kind.native, conf, &errorBuffer, errorBuffer.count) else {
            // rd_kafka_new frees the configuration only on success.
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: .clientCreation, reason: "could not create client: \(decodeCString(errorBuffer))")
        }
        return handle
    }
}


/// The C log callback: routes librdkafka's log lines to the client's logger instead of stderr.
///
/// The opaque is an unretained `ClientContext`; the client destroys the handle before releasing it.
private let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
    handle, level, facility, message in
    guard let handle, let opaque = rd_kafka_opaque(handle) else { return }
    let context = Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
    let text = message.map { String(cString: $0) } ?? ""
    let facilityText = facility.map { String(cString: $0) } ?? ""
    // syslog levels: 0-3 errors, 4 warning, 5-6 notice/info, 7 debug. Broker-down noise is info: the client
    // retries on its own and operators see outcomes (delivery errors, lag) elsewhere.
    let logLevel: Logger.Level
    switch level {
    case ...4: logLevel = .info
    case 5, 6: logLevel = .debug
    default: logLevel = .trace
    }
    context.logger.log(
        level: logLevel, "\(text)", metadata: [LogKeys.librdkafkaFacility: .string(facilityText)])
}

/// State every client shares with its C callbacks. Subclassed by the producer and consumer contexts.
///
/// `@unchecked Sendable`: the logger is immutable; subclasses guard mutable state with locks.
class ClientContext: @unchecked Sendable {
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }
}

/// A `rd_kafka_topic_partition_list_t` built from Swift values; destroyed by the caller.
enum TopicPartitionList {
    static func make(_ items: [TopicPartitionOffset]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        let list = rd_kafka_topic_partition_list_new(Int32(items.count))!
        for item in items {
            let element = rd_kafka_topic_partition_list_add(list, item.topic, item.partition)!
            element.pointee.offset = item.offset
        }
        return list
    }

    static func make(_ items: [TopicPartition]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        make(items.map { TopicPartitionOffset(topic: $0.topic, partition: $0.partition, offset: sluice_offset_invalid()) })
    }

    static func read(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [(TopicPartitionOffset, rd_kafka_resp_err_t)] {
        var result: [(TopicPartitionOffset, rd_kafka_resp_err_t)] = []
        result.reserveCapacity(Int(list.pointee.cnt))
        for index in 0..<Int(list.pointee.cnt) {
            let element = list.pointee.elems[index]
            result.append(
                (TopicPartitionOffset(topic: String(cString: element.topic), partition: element.partition,
                                      offset: element.offset), element.err))
        }
        return result
    }
}

/// Runs blocking librdkafka calls (metadata, commits, admin requests) off the cooperative thread pool.
enum BlockingExecutor {
    private static let queue = DispatchQueue(label: "sluice.kafka.blocking", attributes: .concurrent)

    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }
}

/// Metadata keys this module logs with.
enum LogKeys {
    static let topic = "kafka.topic"
    static let partition = "kafka.partition"
    static let offset = "kafka.offset"
    static let groupID = "kafka.group.id"
    static let errorCode = "error.code"
    static let librdkafkaFacility = "kafka.facility"
    static let bootstrap = "kafka.bootstrap"
}

/// A librdkafka handle that may cross threads.
///
/// `@unchecked Sendable`: librdkafka's `rd_kafka_t` and mock-cluster handles are thread-safe; the owners
/// guard their destruction with a lock.
struct NativeHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// A topic-partition list handed to the blocking queue, which destroys it.
///
/// `@unchecked Sendable`: ownership moves to the receiving closure; nothing else touches the list afterwards.
struct NativeList: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>
}
