internal import CZstd
public import Foundation
public import GRDB

/// How shards are stored.
public enum ShardFormat: String, Sendable, CaseIterable {
    /// Uncompressed POSIX tar.
    case tar
    /// A sequence of independent zstd frames, one per sample group (``ShardWriterConfiguration/frameBytes``,
    /// ``ShardWriterConfiguration/samplesPerFrame``) and one for the end blocks: a valid zstd stream of a valid tar, and random access by frame offset.
    case tarZstd = "tar.zst"

    public var fileExtension: String { rawValue }
}

/// Shard writer settings.
public struct ShardWriterConfiguration: Sendable, Equatable {
    public var format: ShardFormat = .tarZstd
    /// zstd level, 1…19. Default 3.
    public var compressionLevel: Int32 = 3
    /// Samples per zstd frame at most. 1 compresses every sample alone (random access decompresses one sample;
    /// larger files, slower writing). Default 1000: frames close by ``frameBytes``.
    public var samplesPerFrame = 1000
    /// A zstd frame closes once its tar members reach this many bytes. Default 64 KiB: about twice as fast to
    /// compress as one frame per sample and a third smaller, while random access decompresses at most this much.
    public var frameBytes = 64 << 10
    /// Seal when the uncompressed payload reaches this many bytes. Default 256 MiB.
    public var maximumPayloadBytes = 256 << 20
    /// Seal after this many samples; nil for no limit.
    public var maximumSamples: Int?
    /// Seal a shard this old (seconds since its first sample, by the driver's clock); nil for no limit.
    public var maximumAge: Double?

    public init() {}
}

/// One sample to write: `<key>.txt` and `<key>.json`, and what the index keeps about it.
public struct ShardSample: Sendable {
    public var key: String
    public var text: [UInt8]
    public var json: [UInt8]
    public var id: String?
    public var source: String?
    public var language: String?
    public var score: Double?
    public var timestamp: String?
    /// Where the sample came from and what the pipeline decided, for the index row (nil: not recorded).
    public var lineage: SampleLineage?

    public init(
        key: String, text: [UInt8], json: [UInt8], id: String? = nil, source: String? = nil, language: String? = nil,
        score: Double? = nil, timestamp: String? = nil, lineage: SampleLineage? = nil
    ) {
        self.lineage = lineage
        self.key = key
        self.text = text
        self.json = json
        self.id = id
        self.source = source
        self.language = language
        self.score = score
        self.timestamp = timestamp
    }
}

/// Where a sample came from and what the pipeline decided about it, as its index row keeps it.
public struct SampleLineage: Sendable, Equatable {
    /// The Kafka topic; nil for a line of an offline input (the dataset's `input` names the file).
    public var topic: String?
    public var partition: Int?
    /// The record's offset, or the input line (1-based).
    public var offset: Int64
    public var url: String?
    /// The binary's version and the hash of the stage configuration: `sluice/<version>+<12 hex digits>`.
    public var pipeline: String
    /// The rule decisions beyond the quality score (kept in `score`) and dedup (a kept sample passed it), as
    /// compact JSON: failed rules kept by policy, PII counts, perplexity; nil when there is nothing to say.
    public var decisions: String?
    /// SHA-256 of the curated text: what deletion by content hash matches.
    public var contentHash: SHA256Value?
    public var contentHashHex: String { contentHash?.hex ?? "" }

    public init(topic: String?, partition: Int?, offset: Int64, url: String?, pipeline: String, decisions: String?, contentHash: SHA256Value?) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.url = url
        self.pipeline = pipeline
        self.decisions = decisions
        self.contentHash = contentHash
    }
}

/// Where a sample lives in its shard. For `.tar` the frame is the whole file (offset 0) and member offsets are
/// file offsets; for `.tar.zst` member offsets are within the decompressed frame.
public struct SampleLocation: Sendable, Equatable {
    public var key: String
    public var frameOffset: Int
    public var frameLength: Int
    public var textOffset: Int
    public var textLength: Int
    public var jsonOffset: Int
    public var jsonLength: Int
    public var id: String?
    public var source: String?
    public var language: String?
    public var score: Double?
    public var lineage: SampleLineage?
    /// When the sample was deleted (a deletion request matched it), or nil.
    public var deletedAt: String?

