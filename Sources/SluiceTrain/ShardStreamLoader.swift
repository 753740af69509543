public import Foundation
public import SluiceShards

/// One sealed shard as announced on `sluice.shards` (or listed from a curated directory's index).
public struct ShardAnnouncement: Sendable, Hashable, Codable {
    /// The shard's deterministic name, e.g. `raw.web+3+0000001200.tar.zst`.
    public var name: String
    /// Where the file is (absolute, or relative to the loader's base directory).
    public var path: String
    /// The SHA-256 of the sealed file, 64 hex digits.
    public var sha256: String
    /// How many samples it holds.
    public var samples: Int

    public init(name: String, path: String, sha256: String, samples: Int) {
        self.name = name
        self.path = path
        self.sha256 = sha256
        self.samples = samples
    }
}

/// How a loader splits, shuffles and packs.
public struct LoaderConfiguration: Sendable, Equatable, Codable {
    /// This process's rank, 0 ≤ rank < worldSize.
    public var rank = 0
    public var worldSize = 1
    /// Seeds every random choice: the same seed gives the same sequence.
    public var seed: UInt64 = 0
    /// Samples held in the shuffle buffer that spans shards.
    public var shuffleBuffer = 1024
    /// Tokens (bytes) per training window; each window comes with its targets shifted by one.
    public var contextLength = 128
    /// Windows per batch.
    public var batchSize = 8
    /// The byte between documents in the packed stream (NUL: curated text never holds one).
    public var separator: UInt8 = 0
    /// Every sample whose hash of shard name and index is 0 modulo `holdout` is held out for validation and never
    /// trained on (0: none held out). The rule depends only on the shard and the index, so every rank, every
    /// restart and the Python client agree on it.
    public var holdout = 0

    public init() {}

    /// Whether sample `index` of `shard` is held out under this configuration.
    public func isHeldOut(shard: String, index: Int) -> Bool {
        guard holdout > 0 else { return false }
        return ShardStreamLoader.mix(ShardStreamLoader.nameHash(shard) ^ UInt64(index)) % UInt64(holdout) == 0
    }

    enum CodingKeys: String, CodingKey {
        case rank, worldSize = "world_size", seed, shuffleBuffer = "shuffle_buffer", contextLength = "context_length"
        case batchSize = "batch_size", separator, holdout
    }

    public init(from decoder: any Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = LoaderConfiguration()
        rank = try values.decodeIfPresent(Int.self, forKey: .rank) ?? defaults.rank
        worldSize = try values.decodeIfPresent(Int.self, forKey: .worldSize) ?? defaults.worldSize
        seed = try values.decodeIfPresent(UInt64.self, forKey: .seed) ?? defaults.seed
        shuffleBuffer = try values.decodeIfPresent(Int.self, forKey: .shuffleBuffer) ?? defaults.shuffleBuffer
        contextLength = try values.decodeIfPresent(Int.self, forKey: .contextLength) ?? defaults.contextLength
        batchSize = try values.decodeIfPresent(Int.self, forKey: .batchSize) ?? defaults.batchSize
        separator = try values.decodeIfPresent(UInt8.self, forKey: .separator) ?? defaults.separator
        holdout = try values.decodeIfPresent(Int.self, forKey: .holdout) ?? defaults.holdout
    }
}

/// One batch: `batchSize × contextLength` input tokens and the same number of targets (the next token of each).
public struct TrainingBatch: Sendable, Equatable {
    public var inputs: [UInt8]
    public var targets: [UInt8]
}

/// Where a loader stands between two batches: enough to continue with exactly the batches it would have
/// produced without a restart. Codable, so it can be stored beside a model checkpoint.
public struct LoaderState: Sendable, Equatable, Codable {
    /// Announcements offered so far (repeats included): the caller re-offers from this index after a restart.
    public var offered = 0
    /// Distinct shards seen on the stream (all ranks'); the order decides which rank takes a shard.
    public var seen: [String] = []
    /// This rank's shards in order, with the next position in each one's shuffled order; a shard stays here
    /// while the shuffle buffer still refers to it (so a restarted loader can re-read it).
    public var pending: [PendingShard] = []
    /// The shuffle buffer: samples by shard name and index inside the shard.
    public var buffer: [SampleReference] = []
    /// The random generator's state.
    public var random: UInt64 = 0
    /// Packed tokens not yet in a batch.
    public var carry: [UInt8] = []
    /// Batches produced so far.
    public var batches = 0
    /// Shards skipped because they could not be read or their SHA-256 did not match.
    public var skipped: [String] = []
    /// Whether the stream was declared finished (the buffer then drains).
    public var finished = false
    /// The topic offset to continue reading announcements at, when they come from Kafka.
    public var nextOffset: Int64?

