/// A topic as broker metadata describes it.
public struct TopicDescription: Sendable, Equatable {
    public var name: String
    public var partitions: [PartitionDescription]
    /// librdkafka's error code when the broker reported a problem with this topic.
    public var errorCode: Int32?
}

/// One partition's leader and replicas.
public struct PartitionDescription: Sendable, Equatable {
    public var id: Int32
    /// The leader broker id; -1 when there is none.
    public var leader: Int32
    public var replicas: [Int32]
    public var inSyncReplicas: [Int32]
}

/// A topic to create.
public struct TopicSpecification: Sendable, Equatable {
    public var name: String
    /// Number of partitions; at least 1.
    public var partitions: Int32
    /// Number of replicas; -1 uses the broker's default.
    public var replicationFactor: Int32
    /// Topic-level configuration, e.g. `cleanup.policy: compact`.
    public var config: [String: String]

    public init(name: String, partitions: Int32, replicationFactor: Int32 = -1, config: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.config = config
    }
}

/// What creating a topic did.
public enum TopicCreationOutcome: Sendable, Equatable {
    /// The topic was created.
    case created
    /// The topic already existed and was left as it is.
    case alreadyExists
}
