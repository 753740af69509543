import ArgumentParser
import Foundation
import SluicePipeline
import SluiceShards
import SluiceText

struct ShardsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shards", abstract: "Inspect and check a dataset directory written by sluice curate or the pipeline.",
        subcommands: [List.self, Stats.self, Verify.self, Cat.self, ExportWIDS.self, Compact.self])

    struct Directory: ParsableArguments {
        @Argument(help: ArgumentHelp("The dataset directory (holds index.sqlite).", valueName: "dir"))
        var directory: String

        func index() throws -> ShardIndex { try ShardsCommand.openIndex(directory) }
    }

    /// Compacts, then rewrites `wids.json` (when the directory has one) so it names the live shards.
    static func compact(_ index: ShardIndex, directory: URL) throws(ShardError) -> [CompactionResult] {
        let results = try index.compact(directory: directory)
        let wids = directory.appendingPathComponent("wids.json")
        if !results.isEmpty, FileManager.default.fileExists(atPath: wids.path) { try WIDSExport.write(index: index, to: wids) }
        return results
    }

    /// The index of a dataset directory; a clear error when there is none.
    static func openIndex(_ directory: String) throws -> ShardIndex {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("index.sqlite").path
        guard FileManager.default.fileExists(atPath: path) else { throw CommandError("no dataset in \(directory): index.sqlite is missing") }
        do { return try ShardIndex(path: path) } catch { throw CommandError(error.reason) }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List shards: name, samples, bytes, SHA-256.")
        @OptionGroup var dataset: Directory
        func run() async throws {
            for shard in try catching({ try dataset.index().shards() }) {
                Terminal.out("\(shard.fileName)\t\(shard.samples) samples\t\(shard.rawBytes) B raw\t\(shard.storedBytes) B stored\t\(shard.sha256)")
            }
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Totals of a dataset as JSON.")
        @OptionGroup var dataset: Directory
        func run() async throws {
            let shards = try catching({ try dataset.index().shards() })
            let samples = shards.reduce(0) { $0 + $1.samples }
            let raw = shards.reduce(0) { $0 + $1.rawBytes }
            let stored = shards.reduce(0) { $0 + $1.storedBytes }
            Terminal.out("{\"shards\":\(shards.count),\"samples\":\(samples),\"raw_bytes\":\(raw),\"stored_bytes\":\(stored)}")
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-read every shard; check SHA-256, structure and the index. Exits 1 on any mismatch.")
        @OptionGroup var dataset: Directory
        func run() async throws {
            _ = try dataset.index()
            let (problems, notes) = try catching({ try ShardVerifier.verify(directory: URL(fileURLWithPath: dataset.directory)) })
            for note in notes { Terminal.err("note: \(note)") }
            for problem in problems { Terminal.err("error: \(problem)") }
            guard problems.isEmpty else { throw ExitCode(1) }
            Terminal.out("ok")
        }
    }

    struct Cat: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one sample's text (or its JSON with --json) by key.")
        @OptionGroup var dataset: Directory
        @Argument(help: "The sample key.") var key: String
        @Flag(name: .long, help: "Print the sample's metadata JSON instead of its text.") var json = false
        func run() async throws {
            let index = try dataset.index()
            guard let (shard, location) = try catching({ try index.location(ofKey: key) }) else {
                throw CommandError("no sample \(key) in \(dataset.directory)")
            }
            if let deleted = location.deletedAt { throw CommandError("sample \(key) was deleted at \(deleted) (sluice lineage shows the request)") }
            let url = URL(fileURLWithPath: dataset.directory).appendingPathComponent(shard.fileName)
            let sample = try catching({ try ShardReader.sample(at: location, in: url, format: shard.format) })
            let bytes = json ? sample.json : sample.text
            bytes.withUnsafeBufferPointer { Terminal.writeAll(1, $0) }
            Terminal.out("")
        }
    }

    struct Compact: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rewrite shards that hold deleted samples without them.",
            discussion: """
                Each affected shard's live samples are copied byte for byte, in order, to a new shard named \
                <name>-c<generation>; in one index transaction the new shard is recorded, the samples point to it and \
                the old shard is retired; then the old file is removed. Deleted samples keep their index rows, so \
                sluice lineage still reports them. Safe to interrupt and run again. Prints one JSON line per shard.
                """)
        @OptionGroup var dataset: Directory
        func run() async throws {
            let index = try dataset.index()
            let results = try catching({ try ShardsCommand.compact(index, directory: URL(fileURLWithPath: dataset.directory)) })
            for result in results {
                Terminal.out(
                    "{\"retired\":\(JSONText.string(result.retired)),\"replacement\":\(result.replacement.map(JSONText.string) ?? "null"),"
                        + "\"sha256\":\(result.replacementSHA256.map(JSONText.string) ?? "null"),\"kept\":\(result.kept),\"removed\":\(result.removed)}")
            }
            if results.isEmpty { Terminal.err("no shard holds deleted samples") }
        }
    }

    struct ExportWIDS: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export-wids", abstract: "Write wids.json (shard list and sample counts) for Python WebDataset loaders.")
        @OptionGroup var dataset: Directory
        func run() async throws {
            let url = URL(fileURLWithPath: dataset.directory).appendingPathComponent("wids.json")
            try catching({ try WIDSExport.write(index: dataset.index(), to: url) })
            Terminal.out(url.path)
        }
    }
}

/// Runs `body`, turning a ShardError into a plain command error with its reason.
func catching<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as ShardError { throw CommandError(error.reason) }
}