    /// A row of the index's `samples` table.
    public init(row: Row) {
        key = row["key"]
        frameOffset = row["frame_offset"]
        frameLength = row["frame_length"]
        textOffset = row["text_offset"]
        textLength = row["text_length"]
        jsonOffset = row["json_offset"]
        jsonLength = row["json_length"]
        id = row["id"]
        source = row["source"]
        language = row["lang"]
        score = row["score"]
        deletedAt = row["deleted_at"]
        if let offset: Int64 = row["src_offset"], let pipeline: String = row["pipeline"] {
            lineage = SampleLineage(
                topic: row["src_topic"], partition: row["src_partition"], offset: offset, url: row["url"], pipeline: pipeline,
                decisions: row["decisions"], contentHash: (row["sha256"] as Data?).flatMap { SHA256Value(bytes: Array($0)) })
        }
    }

    init(key: String, frameOffset: Int, frameLength: Int, textOffset: Int, textLength: Int, jsonOffset: Int,
        jsonLength: Int, sample: ShardSample)
    {
        self.key = key
        self.frameOffset = frameOffset
        self.frameLength = frameLength
        self.textOffset = textOffset
        self.textLength = textLength
        self.jsonOffset = jsonOffset
        self.jsonLength = jsonLength
        id = sample.id
        source = sample.source
        language = sample.language
        score = sample.score
        lineage = sample.lineage
    }
}

/// A sample already turned into its tar members (and, for `.tar.zst` with one sample per frame, its zstd
/// frame), so that the expensive part of writing runs on the worker that produced the sample.
///
/// `sample` keeps what the index records; its text and JSON live on only in the members (their lengths are kept),
/// so that the writing thread does not carry or free them twice.
public struct PreparedSample: @unchecked Sendable {
    // @unchecked: plain value arrays, built on one thread and handed over once.
    public var sample: ShardSample
    /// The tar members: `chunkRange` of `arena`'s bytes (the members of many samples share one allocation).
    var arena: ChunkArena?
    var chunkRange: Range<Int>
    var frame: [UInt8]?
    var textStart: Int
    var jsonStart: Int
    var textLength: Int
    var jsonLength: Int
    var mtime: Int64

    func withChunk<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        guard let arena else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return withExtendedLifetime(arena) {
            body(UnsafeRawBufferPointer(start: arena.base + chunkRange.lowerBound, count: chunkRange.count))
        }
    }
}

/// The tar members of many prepared samples in one allocation, freed together once the last of them is written:
/// one allocation and one free per few megabytes instead of one per sample, on whichever threads.
///
/// Raw memory of a fixed size, not an array: the encoder's thread appends while another reads earlier ranges.
final class ChunkArena: @unchecked Sendable {
    // @unchecked: bytes below `count` are written once, before the sample that owns them is handed over through
    // a lock; only the encoder's thread appends.
    let base: UnsafeMutableRawPointer
    let capacity: Int
    private(set) var count = 0
    static let defaultCapacity = 4 << 20

    init(capacity: Int) {
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: max(1, capacity), alignment: 16)
    }

    deinit { base.deallocate() }

    /// Copies `bytes` in; nil when they do not fit.
    func append(_ bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        guard count + bytes.count <= capacity else { return nil }
        if let source = bytes.baseAddress { (base + count).copyMemory(from: source, byteCount: bytes.count) }
        count += bytes.count
        return (count - bytes.count)..<count
    }
}

/// Builds ``PreparedSample``s; one per worker thread (it owns a zstd context).
public final class SampleEncoder {
    // One owner thread.
    private let context: OpaquePointer
    public let configuration: ShardWriterConfiguration
    private var scratch: [UInt8] = []
    private var members: [UInt8] = []
    private var arena = ChunkArena(capacity: ChunkArena.defaultCapacity)

