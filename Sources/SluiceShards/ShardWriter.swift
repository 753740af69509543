internal import CZstd
public import Foundation
public import GRDB

/// How shards are stored.
public enum ShardFormat: String, Sendable, CaseIterable {
    /// Uncompressed POSIX tar.
    case tar
    /// A sequence of independent zstd frames, one per sample group (``ShardWriterConfiguration/samplesPerFrame``)
    /// and one for the end blocks: a valid zstd stream of a valid tar, and random access by frame offset.
    case tarZstd = "tar.zst"

    public var fileExtension: String { rawValue }
}

/// Shard writer settings.
public struct ShardWriterConfiguration: Sendable, Equatable {
    public var format: ShardFormat = .tarZstd
    /// zstd level, 1…19. Default 3.
    public var compressionLevel: Int32 = 3
    /// Samples per zstd frame. Default 1 (random access costs one sample's decompression).
    public var samplesPerFrame = 1
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
public struct PreparedSample: @unchecked Sendable {
    // @unchecked: plain value arrays, built on one thread and handed over once.
    public var sample: ShardSample
    var chunk: [UInt8]
    var frame: [UInt8]?
    var textStart: Int
    var jsonStart: Int
    var mtime: Int64
}

/// Builds ``PreparedSample``s; one per worker thread (it owns a zstd context).
public final class SampleEncoder {
    // One owner thread.
    private let context: OpaquePointer
    public let configuration: ShardWriterConfiguration
    private var chunk: [UInt8] = []
    private var scratch: [UInt8] = []

    public init(configuration: ShardWriterConfiguration) {
        self.configuration = configuration
        context = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, configuration.compressionLevel)
    }

    deinit { ZSTD_freeCCtx(context) }

    public func prepare(_ sample: ShardSample, mtime: Int64) throws(ShardError) -> PreparedSample {
        chunk.removeAll(keepingCapacity: true)
        chunk.reserveCapacity(sample.text.count + sample.json.count + 4 * Tar.block)
        let textStart = ShardWriter.headerBytes(for: "\(sample.key).txt")
        sample.text.withUnsafeBytes { Tar.appendMember(name: "\(sample.key).txt", data: $0, mtime: mtime, to: &chunk) }
        let jsonStart = chunk.count + ShardWriter.headerBytes(for: "\(sample.key).json")
        sample.json.withUnsafeBytes { Tar.appendMember(name: "\(sample.key).json", data: $0, mtime: mtime, to: &chunk) }
        var frame: [UInt8]?
        if configuration.format == .tarZstd && configuration.samplesPerFrame == 1 {
            // Compress into a reused buffer and keep an exact-size copy: no zeroed worst-case buffer per sample.
            let bound = ZSTD_compressBound(chunk.count)
            if scratch.count < bound { scratch = [UInt8](repeating: 0, count: bound) }
            let size = scratch.withUnsafeMutableBytes { destination in
                chunk.withUnsafeBytes { source in
                    ZSTD_compress2(context, destination.baseAddress, destination.count, source.baseAddress, source.count)
                }
            }
            if ZSTD_isError(size) != 0 { throw ShardError.compression(String(cString: ZSTD_getErrorName(size))) }
            frame = Array(scratch[0..<size])
            return PreparedSample(sample: sample, chunk: [], frame: frame, textStart: textStart, jsonStart: jsonStart, mtime: mtime)
        }
        return PreparedSample(sample: sample, chunk: chunk, frame: nil, textStart: textStart, jsonStart: jsonStart, mtime: mtime)
    }
}

/// A shard on disk under its final name, with everything the index records.
public struct SealedShard: Sendable {
    public var name: String
    public var fileName: String
    public var format: ShardFormat
    public var samples: [SampleLocation]
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
    private let token = String(UInt64.random(in: 0...UInt64.max), radix: 36)

    /// A class, so that appending to its arrays never copies them.
    private final class OpenShard {
        let name: String
        let handle: FileHandle
        let temporary: URL
        let digest = SHA256Digest()
        var written = 0
        var rawBytes = 0
        var samples: [SampleLocation] = []
        var pending: [(ShardSample, Int64)] = []
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

    public init(directory: URL, configuration: ShardWriterConfiguration = ShardWriterConfiguration()) {
        self.directory = directory
        self.configuration = configuration
        compressor = ZSTD_createCCtx()
    }

