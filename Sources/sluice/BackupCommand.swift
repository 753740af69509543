import ArgumentParser
import Foundation
import SluiceShards

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "Copy a dataset directory consistently and incrementally.",
        discussion: """
            Takes a consistent snapshot of index.sqlite with SQLite's online backup (safe while the pipeline \
            writes), then copies the live shards that snapshot names; shards already in DEST with the same size \
            are not copied again (shard names are immutable), and shards retired by compaction since the last \
            backup are removed from DEST. Versions, wids.json and rejected.jsonl come along. Every file is written \
            under a temporary name, fsynced and renamed, the index last, so an interrupted backup leaves the \
            previous one usable. Prints a JSON summary. Check a copy with `sluice shards verify DEST`.
            """)
    @Argument(help: ArgumentHelp("The dataset directory.", valueName: "dir")) var directory: String
    @Argument(help: ArgumentHelp("Where the copy goes (created when missing).", valueName: "dest")) var destination: String

    func run() async throws {
        let summary = try catching { try DatasetBackup.copy(from: URL(fileURLWithPath: directory), to: URL(fileURLWithPath: destination)) }
        Terminal.out(summary.json)
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Restore a dataset directory from a backup.",
        discussion: """
            Copies a backup made by `sluice backup` into DIR the same way (index snapshot first, then the shards it \
            names). DIR must not hold a dataset unless --overwrite is given. Check the result with \
            `sluice shards verify DIR`.
            """)
    @Argument(help: ArgumentHelp("The backup directory.", valueName: "backup")) var backup: String
    @Argument(help: ArgumentHelp("The dataset directory to restore into.", valueName: "dir")) var directory: String
    @Flag(help: "Replace a dataset already in DIR.") var overwrite = false

    func run() async throws {
        if !overwrite, FileManager.default.fileExists(atPath: URL(fileURLWithPath: directory).appendingPathComponent("index.sqlite").path) {
            throw CommandError("\(directory) already holds a dataset; give --overwrite to replace it")
        }
        let summary = try catching { try DatasetBackup.copy(from: URL(fileURLWithPath: backup), to: URL(fileURLWithPath: directory)) }
        Terminal.out(summary.json)
    }
}