    public init(configuration: ShardWriterConfiguration) {
        self.configuration = configuration
        context = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, configuration.compressionLevel)
    }

    deinit { ZSTD_freeCCtx(context) }

    public func prepare(_ sample: ShardSample, mtime: Int64) throws(ShardError) -> PreparedSample {
        var light = sample
        light.text = []
        light.json = []
        members.removeAll(keepingCapacity: true)
        let (textStart, jsonStart) = ShardWriter.appendMembers(of: sample, mtime: mtime, to: &members)
        if configuration.format == .tarZstd && configuration.samplesPerFrame == 1 {
            // Compress into a reused buffer and keep an exact-size copy: no zeroed worst-case buffer per sample.
            let bound = ZSTD_compressBound(members.count)
            if scratch.count < bound { scratch = [UInt8](repeating: 0, count: bound) }
            let size = scratch.withUnsafeMutableBytes { destination in
                members.withUnsafeBytes { source in
                    ZSTD_compress2(context, destination.baseAddress, destination.count, source.baseAddress, source.count)
                }
            }
            if ZSTD_isError(size) != 0 { throw ShardError.compression(String(cString: ZSTD_getErrorName(size))) }
            return PreparedSample(
                sample: light, arena: nil, chunkRange: 0..<0, frame: Array(scratch[0..<size]), textStart: textStart,
                jsonStart: jsonStart, textLength: sample.text.count, jsonLength: sample.json.count, mtime: mtime)
        }
        // A full arena stays with the samples already in it; a new one takes over.
        var range = members.withUnsafeBytes { arena.append($0) }
        if range == nil {
            arena = ChunkArena(capacity: max(ChunkArena.defaultCapacity, members.count))
            range = members.withUnsafeBytes { arena.append($0) }
        }
        return PreparedSample(
            sample: light, arena: arena, chunkRange: range!, frame: nil, textStart: textStart, jsonStart: jsonStart,
            textLength: sample.text.count, jsonLength: sample.json.count, mtime: mtime)
    }
}

/// A shard on disk under its final name, with everything the index records.
public struct SealedShard: Sendable {
    public var name: String
    public var fileName: String
    public var format: ShardFormat
    /// The samples not handed over before the seal (``ShardWriter/takePlacedSamples()``): all of them unless the
    /// caller took some.
    public var samples: [SampleLocation]
    /// All the shard's samples, those taken before the seal included.
    public var sampleCount: Int
    public var rawBytes: Int
    public var storedBytes: Int
    public var sha256: String
    public var createdAt: Date
    public var sealedAt: Date
    public var timestampRange: ClosedRange<String>?
}

/// Writes samples into shards in one directory, sealing by size, count or age.
///
/// Sealing is atomic: the shard is written under `.<name>.tmp`, fsynced, renamed to `<name>.tar[.zst]`, and the
/// directory is fsynced; only then does the caller record it in the index. A crash before that leaves a
/// temporary file that readers ignore and ``removeTemporaryFiles(in:)`` deletes. Names come from where a shard
/// starts (the caller's `position`, e.g. `raw.web+3+0000001200` or `corpus+0000000001`), so a shard re-made
/// after a crash has the same name and content (sample mtimes come from the caller, not the clock).
public final class ShardWriter {
    // One owner (the driver's writing task); not shared.
    public let directory: URL
    public let configuration: ShardWriterConfiguration
    private var current: OpenShard?
    private let compressor: OpaquePointer
    /// Compresses full frames off this thread, when given.
    private let background: FrameCompressor?
    /// Frames in the background compressor at most, per writer.
    private let framesInFlight = 8
    private let token = String(UInt64.random(in: 0...UInt64.max), radix: 36)

