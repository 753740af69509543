internal import Foundation
public import GRDB

/// Records a shard's samples in the index while the shard is still being written, on a thread of its own, in one
/// transaction that commits when the shard is sealed.
///
/// Readers never see an unsealed shard (its rows are uncommitted until ``finish(_:offsets:extra:)``), and sealing
/// no longer stops the writing thread for the tens of thousands of rows a large shard has. The recorder holds the
/// index's writer while a shard is open: the caller writes the index only through it meanwhile.
public final class ShardRecorder: @unchecked Sendable {
    // @unchecked: `items`, `closed`, `finished` and `failures` are touched under `condition`; `finishing` only by
    // the writing thread.
    private enum Item {
        case samples(shard: String, [SampleLocation])
        case rows(@Sendable (Database) throws -> Void)
        case finish(SealedShard, [ShardOffsetRange], @Sendable (Database) throws -> Void)

        var shard: String {
            switch self {
            case .samples(let shard, _): shard
            case .rows: "(open shard)"
            case .finish(let sealed, _, _): sealed.name
            }
        }
    }

    private let index: ShardIndex
    private let dataset: String
    private let condition = NSCondition()
    private var items: [Item] = []
    private var closed = false
    private var finished = 0
    private var failures: [Int: ShardError] = [:]
    private var finishing = 0

    public init(index: ShardIndex, dataset: String) {
        self.index = index
        self.dataset = dataset
        let thread = Thread { [self] in run() }
        thread.name = "sluice.shards.index"
        thread.start()
    }

    /// Takes over the samples `writer` placed in its open shard since the last call (they leave the writer, so
    /// the sealed shard's ``SealedShard/samples`` holds only the rest).
    public func update(from writer: ShardWriter) {
        guard let (shard, samples) = writer.takePlacedSamples(), !samples.isEmpty else { return }
        enqueue(.samples(shard: shard, samples))
    }

    /// Hands over other rows of the open shard (the dedup entries of its documents): they are written in its
    /// transaction as they come, and commit or roll back with it, so the seal does not have to write them all at once.
    public func append(_ rows: @escaping @Sendable (Database) throws -> Void) {
        enqueue(.rows(rows))
    }

    /// Records `sealed`: the samples not handed over yet, its row and offset ranges, and `extra` (the dedup entries
    /// of its documents), then commits and returns once committed.
    /// - Throws: ``ShardError`` when any of the shard's rows could not be written; nothing of it is recorded then.
    public func finish(
        _ sealed: SealedShard, offsets: [ShardOffsetRange] = [], extra: @escaping @Sendable (Database) throws -> Void = { _ in }
    ) throws(ShardError) {
        if !sealed.samples.isEmpty { enqueue(.samples(shard: sealed.name, sealed.samples)) }
        finishing += 1
        let ticket = finishing
        enqueue(.finish(sealed, offsets, extra))
        condition.lock()
        while finished < ticket { condition.wait() }
        let failure = failures.removeValue(forKey: ticket)
        condition.unlock()
        if let failure { throw failure }
    }

    /// Stops the thread; an open shard's rows are rolled back.
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    private func enqueue(_ item: Item) {
        condition.lock()
        items.append(item)
        condition.broadcast()
        condition.unlock()
    }

    /// The next item, waiting for one; nil once closed.
    private func next() -> Item? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        if closed { return nil }
        return items.removeFirst()
    }

    private func run() {
        while let first = next() {
            var reachedFinish = false
            var failure: ShardError?
            do {
                try ShardError.wrap("recording shard \(first.shard)") { try record(from: first, reachedFinish: &reachedFinish) }
            } catch {
                failure = error
            }
            if failure != nil && !reachedFinish {
                // Skip the rest of this shard's items up to its seal, which reports the failure.
                while let item = next() {
                    if case .finish = item { break }
                }
            }
            condition.lock()
            finished += 1
            if let failure { failures[finished] = failure }
            condition.broadcast()
            condition.unlock()
        }
    }

    /// One shard's transaction: its items from `first` until its seal commits it (or the recorder closes).
    private func record(from first: Item, reachedFinish: inout Bool) throws {
        try index.writer.writeWithoutTransaction { db in
            try db.inTransaction {
                // The shard's row comes last, at the seal; its samples reference it.
                try db.execute(sql: "PRAGMA defer_foreign_keys = ON")
                var item = first
                while true {
                    switch item {
                    case .samples(let shard, let samples):
                        try ShardIndex.insertSamples(samples[...], shard: shard, in: db)
                    case .rows(let rows):
                        try rows(db)
                    case .finish(let sealed, let offsets, let extra):
                        reachedFinish = true
                        try ShardIndex.insertShard(sealed, dataset: dataset, offsets: offsets, in: db)
                        try extra(db)
                        return .commit
                    }
                    guard let following = next() else { return .rollback }
                    item = following
                }
            }
        }
    }
}