    public struct PendingShard: Sendable, Equatable, Codable {
        public var announcement: ShardAnnouncement
        public var next: Int
    }

    public struct SampleReference: Sendable, Equatable, Codable {
        public var shard: String
        public var index: Int
    }

    public init() {}
}

/// What happened to an offered announcement.
public enum LoaderEvent: Sendable, Equatable {
    /// A shard for this rank, queued for reading.
    case assigned(String)
    /// A shard for another rank.
    case otherRank(String, rank: Int)
    /// The shard was announced before (a re-announcement after a worker restart): ignored.
    case repeated(String)
    /// The shard could not be used (missing, unreadable, SHA-256 mismatch); the loader goes on without it.
    case skipped(String, reason: String)
}

/// Turns a stream of shard announcements into training batches: each shard goes to exactly one rank
/// (`distinct announcement index mod worldSize`), samples are shuffled within each shard by a seeded permutation
/// and across shards by a bounded shuffle buffer, documents are packed into one byte stream with a separator, and
/// the stream is cut into windows of `contextLength` tokens (targets shifted by one) and batches.
///
/// Resumable: ``state`` between batches holds the offered count, the pending shards and positions, the shuffle
/// buffer, the generator and the unbatched tokens; a loader rebuilt from it (and re-offered the announcements from
/// `state.offered` on) yields exactly the batches the original would have yielded. Repeated announcements are
/// ignored; a shard whose SHA-256 does not match is skipped with an event, not fatal.
public struct ShardStreamLoader {
    public let configuration: LoaderConfiguration
    /// Where relative shard paths are resolved.
    public let baseDirectory: URL?
    public private(set) var state: LoaderState
    private var seenSet: Set<String>
    /// Samples of shards read in this process, by shard name (re-read on demand after a restart).
    private var cache: [String: [ShardSampleData]] = [:]
    private var events: [LoaderEvent] = []
    /// Deleted samples (from each shard's curated directory index) are never yielded, even when they were
    /// already buffered; nil: no deletion checks.
    public var deletions: DeletionView?
    /// The curated directory of each shard read, for the deletion checks.
    private var directories: [String: URL] = [:]

    private func isDeleted(_ shard: String, key: String) -> Bool {
        guard let deletions, let directory = directories[shard] else { return false }
        return deletions.deletedKeys(shard: shard, directory: directory).contains(key)
    }

    public init(configuration: LoaderConfiguration, baseDirectory: URL? = nil, state: LoaderState? = nil) {
        precondition(configuration.worldSize >= 1 && (0..<configuration.worldSize).contains(configuration.rank), "rank must be in 0..<worldSize")
        precondition(configuration.contextLength >= 1 && configuration.batchSize >= 1 && configuration.shuffleBuffer >= 1)
        self.configuration = configuration
        self.baseDirectory = baseDirectory
        var initial = state ?? LoaderState()
        if state == nil { initial.random = Self.mix(configuration.seed ^ 0x5EED_5EED_5EED_5EED) }
        self.state = initial
        seenSet = Set(initial.seen)
    }

    /// Offers the next announcement of the stream (every rank sees every one, in the same order); `offset` is its
    /// position on the shards topic, remembered in the state for a restart.
    @discardableResult
    public mutating func offer(_ announcement: ShardAnnouncement, offset: Int64? = nil) -> LoaderEvent {
        state.offered += 1
        if let offset { state.nextOffset = offset + 1 }
        guard seenSet.insert(announcement.name).inserted else { return .repeated(announcement.name) }
        let index = state.seen.count
        state.seen.append(announcement.name)
        let owner = index % configuration.worldSize
        guard owner == configuration.rank else { return .otherRank(announcement.name, rank: owner) }
        state.pending.append(LoaderState.PendingShard(announcement: announcement, next: 0))
        return .assigned(announcement.name)
    }

    /// Steps over an event on the shards topic that is not an announcement (reported as a skip event).
    public mutating func skipEvent(at offset: Int64, reason: String) {
        state.nextOffset = offset + 1
        events.append(.skipped("offset \(offset)", reason: reason))
    }

    /// Says that no more announcements will come (a curated directory's end): the buffer drains into the last
    /// batches; a final partial batch is dropped.
    public mutating func finish() {
        state.finished = true
    }

    /// Events (skipped shards) since the last call.
    public mutating func takeEvents() -> [LoaderEvent] {
        defer { events.removeAll() }
        return events
    }