    /// A class, so that appending to its arrays never copies them.
    private final class OpenShard {
        let name: String
        let handle: FileHandle
        let temporary: URL
        let digest = SHA256Digest()
        /// Bytes written to the file, including those still in `output`.
        var written = 0
        var rawBytes = 0
        /// The samples not taken yet, in file order: sample number `n` (0-based in the shard) is
        /// `samples[n - taken]`. Those below `placed` have their final places; the others are in the open frame
        /// or a frame in flight and are patched in place once their frame is written (no copies of their fields).
        var samples: [SampleLocation] = []
        var taken = 0
        var placed = 0
        /// The open frame's tar members; its samples are numbers `frameStart...`, their member offsets relative to
        /// the frame.
        var frame: [UInt8] = []
        var frameStart = 0
        /// Frames being compressed in the background, in file order, with their samples' numbers.
        var inFlight: [(ticket: Int, samples: Range<Int>)] = []
        /// Samples added, wherever they are.
        var sampleCount = 0
        /// Samples in `samples` or taken: one past the last sample number.
        var end: Int { taken + samples.count }
        /// Bytes waiting for one `write(2)`.
        var output: [UInt8] = []
        let createdAt: Date
        let openedAtSeconds: Double
        var timestamps: ClosedRange<String>?

        init(name: String, handle: FileHandle, temporary: URL, createdAt: Date, openedAtSeconds: Double) {
            self.name = name
            self.handle = handle
            self.temporary = temporary
            self.createdAt = createdAt
            self.openedAtSeconds = openedAtSeconds
        }
    }

    /// `compressor` compresses full frames on its thread while this writer's caller goes on (nil: on the caller's
    /// thread).
    public init(directory: URL, configuration: ShardWriterConfiguration = ShardWriterConfiguration(), compressor: FrameCompressor? = nil) {
        self.directory = directory
        self.configuration = configuration
        self.compressor = ZSTD_createCCtx()
        background = compressor
    }

    deinit {
        if let current {
            for frame in current.inFlight { _ = background?.take(frame.ticket, wait: true) }
            try? FileManager.default.removeItem(at: current.temporary)
        }
        ZSTD_freeCCtx(compressor)
    }

