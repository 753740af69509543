internal import CRdKafka

/// Reads broker metadata (blocking; call off the cooperative pool).
enum Metadata {
    static func topics(handle: OpaquePointer, timeout: Int32) throws -> [TopicDescription] {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 1, nil, &metadata, timeout)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError.fromLibrdkafka(err, context: "could not read cluster metadata")
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        var result: [TopicDescription] = []
        for topicIndex in 0..<Int(metadata.pointee.topic_cnt) {
            let topic = metadata.pointee.topics[topicIndex]
            var partitions: [PartitionDescription] = []
            for partitionIndex in 0..<Int(topic.partition_cnt) {
                let partition = topic.partitions[partitionIndex]
                partitions.append(
                    PartitionDescription(
                        id: partition.id, leader: partition.leader,
                        replicas: (0..<Int(partition.replica_cnt)).map { partition.replicas[$0] },
                        inSyncReplicas: (0..<Int(partition.isr_cnt)).map { partition.isrs[$0] }))
            }
            result.append(
                TopicDescription(
                    name: String(cString: topic.topic), partitions: partitions.sorted { $0.id < $1.id },
                    errorCode: topic.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : Int32(topic.err.rawValue)))
        }
        return result.sorted { $0.name < $1.name }
    }

    static func partitions(handle: OpaquePointer, topic: String, timeout: Int32) throws -> [Int32] {
        guard let description = try topics(handle: handle, timeout: timeout).first(where: { $0.name == topic }),
            description.errorCode == nil, !description.partitions.isEmpty
        else {
            throw KafkaError.fromLibrdkafka(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, context: "topic '\(topic)' does not exist")
        }
        return description.partitions.map(\.id)
    }

    /// Requests one topic's metadata through a topic handle, so that the client knows its leaders before the first
    /// record is produced (otherwise librdkafka may wait for its 1 s topic scan). Returns the partitions.
    static func prepare(handle: OpaquePointer, topic: String, timeout: Int32) throws -> [Int32] {
        guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else {
            throw KafkaError.fromLibrdkafka(rd_kafka_last_error(), context: "could not create a handle for topic '\(topic)'")
        }
        defer { rd_kafka_topic_destroy(topicHandle) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 0, topicHandle, &metadata, timeout)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError.fromLibrdkafka(err, context: "could not read the metadata of topic '\(topic)'")
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt == 1, metadata.pointee.topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR,
            metadata.pointee.topics[0].partition_cnt > 0
        else {
            throw KafkaError.fromLibrdkafka(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, context: "topic '\(topic)' does not exist")
        }
        let entry = metadata.pointee.topics[0]
        return (0..<Int(entry.partition_cnt)).map { entry.partitions[$0].id }.sorted()
    }
}