    deinit {
        if let current { try? FileManager.default.removeItem(at: current.temporary) }
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

    /// Adds a sample. `position` names a shard this sample opens; `now` is the driver's clock (seconds) for the
    /// age limit, `mtime` the members' modification time (Unix seconds, deterministic). Returns the shard sealed
    /// by a limit this sample reached, if any.
    public func add(_ sample: ShardSample, position: String, mtime: Int64, now: Double) throws(ShardError) -> SealedShard? {
        try begin(sample, position: position, now: now)
        current!.pending.append((sample, mtime))
        if current!.pending.count >= max(1, configuration.samplesPerFrame) { try flushFrame() }
        return try sealIfFull(now: now)
    }

    /// Adds a sample prepared by a ``SampleEncoder`` (same configuration): its members (`.tar`) or its frame
    /// (`.tar.zst`, one sample per frame) are written as they are. See ``add(_:position:mtime:now:)``.
    public func add(_ prepared: PreparedSample, position: String, now: Double) throws(ShardError) -> SealedShard? {
        let direct: (bytes: [UInt8], compressed: Bool)? =
            switch configuration.format {
            case .tar: (prepared.chunk, false)
            case .tarZstd: prepared.frame.map { ($0, true) }
            }
        guard let direct, configuration.samplesPerFrame == 1 || !direct.compressed else {
            return try add(prepared.sample, position: position, mtime: prepared.mtime, now: now)
        }
        try begin(prepared.sample, position: position, now: now)
        try flushFrame()  // samples added the other way, if any, keep their order
        let offset = current!.written
        try writeRaw(direct.bytes)
        current!.samples.append(
            SampleLocation(
                key: prepared.sample.key, frameOffset: direct.compressed ? offset : 0,
                frameLength: direct.compressed ? direct.bytes.count : 0,
                textOffset: (direct.compressed ? 0 : offset) + prepared.textStart, textLength: prepared.sample.text.count,
                jsonOffset: (direct.compressed ? 0 : offset) + prepared.jsonStart,
                jsonLength: prepared.sample.json.count, sample: prepared.sample))
        return try sealIfFull(now: now)
    }

    /// Opens a shard when none is, and counts the sample's payload and time.
    private func begin(_ sample: ShardSample, position: String, now: Double) throws(ShardError) {
        precondition(!sample.key.contains(".") && !sample.key.contains("/"), "sample keys contain no dots or slashes")
        if current == nil { try open(name: position, now: now) }
        let shard = current!
        shard.rawBytes += sample.text.count + sample.json.count
        if let ts = sample.timestamp {
            shard.timestamps = shard.timestamps.map { min($0.lowerBound, ts)...max($0.upperBound, ts) } ?? ts...ts
        }
    }

    private func sealIfFull(now: Double) throws(ShardError) -> SealedShard? {
        let shard = current!
        let full = shard.rawBytes >= configuration.maximumPayloadBytes
            || (configuration.maximumSamples.map { shard.samples.count + shard.pending.count >= $0 } ?? false)
            || (configuration.maximumAge.map { now - shard.openedAtSeconds >= $0 } ?? false)
        return full ? try seal(now: now) : nil
    }

    /// Seals the open shard (if any) and returns it.
    public func seal(now: Double) throws(ShardError) -> SealedShard? {
        guard current != nil else { return nil }
        try flushFrame()
        var end: [UInt8] = []
        Tar.appendEnd(to: &end)
        try write(end, compressed: configuration.format == .tarZstd)
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

    /// Writes the pending samples as one tar chunk (one zstd frame when compressing) and records their places.
    private func flushFrame() throws(ShardError) {
        guard let shard = current, !shard.pending.isEmpty else { return }
        var chunk: [UInt8] = []
        var places: [(ShardSample, Int, Int, Int, Int)] = []
        let compressed = configuration.format == .tarZstd
        let base = compressed ? 0 : shard.written
        for (sample, mtime) in shard.pending {
            let textStart = chunk.count + Self.headerBytes(for: "\(sample.key).txt")
            sample.text.withUnsafeBytes { Tar.appendMember(name: "\(sample.key).txt", data: $0, mtime: mtime, to: &chunk) }
            let jsonStart = chunk.count + Self.headerBytes(for: "\(sample.key).json")
            sample.json.withUnsafeBytes { Tar.appendMember(name: "\(sample.key).json", data: $0, mtime: mtime, to: &chunk) }
            places.append((sample, base + textStart, sample.text.count, base + jsonStart, sample.json.count))
        }
        let frameOffset = shard.written
        try write(chunk, compressed: compressed)
        let frameLength = current!.written - frameOffset
        for (sample, textOffset, textLength, jsonOffset, jsonLength) in places {
            current!.samples.append(
                SampleLocation(
                    key: sample.key, frameOffset: compressed ? frameOffset : 0, frameLength: compressed ? frameLength : 0,
                    textOffset: textOffset, textLength: textLength, jsonOffset: jsonOffset, jsonLength: jsonLength,
                    sample: sample))
        }
        current!.pending.removeAll(keepingCapacity: true)
    }

    static func headerBytes(for name: String) -> Int {
        let bytes = name.utf8
        return bytes.count > 100 || bytes.contains(where: { $0 >= 0x80 }) ? 3 * Tar.block : Tar.block
    }

    static func compress(_ bytes: [UInt8], context: OpaquePointer, level: Int32) throws(ShardError) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: ZSTD_compressBound(bytes.count))
        let size = frame.withUnsafeMutableBytes { destination in
            bytes.withUnsafeBytes { source in
                ZSTD_compressCCtx(context, destination.baseAddress, destination.count, source.baseAddress, source.count, level)
            }
        }
        if ZSTD_isError(size) != 0 { throw ShardError.compression(String(cString: ZSTD_getErrorName(size))) }
        frame.removeSubrange(size...)
        return frame
    }

    private func write(_ bytes: [UInt8], compressed: Bool) throws(ShardError) {
        let output = compressed ? try Self.compress(bytes, context: compressor, level: configuration.compressionLevel) : bytes
        try writeRaw(output)
    }

    private func writeRaw(_ output: [UInt8]) throws(ShardError) {
        output.withUnsafeBytes { current!.digest.update($0) }
        // POSIX write for the errno: "No space left on device" and "File too large" say what to fix.
        let descriptor = current!.handle.fileDescriptor
        let failure: Int32? = output.withUnsafeBytes { bytes in
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
        if let failure {
            throw ShardError.make(
                .io, "writing \(current!.temporary.lastPathComponent) in \(directory.path): \(String(cString: strerror(failure)))")
        }
        current!.written += output.count
    }
}