    /// The next batch, or nil when more announcements are needed (or, after ``finish()``, at the end).
    public mutating func nextBatch() -> TrainingBatch? {
        let window = configuration.contextLength
        let need = configuration.batchSize * window + 1
        while state.carry.count < need {
            guard let text = nextDocument() else { return nil }
            state.carry.append(contentsOf: text)
            state.carry.append(configuration.separator)
        }
        var inputs: [UInt8] = []
        var targets: [UInt8] = []
        inputs.reserveCapacity(need - 1)
        targets.reserveCapacity(need - 1)
        for row in 0..<configuration.batchSize {
            let start = row * window
            inputs.append(contentsOf: state.carry[start..<(start + window)])
            targets.append(contentsOf: state.carry[(start + 1)..<(start + window + 1)])
        }
        // The last target stays as the next batch's first input, so every token is a target once.
        state.carry.removeSubrange(0..<(need - 1))
        state.batches += 1
        return TrainingBatch(inputs: inputs, targets: targets)
    }

    /// The next document out of the shuffle buffer, filling it from pending shards first.
    private mutating func nextDocument() -> [UInt8]? {
        while true {
            while state.buffer.count < configuration.shuffleBuffer, let reference = nextFromShards() {
                state.buffer.append(reference)
            }
            // A full buffer (or a finished stream) gives out a random element.
            guard !state.buffer.isEmpty, state.buffer.count >= configuration.shuffleBuffer || state.finished else { return nil }
            let pick = Int(nextRandom() % UInt64(state.buffer.count))
            let reference = state.buffer[pick]
            state.buffer[pick] = state.buffer[state.buffer.count - 1]
            state.buffer.removeLast()
            let document = text(of: reference)
            release(reference.shard)
            if let document { return document }  // nil: deleted since it was buffered
        }
    }

    /// The next sample reference from the pending shards, each read in its seeded permutation.
    private mutating func nextFromShards() -> LoaderState.SampleReference? {
        var position = 0
        while position < state.pending.count {
            let entry = state.pending[position]
            guard let samples = load(entry.announcement) else {
                state.pending.remove(at: position)  // skipped: unreadable or not what was announced
                continue
            }
            guard entry.next < samples.count else {
                position += 1
                continue
            }
            let order = Self.permutation(count: samples.count, seed: configuration.seed, shard: entry.announcement.name)
            state.pending[position].next += 1
            let index = order[entry.next]
            if configuration.isHeldOut(shard: entry.announcement.name, index: index) { continue }
            if isDeleted(entry.announcement.name, key: samples[index].key) { continue }
            return LoaderState.SampleReference(shard: entry.announcement.name, index: index)
        }
        return nil
    }

    /// Drops shards that are read to the end and no longer referenced by the buffer.
    private mutating func release(_ shard: String) {
        guard let position = state.pending.firstIndex(where: { $0.announcement.name == shard }) else { return }
        let entry = state.pending[position]
        let total = cache[shard]?.count ?? entry.announcement.samples
        guard entry.next >= total || state.skipped.contains(shard),
            !state.buffer.contains(where: { $0.shard == shard })
        else { return }
        state.pending.remove(at: position)
        cache[shard] = nil
    }

    private mutating func load(_ announcement: ShardAnnouncement) -> [ShardSampleData]? {
        if let cached = cache[announcement.name] { return cached }
        if state.skipped.contains(announcement.name) { return nil }
        let url = announcement.path.hasPrefix("/") || baseDirectory == nil
            ? URL(fileURLWithPath: announcement.path) : baseDirectory!.appendingPathComponent(announcement.path)
        do {
            let samples = try ShardReader.samples(of: url, expectingSHA256: announcement.sha256)
            cache[announcement.name] = samples
            directories[announcement.name] = url.deletingLastPathComponent()
            return samples
        } catch {
            state.skipped.append(announcement.name)
            events.append(.skipped(announcement.name, reason: error.reason))
            return nil
        }
    }

    /// The text of a buffered sample; nil when it has been deleted since.
    private mutating func text(of reference: LoaderState.SampleReference) -> [UInt8]? {
        if cache[reference.shard] == nil,
            let entry = state.pending.first(where: { $0.announcement.name == reference.shard })
        {
            _ = load(entry.announcement)
        }
        guard let samples = cache[reference.shard], reference.index < samples.count else { return [] }
        if isDeleted(reference.shard, key: samples[reference.index].key) { return nil }
        return samples[reference.index].text
    }

    /// FNV-1a of a shard name.
    static func nameHash(_ shard: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in shard.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash
    }

    /// SplitMix64 step.
    private mutating func nextRandom() -> UInt64 {
        state.random &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state.random)
    }

    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A seeded permutation of `0..<count` for one shard (Fisher–Yates with SplitMix64 from seed and name).
    static func permutation(count: Int, seed: UInt64, shard: String) -> [Int] {
        var random = seed ^ nameHash(shard)
        var order = Array(0..<count)
        var index = count - 1
        while index > 0 {
            random &+= 0x9E37_79B9_7F4A_7C15
            let pick = Int(mix(random) % UInt64(index + 1))
            order.swapAt(index, pick)
            index -= 1
        }
        return order
    }
}
