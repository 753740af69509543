public import SluiceKafka

/// Creates declared topics that are missing, on a real cluster or on the embedded broker.
public enum TopicProvisioner {
    /// The outcome for one declared topic.
    public struct Outcome: Sendable, Equatable {
        public var name: String
        public var partitions: Int32
        public var result: TopicCreationOutcome
    }

    /// Creates missing topics through the admin API; existing ones are reported and left unchanged.
    /// - Throws: ``KafkaError`` (`.adminUnsupported` against the embedded broker, with what to do instead).
    public static func apply(_ declarations: [TopicDeclaration], admin: KafkaAdmin, timeout: Duration = .seconds(30))
        async throws -> [Outcome]
    {
        let results = try await admin.createTopics(declarations.map(\.specification), timeout: timeout)
        return declarations.map { declaration in
            Outcome(name: declaration.name, partitions: declaration.partitions, result: results[declaration.name] ?? .alreadyExists)
        }
    }

    /// Creates missing topics directly in an embedded broker (it has no admin API).
    public static func apply(_ declarations: [TopicDeclaration], broker: EmbeddedBroker) throws -> [Outcome] {
        try declarations.map { declaration in
            Outcome(
                name: declaration.name, partitions: declaration.partitions,
                result: try broker.createTopic(declaration.specification))
        }
    }
}
