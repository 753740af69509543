import ArgumentParser
import Foundation
import SluiceKafka
import SluicePipeline

struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics", abstract: "Create and list topics.", subcommands: [Apply.self, List.self])

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the topics declared in a directory that do not exist yet; report the others.",
            discussion: """
                Each YAML file declares name, partitions, replication, config and the JSON Schema of values.
                Against the embedded broker, which has no admin API, this fails with advice: create topics when
                the broker starts (`sluice broker --topics DIR`).
                """)

        @Option(name: .long, help: ArgumentHelp("Directory of topic declarations.", valueName: "dir"))
        var dir: String = "topics"

        @Option(name: .long, help: "How long to wait for the cluster, in seconds.")
        var timeout: Int = 30

        @Flag(name: .long, help: "Only validate the declarations; contact no broker.")
        var check = false

        @OptionGroup var kafka: KafkaOptions

        func run() async throws {
            let declarations = try TopicCatalog.load(directory: URL(fileURLWithPath: dir))
            if check {
                for declaration in declarations {
                    Terminal.out("\(declaration.name)\t\(declaration.partitions) partitions\tvalid (\(declaration.file))")
                }
                return
            }
            let logger = try kafka.bootstrapLogging()
            let admin = try KafkaAdmin(configuration: try kafka.kafkaConfiguration(), logger: logger)
            defer { admin.close() }
            let outcomes = try await TopicProvisioner.apply(declarations, admin: admin, timeout: .seconds(timeout))
            for outcome in outcomes {
                let verb = outcome.result == .created ? "created" : "exists"
                Terminal.out("\(verb)\t\(outcome.name)\t\(outcome.partitions) partitions")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the cluster's topics and their partitions.")

        @OptionGroup var kafka: KafkaOptions

        func run() async throws {
            let logger = try kafka.bootstrapLogging()
            let admin = try KafkaAdmin(configuration: try kafka.kafkaConfiguration(), logger: logger)
            defer { admin.close() }
            for topic in try await admin.listTopics() {
                let leaders = Set(topic.partitions.map(\.leader)).sorted().map(String.init).joined(separator: ",")
                Terminal.out("\(topic.name)\t\(topic.partitions.count) partitions\tleaders \(leaders)")
            }
        }
    }
}