    /// Deletes the temporary files a crashed writer left in `directory`.
    public static func removeTemporaryFiles(in directory: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names where name.hasPrefix(".") && name.hasSuffix(".tmp") {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
    }

    /// Deletes crash leftovers of shards whose names start with `prefix` (e.g. `raw.web+3+`: one partition's).
    public static func removeTemporaryFiles(in directory: URL, prefix: String) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names where name.hasPrefix("." + prefix) && name.hasSuffix(".tmp") {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
    }

    /// Whether a shard is open.
    public var isOpen: Bool { current != nil }

    /// Hands over the open shard's samples whose frames are written (their places are final) and not taken before,
    /// moving them out: the sealed shard's ``SealedShard/samples`` then holds only the rest. For a caller that
    /// records samples while the shard is still open (``ShardRecorder``).
    public func takePlacedSamples() -> (shard: String, samples: [SampleLocation])? {
        guard let shard = current, shard.placed > shard.taken else { return nil }
        var head = shard.samples  // moved out whole: no copies of the elements' fields
        shard.samples = []
        let count = shard.placed - shard.taken
        shard.samples = Array(head[count...])  // the unplaced tail (a few frames at most) stays
        head.removeSubrange(count...)
        shard.taken = shard.placed
        return (shard.name, head)
    }

    /// Adds a sample. `position` names a shard this sample opens (it is evaluated only then); `now` is the driver's
    /// clock (seconds) for the age limit, `mtime` the members' modification time (Unix seconds, deterministic).
    /// Returns the shard sealed by a limit this sample reached, if any.
    public func add(_ sample: ShardSample, position: @autoclosure () -> String, mtime: Int64, now: Double) throws(ShardError) -> SealedShard? {
        try begin(sample, payload: sample.text.count + sample.json.count, position: position, now: now)
        let (textStart, jsonStart) = Self.appendMembers(of: sample, mtime: mtime, to: &current!.frame)
        try placed(
            sample, textStart: textStart, textLength: sample.text.count, jsonStart: jsonStart, jsonLength: sample.json.count)
        return try sealIfFull(now: now)
    }

    /// Adds a sample prepared by a ``SampleEncoder`` (same configuration): its members join the open frame
    /// (`.tar.zst`) or the file (`.tar`), or its own frame is written as it is (one sample per frame). See
    /// ``add(_:position:mtime:now:)``.
    public func add(_ prepared: PreparedSample, position: @autoclosure () -> String, now: Double) throws(ShardError) -> SealedShard? {
        try begin(prepared.sample, payload: prepared.textLength + prepared.jsonLength, position: position, now: now)
        let shard = current!
        let sample = prepared.sample
        switch (configuration.format, prepared.frame) {
        case (.tarZstd, let frame?):
            try flushFrame()  // samples added the other way, if any, keep their order
            try collect(all: true)
            let offset = shard.written
            frame.withUnsafeBytes { writeRaw($0) }
            shard.samples.append(
                SampleLocation(
                    key: sample.key, frameOffset: offset, frameLength: frame.count, textOffset: prepared.textStart,
                    textLength: prepared.textLength, jsonOffset: prepared.jsonStart, jsonLength: prepared.jsonLength,
                    sample: sample))
            shard.placed = shard.end
            shard.frameStart = shard.end
        case (.tarZstd, nil):
            let base = shard.frame.count
            prepared.withChunk { shard.frame.append(contentsOf: $0) }
            try placed(
                sample, textStart: base + prepared.textStart, textLength: prepared.textLength,
                jsonStart: base + prepared.jsonStart, jsonLength: prepared.jsonLength)
        case (.tar, _):
            try flushFrame()
            let offset = shard.written
            prepared.withChunk { writeRaw($0) }
            shard.samples.append(
                SampleLocation(
                    key: sample.key, frameOffset: 0, frameLength: 0, textOffset: offset + prepared.textStart,
                    textLength: prepared.textLength, jsonOffset: offset + prepared.jsonStart, jsonLength: prepared.jsonLength,
                    sample: sample))
            shard.placed = shard.end
            shard.frameStart = shard.end
        }
        try drainIfFull()
        return try sealIfFull(now: now)
    }

    /// Records a sample whose members were just appended to the open frame; closes the frame when it is full.
    private func placed(_ sample: ShardSample, textStart: Int, textLength: Int, jsonStart: Int, jsonLength: Int) throws(ShardError) {
        let shard = current!
        shard.samples.append(
            SampleLocation(
                key: sample.key, frameOffset: 0, frameLength: 0, textOffset: textStart, textLength: textLength,
                jsonOffset: jsonStart, jsonLength: jsonLength, sample: sample))
        if configuration.format == .tar || shard.frame.count >= configuration.frameBytes
            || shard.end - shard.frameStart >= max(1, configuration.samplesPerFrame)
        {
            try flushFrame()
        }
    }

    /// Opens a shard when none is, and counts the sample's payload and time.
    private func begin(_ sample: ShardSample, payload: Int, position: () -> String, now: Double) throws(ShardError) {
        precondition(
            !sample.key.utf8.contains(UInt8(ascii: ".")) && !sample.key.utf8.contains(UInt8(ascii: "/")),
            "sample keys contain no dots or slashes")
        if current == nil { try open(name: position(), now: now) }
        let shard = current!
        shard.rawBytes += payload
        shard.sampleCount += 1
        if let ts = sample.timestamp {
            // RFC 3339 times compare as their bytes (String's comparison, for ASCII, at a fraction of the cost).
            if let range = shard.timestamps {
                if Self.bytesPrecede(ts, range.lowerBound) {
                    shard.timestamps = ts...range.upperBound
                } else if Self.bytesPrecede(range.upperBound, ts) {
                    shard.timestamps = range.lowerBound...ts
                }
            } else {
                shard.timestamps = ts...ts
            }
        }
    }

    /// Whether `a`'s UTF-8 bytes sort before `b`'s (`memcmp` on contiguous bytes; the generic comparison of two
    /// UTF-8 views steps through iterators a byte at a time).
    static func bytesPrecede(_ a: String, _ b: String) -> Bool {
        var (a, b) = (a, b)
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let common = min(x.count, y.count)
                let order = common == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, common)
                return order < 0 || (order == 0 && x.count < y.count)
            }
        }
    }

    private func sealIfFull(now: Double) throws(ShardError) -> SealedShard? {
        let shard = current!
        let full = shard.rawBytes >= configuration.maximumPayloadBytes
            || (configuration.maximumSamples.map { shard.sampleCount >= $0 } ?? false)
            || (configuration.maximumAge.map { now - shard.openedAtSeconds >= $0 } ?? false)
        return full ? try seal(now: now) : nil
    }

    /// Seals the open shard (if any) and returns it.
    public func seal(now: Double) throws(ShardError) -> SealedShard? {
        guard current != nil else { return nil }
        try flushFrame()
        try collect(all: true)
        var end: [UInt8] = []
        Tar.appendEnd(to: &end)
        if configuration.format == .tarZstd { try writeCompressed(end) } else { end.withUnsafeBytes { writeRaw($0) } }
        try drain()
        let shard = current!
        current = nil
        let fileName = "\(shard.name).\(configuration.format.fileExtension)"
        let destination = directory.appendingPathComponent(fileName)
        do {
            try shard.handle.synchronize()
            try shard.handle.close()
            if FileManager.default.fileExists(atPath: destination.path) {
                try FileManager.default.removeItem(at: destination)
            }
            try FileManager.default.moveItem(at: shard.temporary, to: destination)
            let directoryHandle = try FileHandle(forReadingFrom: directory)
            try directoryHandle.synchronize()
            try directoryHandle.close()
        } catch {
            throw ShardError.make(.io, "sealing \(fileName): \(error.localizedDescription)")
        }
        return SealedShard(
            name: shard.name, fileName: fileName, format: configuration.format, samples: shard.samples,
            sampleCount: shard.end,
            rawBytes: shard.rawBytes, storedBytes: shard.written, sha256: shard.digest.finish(),
            createdAt: shard.createdAt, sealedAt: Date(), timestampRange: shard.timestamps)
    }

    private func open(name: String, now: Double) throws(ShardError) {
        // A per-writer token keeps two writers that open the same name (an old and a new owner of a partition)
        // from touching each other's temporary file.
        let temporary = directory.appendingPathComponent(".\(name).\(token).tmp")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil),
            let handle = try? FileHandle(forWritingTo: temporary)
        else { throw ShardError.make(.io, "cannot create \(temporary.path)") }
        current = OpenShard(name: name, handle: handle, temporary: temporary, createdAt: Date(), openedAtSeconds: now)
    }

    /// Writes the open frame: its members as they are (`.tar`) or as one zstd frame, and records its samples' places.
    private func flushFrame() throws(ShardError) {
        guard let shard = current, shard.end > shard.frameStart else { return }
        let offset = shard.written
        let numbers = shard.frameStart..<shard.end
        shard.frameStart = shard.end
        switch configuration.format {
        case .tar:
            shard.frame.withUnsafeBytes { writeRaw($0) }
            for index in (numbers.lowerBound - shard.taken)..<(numbers.upperBound - shard.taken) {
                shard.samples[index].textOffset += offset
                shard.samples[index].jsonOffset += offset
            }
            shard.placed = numbers.upperBound
        case .tarZstd:
            if let background {
                shard.inFlight.append((background.submit(shard.frame), numbers))
                shard.frame = []
                shard.frame.reserveCapacity(configuration.frameBytes + 8 * Tar.block)
                try collect(all: false)
                return
            }
            try writeCompressed(shard.frame)
            place(numbers, frameOffset: offset, frameLength: shard.written - offset)
        }
        shard.frame.removeAll(keepingCapacity: true)
        try drainIfFull()
    }

    /// Writes the frames the background compressor finished, in order: all of them when `all`, else those done
    /// (and the oldest, waiting, while too many are in flight).
    private func collect(all: Bool) throws(ShardError) {
        guard let background, let shard = current else { return }
        while let first = shard.inFlight.first {
            let wait = all || shard.inFlight.count > framesInFlight
            guard let result = background.take(first.ticket, wait: wait) else { break }
            shard.inFlight.removeFirst()
            let frame: [UInt8]
            switch result {
            case .success(let bytes): frame = bytes
            case .failure(let error): throw error
            }
            let offset = shard.written
            frame.withUnsafeBytes { writeRaw($0) }
            place(first.samples, frameOffset: offset, frameLength: frame.count)
        }
        try drainIfFull()
    }

    /// Gives the samples `numbers` of the open shard their frame's place, in place.
    private func place(_ numbers: Range<Int>, frameOffset: Int, frameLength: Int) {
        let shard = current!
        for index in (numbers.lowerBound - shard.taken)..<(numbers.upperBound - shard.taken) {
            shard.samples[index].frameOffset = frameOffset
            shard.samples[index].frameLength = frameLength
        }
        shard.placed = numbers.upperBound
    }

    /// Appends a sample's `<key>.txt` and `<key>.json` members to `output`; returns where their data starts in it.
    static func appendMembers(of sample: ShardSample, mtime: Int64, to output: inout [UInt8]) -> (textStart: Int, jsonStart: Int) {
        // The member names `<key>.txt` and `<key>.json` in one scratch buffer: no string per member.
        var key = sample.key
        return key.withUTF8 { key in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: key.count + 5) { name in
                _ = name.initialize(fromContentsOf: key)
                let txt: StaticString = ".txt"
                let json: StaticString = ".json"
                for i in 0..<4 { name[key.count + i] = txt.utf8Start[i] }
                let textName = UnsafeBufferPointer(rebasing: name[0..<(key.count + 4)])
                let textStart = sample.text.withUnsafeBytes {
                    Tar.appendMember(name: textName, data: $0, mtime: mtime, to: &output)
                }
                for i in 0..<5 { name[key.count + i] = json.utf8Start[i] }
                let jsonName = UnsafeBufferPointer(rebasing: name[0..<(key.count + 5)])
                let jsonStart = sample.json.withUnsafeBytes {
                    Tar.appendMember(name: jsonName, data: $0, mtime: mtime, to: &output)
                }
                return (textStart, jsonStart)
            }
        }
    }

    /// Compresses `bytes` as one frame straight into the output buffer.
    private func writeCompressed(_ bytes: [UInt8]) throws(ShardError) {
        let shard = current!
        let start = shard.output.count
        let bound = ZSTD_compressBound(bytes.count)
        shard.output.append(contentsOf: repeatElement(0, count: bound))
        let size = shard.output.withUnsafeMutableBytes { destination in
            bytes.withUnsafeBytes { source in
                ZSTD_compressCCtx(
                    compressor, destination.baseAddress! + start, bound, source.baseAddress, source.count,
                    configuration.compressionLevel)
            }
        }
        if ZSTD_isError(size) != 0 {
            shard.output.removeLast(bound)
            throw ShardError.compression(String(cString: ZSTD_getErrorName(size)))
        }
        shard.output.removeLast(bound - size)
        shard.output.withUnsafeBytes { shard.digest.update(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        shard.written += size
    }

    /// Buffers bytes for the file and hashes them.
    private func writeRaw(_ bytes: UnsafeRawBufferPointer) {
        let shard = current!
        shard.digest.update(bytes)
        shard.output.append(contentsOf: bytes)
        shard.written += bytes.count
    }

    private func drainIfFull() throws(ShardError) {
        // 256 KiB: few writes, and little memory when a pipeline keeps a shard open per partition.
        if current!.output.count >= 256 << 10 { try drain() }
    }

    /// Writes the buffered bytes to the file.
    private func drain() throws(ShardError) {
        let shard = current!
        // POSIX write for the errno: "No space left on device" and "File too large" say what to fix.
        let descriptor = shard.handle.fileDescriptor
        let failure: Int32? = shard.output.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Foundation.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += written
            }
            return nil
        }
        shard.output.removeAll(keepingCapacity: true)
        if let failure {
            throw ShardError.make(
                .io, "writing \(shard.temporary.lastPathComponent) in \(directory.path): \(String(cString: strerror(failure)))")
        }
    }
}
