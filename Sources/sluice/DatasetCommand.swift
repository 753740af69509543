import ArgumentParser
import Foundation
import SluiceKafka
import SluicePipeline
import SluiceShards

struct DatasetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset", abstract: "Dataset versions: immutable manifests of a curated directory.",
        discussion: """
            A version lists the live shards with their SHA-256s, the deletion set, the pipeline versions (rule sets) \
            that made the samples, and sample and token counts per source and language. Versions are numbered from \
            1, kept in the index and in versions/v<N>.json. `sluice train --dataset-version N` trains on a version.
            """,
        subcommands: [Snapshot.self, List.self, Show.self, Diff.self])

    struct Snapshot: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record the dataset as it is now as a new version (unless nothing changed); print its manifest.",
            discussion: """
                With --bootstrap the manifest is also published on the datasets topic (default sluice.datasets, \
                meant to be compacted), keyed <dataset>/v<N>.
                """)
        @Option(help: ArgumentHelp("The dataset directory (holds index.sqlite).", valueName: "dir")) var output: String
        @Option(help: "The datasets topic (with --bootstrap).") var topic = "sluice.datasets"
        @OptionGroup var kafka: KafkaOptions

        func run() async throws {
            let index = try ShardsCommand.openIndex(output)
            let quality = try catching { try QualityReport.summary(index) }
            let (manifest, created) = try catching {
                try index.snapshot(directory: URL(fileURLWithPath: output), quality: quality.isEmpty ? nil : quality)
            }
            if created, kafka.bootstrap != nil || ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"] != nil {
                let logger = try kafka.bootstrapLogging()
                let producer = try KafkaProducer(configuration: try kafka.kafkaConfiguration(), logger: logger)
                _ = try await producer.send(ProducerMessage(
                    topic: topic, key: Array("\(manifest.dataset)/v\(manifest.version)".utf8), value: Array(manifest.json.utf8)))
                await producer.shutdown(flushTimeout: .seconds(5))
            }
            if !created { Terminal.err("nothing changed since version \(manifest.version)") }
            Terminal.out(manifest.json)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List versions: number, time, shards, samples, tokens, deleted.")
        @Option(help: ArgumentHelp("The dataset directory.", valueName: "dir")) var output: String
        func run() async throws {
            let versions = try catching { try ShardsCommand.openIndex(output).versions() }
            if versions.isEmpty { Terminal.err("no versions yet: sluice dataset snapshot --output \(output)") }
            for v in versions {
                Terminal.out("v\(v.version)\t\(v.createdAt)\t\(v.shards.count) shards\t\(v.samples) samples\t\(v.tokens) tokens\t\(v.deleted.count) deleted")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one version's manifest.")
        @Option(help: ArgumentHelp("The dataset directory.", valueName: "dir")) var output: String
        @Argument(help: "The version number.") var version: Int
        func run() async throws {
            let versions = try catching { try ShardsCommand.openIndex(output).versions() }
            guard let manifest = versions.first(where: { $0.version == version }) else {
                throw CommandError("no version \(version) in \(output) (versions: \(versions.map { "\($0.version)" }.joined(separator: ", ")))")
            }
            Terminal.out(manifest.json)
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What changed between two versions, as JSON.")
        @Option(help: ArgumentHelp("The dataset directory.", valueName: "dir")) var output: String
        @Argument(help: "The earlier version.") var from: Int
        @Argument(help: "The later version.") var to: Int
        func run() async throws {
            let versions = try catching { try ShardsCommand.openIndex(output).versions() }
            guard let a = versions.first(where: { $0.version == from }), let b = versions.first(where: { $0.version == to }) else {
                throw CommandError("no version \(versions.contains { $0.version == from } ? to : from) in \(output)")
            }
            Terminal.out(a.diff(to: b))
        }
    }
}
