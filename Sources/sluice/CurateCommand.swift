import ArgumentParser
import Foundation
import SluicePipeline
import SluiceShards

struct CurateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "curate",
        abstract: "Curate a JSON Lines file into shards: decode, clean, desensitize, quality, dedup, write.",
        discussion: """
            Reads JSON Lines (plain or zstd-compressed, detected by content; - for standard input) as a stream, runs \
            the stage chain the streaming pipeline runs on all cores, and writes into --output: WebDataset shards \
            (<name>+<first line>.tar.zst), the SQLite index (index.sqlite), wids.json for Python loaders, and \
            rejected.jsonl with one line per dropped or undecodable record (id, line, stage, reason, scores; never \
            the text). Ends with a JSON summary on standard output. A directory that already holds a dataset is \
            refused unless --overwrite is given.
            """)

    @Option(name: .long, help: ArgumentHelp("The input: a .jsonl or .jsonl.zst file, or - for standard input.", valueName: "file"))
    var input: String

    @Option(name: .long, help: ArgumentHelp("The output directory.", valueName: "dir"))
    var output: String

    @Option(name: .long, help: ArgumentHelp("Stage and shard settings (YAML; see docs/curate.md).", valueName: "file"))
    var config: String?

    @Option(name: .long, help: "Worker threads for the stage chain (default: all cores).")
    var workers: Int?

    @Option(name: .long, help: "Dataset name, the prefix of shard names (default: the input file name without extensions).")
    var name: String?

    @Flag(name: .long, help: "Replace a dataset already in --output.")
    var overwrite = false

    @Flag(name: .long, help: "No progress line on standard error.")
    var quiet = false

    func run() async throws {
        var settings = CurateConfiguration()
        if let config {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                throw CommandError("cannot read config file \(config)")
            }
            do {
                settings = try CurateConfiguration.load(yaml: text, file: config, environment: ProcessInfo.processInfo.environment)
            } catch { throw CommandError("\(error)") }
        }
        if let workers {
            guard workers >= 1 && workers <= 256 else { throw CommandError("--workers must be 1…256") }
            settings.workers = workers
        }
        let datasetName = name ?? Self.datasetName(for: input)
        guard !datasetName.isEmpty, !datasetName.contains("/"), !datasetName.contains(".") else {
            throw CommandError("--name must be non-empty without dots or slashes")
        }
        let source: LineSource
        do { source = try LineSource(path: input) } catch { throw CommandError(error.reason) }
        let curator = Curator(configuration: settings, output: URL(fileURLWithPath: output))
        let showProgress = !quiet && isatty(2) == 1
        let started = Date()
        let report: Curator.Progress = { lines, bytes in
            let seconds = max(0.001, Date().timeIntervalSince(started))
            let line = String(format: "\r%d lines, %.1f MB read, %.1f MB/s   ", lines, Double(bytes) / 1e6, Double(bytes) / seconds / 1e6)
            Terminal.write(2, line)
        }
        let progress: Curator.Progress? = showProgress ? report : nil
        do {
            let summary = try curator.run(input: source, datasetName: datasetName, overwrite: overwrite, progress: progress)
            if showProgress { Terminal.write(2, "\n") }
            Terminal.out(summary.json)
        } catch let error as ShardError {
            if showProgress { Terminal.write(2, "\n") }
            throw CommandError("\(error.reason)")
        }
    }

    static func datasetName(for input: String) -> String {
        guard input != "-" else { return "stdin" }
        var name = URL(fileURLWithPath: input).lastPathComponent
        while let dot = name.firstIndex(of: ".") { name = String(name[..<dot]) }
        return name.replacingOccurrences(of: "+", with: "-")
    }
}
