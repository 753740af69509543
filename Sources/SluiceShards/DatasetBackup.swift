public import Foundation
internal import GRDB

/// Consistent, incremental copies of a dataset directory (`sluice backup` and `sluice restore`).
///
/// The index is copied first with SQLite's online backup API, a consistent snapshot taken while the pipeline may
/// be writing. Then exactly the live shards that snapshot names are copied. Shards are immutable under their names
/// (compaction writes new names), so a shard already in the destination with the same size is not copied again.
/// Files the snapshot no longer names (shards retired by compaction) are removed from the destination. Each file is
/// written to a temporary name, fsynced and renamed, and the index last, so an interrupted copy leaves the previous
/// backup usable. A shard that disappears while being copied (compacted meanwhile) restarts the copy from a new
/// snapshot.
public enum DatasetBackup {
    public struct Summary: Sendable, Equatable {
        public var shards = 0
        public var copied = 0
        public var unchanged = 0
        public var bytesCopied = 0
        public var removed = 0
        public var indexBytes = 0

        public var json: String {
            "{\"shards\":\(shards),\"copied\":\(copied),\"unchanged\":\(unchanged),\"bytes_copied\":\(bytesCopied),\"removed\":\(removed),\"index_bytes\":\(indexBytes)}"
        }
    }

    /// Copies the dataset in `source` to `destination` (created when missing).
    public static func copy(from source: URL, to destination: URL) throws(ShardError) -> Summary {
        let index = source.appendingPathComponent("index.sqlite")
        guard FileManager.default.fileExists(atPath: index.path) else {
            throw ShardError.make(.io, "no dataset in \(source.path): index.sqlite is missing")
        }
        guard source.standardizedFileURL.path != destination.standardizedFileURL.path else {
            throw ShardError.make(.io, "the destination is the dataset itself")
        }
        do { try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true) } catch {
            throw ShardError.make(.io, "cannot create \(destination.path): \(error.localizedDescription)")
        }
        var attempt = 0
        while true {
            do {
                return try copyOnce(index: index, source: source, destination: destination)
            } catch let error as ShardVanished where attempt < 3 {
                attempt += 1
                _ = error
            } catch let error as ShardError {
                throw error
            } catch {
                throw ShardError.make(.io, "backup: \(error)")
            }
        }
    }

    private struct ShardVanished: Error { var name: String }

    private static func copyOnce(index: URL, source: URL, destination: URL) throws -> Summary {
        var summary = Summary()
        // 1. A consistent snapshot of the index, beside the destination's current one.
        let snapshot = destination.appendingPathComponent(".index.sqlite.backup")
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: snapshot.path + suffix) }
        let shards: [(path: String, bytes: Int)]
        do {
            let reader = try ShardIndex(path: index.path)
            let copy = try DatabaseQueue(path: snapshot.path)
            try reader.writer.backup(to: copy)
            // One file: the snapshot leaves WAL mode so it travels alone.
            try copy.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE") }
            shards = try copy.read { db in
                try Row.fetchAll(db, sql: "SELECT path, stored_bytes FROM shards WHERE status = 'sealed' ORDER BY name").map {
                    ($0["path"] as String, $0["stored_bytes"] as Int)
                }
            }
            try copy.close()
        }
        // 2. The shards it names, unless already there.
        for (path, bytes) in shards {
            summary.shards += 1
            let target = destination.appendingPathComponent(path)
            if let size = (try? FileManager.default.attributesOfItem(atPath: target.path))?[.size] as? Int, size == bytes {
                summary.unchanged += 1
                continue
            }
            let from = source.appendingPathComponent(path)
            guard FileManager.default.fileExists(atPath: from.path) else { throw ShardVanished(name: path) }
            try copyFile(from, to: target)
            summary.copied += 1
            summary.bytesCopied += bytes
        }
        // 3. The other files of a dataset directory: versions, the wids list, the offline audit.
        for name in ["wids.json", "rejected.jsonl"] where FileManager.default.fileExists(atPath: source.appendingPathComponent(name).path) {
            try copyFile(source.appendingPathComponent(name), to: destination.appendingPathComponent(name))
        }
        let versions = source.appendingPathComponent("versions")
        if let files = try? FileManager.default.contentsOfDirectory(atPath: versions.path) {
            let target = destination.appendingPathComponent("versions")
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            for file in files where file.hasSuffix(".json") && !FileManager.default.fileExists(atPath: target.appendingPathComponent(file).path) {
                try copyFile(versions.appendingPathComponent(file), to: target.appendingPathComponent(file))
            }
        }
        // 4. The index last (its old WAL files go first), then shards the snapshot no longer names.
        let indexTarget = destination.appendingPathComponent("index.sqlite")
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: indexTarget.path + suffix) }
        if FileManager.default.fileExists(atPath: indexTarget.path) { try FileManager.default.removeItem(at: indexTarget) }
        try FileManager.default.moveItem(at: snapshot, to: indexTarget)
        try syncDirectory(destination)
        summary.indexBytes = ((try? FileManager.default.attributesOfItem(atPath: indexTarget.path))?[.size] as? Int) ?? 0
        let named = Set(shards.map(\.path))
        for file in (try? FileManager.default.contentsOfDirectory(atPath: destination.path)) ?? []
        where (file.hasSuffix(".tar") || file.hasSuffix(".tar.zst")) && !named.contains(file) {
            try FileManager.default.removeItem(at: destination.appendingPathComponent(file))
            summary.removed += 1
        }
        return summary
    }

    /// Copies a file to a temporary name beside the target, fsyncs it and renames it into place.
    private static func copyFile(_ source: URL, to target: URL) throws {
        let temporary = target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).copy")
        try? FileManager.default.removeItem(at: temporary)
        try FileManager.default.copyItem(at: source, to: temporary)
        let handle = try FileHandle(forUpdating: temporary)
        try handle.synchronize()
        try handle.close()
        if FileManager.default.fileExists(atPath: target.path) { try FileManager.default.removeItem(at: target) }
        try FileManager.default.moveItem(at: temporary, to: target)
    }

    private static func syncDirectory(_ directory: URL) throws {
        let handle = try FileHandle(forReadingFrom: directory)
        try handle.synchronize()
        try handle.close()
    }
}
