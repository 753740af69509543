import ArgumentParser
import Foundation
import SluicePipeline
import SluiceShards

struct LineageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lineage", abstract: "Show where a sample came from, or where a raw record ended up.",
        discussion: """
            Prints one JSON object per match. A kept sample shows its shard (and SHA-256), its origin (topic, \
            partition and offset, or the input file and line for sluice curate output), id, source, url, the \
            pipeline version (binary version + configuration hash), the rule decisions and its stored metadata; a \
            deleted one also shows the deletion. A dropped record shows the stage and reason ("rejected"); an \
            undecodable one went to the dead-letter topic ("dlq"); an offset the pipeline has not reached is \
            "not_processed". Exits with 1 when nothing matches.

            Examples:
              sluice lineage --output var/curated 'raw~web+0+0000000042'
              sluice lineage --output var/curated --offset raw.web:0:42
              sluice lineage --output out --id doc-17
              sluice lineage --output out --line 1200
            """)

    @Option(help: ArgumentHelp("The dataset directory (holds index.sqlite).", valueName: "dir")) var output: String
    @Argument(help: "A sample key.") var key: String?
    @Option(help: "A record's original id.") var id: String?
    @Option(help: ArgumentHelp("A raw record's position.", valueName: "topic:partition:offset")) var offset: String?
    @Option(help: "A line (1-based) of a sluice curate input.") var line: Int?

    func validate() throws {
        guard [key != nil, id != nil, offset != nil, line != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of KEY, --id, --offset or --line")
        }
    }

    func run() async throws {
        let query: Lineage.Query
        if let key {
            query = .key(key)
        } else if let id {
            query = .id(id)
        } else if let line {
            guard line >= 1 else { throw ValidationError("--line counts from 1") }
            query = .line(line)
        } else {
            let text = offset ?? ""
            // Kafka topic names hold no colons.
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 3, !parts[0].isEmpty, let partition = Int(parts[1]), partition >= 0, let position = Int64(parts[2]),
                position >= 0
            else { throw ValidationError("--offset must be topic:partition:offset, e.g. raw.web:0:42 (got '\(text)')") }
            query = .offset(topic: String(parts[0]), partition: partition, offset: position)
        }
        let answers: [String]
        do { answers = try Lineage(directory: URL(fileURLWithPath: output)).trace(query) } catch { throw CommandError(error.reason) }
        guard !answers.isEmpty else {
            Terminal.err("nothing in \(output) matches \(query)")
            throw ExitCode(1)
        }
        for answer in answers { Terminal.out(answer) }
    }
}
