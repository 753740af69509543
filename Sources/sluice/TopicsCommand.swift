import ArgumentParser
import Foundation
import SluiceKafka
import SluicePipeline

struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics", abstract: "Create and list topics.", subcommands: [Apply.self, List.self, Catalogue.self])

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

    struct Catalogue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the topic catalogue (Markdown) from the declarations: partitions, config, who writes and reads, value schema.",
            discussion: "docs/topics.md is this output for topics/; a test fails when it is stale.")

        @Option(name: .long, help: ArgumentHelp("Directory of topic declarations.", valueName: "dir"))
        var dir: String = "topics"

        /// Who writes and who reads each topic (prefix match on the name).
        static let roles: [(prefix: String, key: String, writers: String, readers: String)] = [
            ("raw.", "the record id (or the connector's `key_field`)", "connectors (`sluice connect`), `sluice produce`, `sluice replay`, `sluice review accept`", "`sluice pipeline` (consumer group `sluice-curate`)"),
            ("sluice.shards", "the shard name", "`sluice pipeline`, after a shard is sealed and indexed", "`sluice retrain watch`, `sluice train --bootstrap`, the Python client, the gateway's dashboard"),
            ("sluice.rejected", "the record id", "`sluice pipeline`, after the checkpoint that audits the record", "`sluice replay --from-rejected`, audits"),
            ("sluice.dlq", "the original record key", "`sluice pipeline` and `sluice connect` (undecodable input, with the original bytes and `sluice.*` headers)", "`sluice replay --from-dlq`, `sluice lineage`"),
            ("sluice.train", "the request id", "`sluice retrain watch`", "`sluice retrain serve` (consumer group `sluice-trainer`)"),
            ("sluice.models", "`v<N>`", "`sluice retrain serve` (accepted candidates only)", "`sluice serve` (hot swap, canary, shadow), the perplexity filter of `sluice pipeline`"),
            ("sluice.control", "the request id", "`sluice delete --bootstrap`; `sluice control` appends the audit events", "`sluice control`"),
            ("sluice.datasets", "`<dataset>/v<N>`", "`sluice dataset snapshot --bootstrap`", "anyone pinning a dataset version"),
            ("sluice.alerts", "the source", "`sluice pipeline` (data-quality assessment)", "operators, alerting"),
            ("sluice.quarantine", "the record id", "`sluice pipeline` (records in the quarantine band) and `sluice review` (decisions)", "`sluice review`"),
        ]

        func run() throws {
            let declarations = try TopicCatalog.load(directory: URL(fileURLWithPath: dir))
            var text = """
                # Topic catalogue

                Generated by `sluice topics catalogue` from the declarations in `topics/` (a test checks that this file \
                matches them). `sluice topics apply` creates what is missing on a real cluster; `sluice broker --topics \
                topics` and `sluice demo` create them on the embedded broker. Values are JSON unless said otherwise; the \
                schemas are in `topics/schemas/`.

                | topic | partitions | config | what it carries |
                |---|---|---|---|

                """
            for topic in declarations {
                let config = topic.config.sorted { $0.key < $1.key }.map { "`\($0.key)=\($0.value)`" }.joined(separator: ", ")
                text += "| [`\(topic.name)`](#\(topic.name.replacingOccurrences(of: ".", with: ""))) | \(topic.partitions) | \(config) | \(topic.description) |\n"
            }
            for topic in declarations {
                text += "\n## \(topic.name)\n\n\(topic.description)\n\n"
                text += "- partitions: \(topic.partitions); replication: \(topic.replication < 1 ? "the cluster's default" : String(topic.replication))\n"
                if !topic.config.isEmpty {
                    text += "- config: " + topic.config.sorted { $0.key < $1.key }.map { "`\($0.key)=\($0.value)`" }.joined(separator: ", ") + "\n"
                }
                if let role = Self.roles.first(where: { topic.name.hasPrefix($0.prefix) }) {
                    text += "- key: \(role.key)\n- written by: \(role.writers)\n- read by: \(role.readers)\n"
                }
                text += "- declared in `\(URL(fileURLWithPath: topic.file).lastPathComponent)`\n"
                guard let schemaText = topic.valueSchema, let schema = try? JSONSerialization.jsonObject(with: Data(schemaText.utf8)) as? [String: Any] else {
                    text += "\nNo value schema: the value is the original record's bytes.\n"
                    continue
                }
                if let title = schema["title"] as? String { text += "\nValue: *\(title)*\n" }
                let required = Set(schema["required"] as? [String] ?? [])
                let properties = schema["properties"] as? [String: Any] ?? [:]
                guard !properties.isEmpty else { continue }
                text += "\n| field | type | required | notes |\n|---|---|---|---|\n"
                for (name, value) in properties.sorted(by: { $0.key < $1.key }) {
                    let field = value as? [String: Any] ?? [:]
                    var type = (field["type"] as? String) ?? (field["type"] as? [String])?.joined(separator: " or ") ?? ""
                    if let options = field["enum"] as? [Any] { type = "one of " + options.map { "`\($0)`" }.joined(separator: ", ") }
                    if let constant = field["const"] { type = "`\(constant)`" }
                    let notes = (field["description"] as? String ?? "").replacingOccurrences(of: "|", with: "\\|")
                    text += "| `\(name)` | \(type) | \(required.contains(name) ? "yes" : "") | \(notes) |\n"
                }
            }
            print(text, terminator: "")
        }
    }
}
