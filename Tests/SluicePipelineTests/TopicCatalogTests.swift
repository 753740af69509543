import SluiceConfig
import Foundation
import SluiceKafka
import SluicePipeline
import Testing

@Suite("TopicCatalog")
struct TopicCatalogTests {
    let repositoryTopics = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("topics")

    @Test func theRepositoryDeclaresTheDesignsTopics() throws {
        let topics = try TopicCatalog.load(directory: repositoryTopics)
        let byName = Dictionary(uniqueKeysWithValues: topics.map { ($0.name, $0) })
        for name in ["sluice.dlq", "sluice.rejected", "sluice.shards", "sluice.train", "sluice.models", "sluice.control", "sluice.datasets", "sluice.alerts", "sluice.quarantine", "raw.web", "raw.forum", "raw.docs"] {
            let topic = try #require(byName[name], "\(name) is declared")
            #expect(topic.valueSchema != nil, "\(name) has a value schema")
        }
        #expect(byName["sluice.shards"]?.partitions == 1)
        #expect(byName["sluice.models"]?.partitions == 1)
        #expect(byName["sluice.models"]?.config["cleanup.policy"] == "compact")
        #expect(byName["sluice.datasets"]?.config["cleanup.policy"] == "compact")
        #expect(byName["raw.web"]!.partitions > 1)
    }

    @Test(arguments: [
        ("partitions: 3\n", "name"),
        ("name: t\n", "partitions"),
        ("name: t\npartitions: 0\n", "partitions"),
        ("name: 'bad name'\npartitions: 1\n", "name"),
        ("name: t\npartitions: 1\nreplica: 1\n", "replica"),
        ("name: t\npartitions: 1\nschema: missing.json\n", "schema"),
        ("name: t\npartitions: 1\nconfig: [1]\n", "config"),
        ("- just a list\n", ""),
    ])
    func invalidDeclarationsNameTheFileAndKey(_ yaml: String, _ path: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("topics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data(yaml.utf8).write(to: directory.appendingPathComponent("t.yaml"))
        let error = #expect(throws: ConfigError.self) { _ = try TopicCatalog.load(directory: directory) }
        #expect(error?.path == path)
        #expect(error?.file.hasSuffix("t.yaml") == true)
    }

    @Test func declarationsCreateTopicsOnTheEmbeddedBroker() throws {
        let broker = try EmbeddedBroker()
        defer { broker.shutdown() }
        let topics = try TopicCatalog.load(directory: repositoryTopics)
        let first = try TopicProvisioner.apply(topics, broker: broker)
        #expect(first.allSatisfy { $0.result == .created })
        let second = try TopicProvisioner.apply(topics, broker: broker)
        #expect(second.allSatisfy { $0.result == .alreadyExists })
    }
}
