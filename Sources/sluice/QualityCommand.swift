import ArgumentParser
import Foundation
import SluicePipeline
import SluiceShards

struct QualityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quality", abstract: "Data quality per source, and the shadow rule set's comparison.",
        subcommands: [Report.self])

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the data-quality assessment of a streaming pipeline's dataset as JSON.",
            discussion: """
                Per source: records, drop, PII, quarantine and late rates, mean lag between event time (ts) and \
                ingestion, completeness of each optional field (id, source, url, ts, meta) and the language mix; \
                envelope fields first seen (schema drift); the latest windows; and, when a shadow rule set is \
                configured (shadow: in the pipeline configuration), what it would drop that the active rules keep \
                and the reverse, by rule, source and language. The pipeline records these with each checkpoint, so \
                every record counts once; alerts on sudden changes go to sluice.alerts as they happen.
                """)
        @Option(help: ArgumentHelp("The dataset directory (holds index.sqlite).", valueName: "dir")) var output: String
        @Option(help: "How many recent windows to list.") var windows = 10

        func run() async throws {
            guard windows >= 0 else { throw ValidationError("--windows must be 0 or more") }
            let index = try ShardsCommand.openIndex(output)
            let report = try catching { try QualityReport.json(index, windows: windows) }
            if report.hasPrefix("{\"sources\":{}") {
                Terminal.err("no assessment recorded in \(output): sluice pipeline records it with each checkpoint (sluice curate does not)")
            }
            Terminal.out(report)
        }
    }
}
