internal import SluiceConfig
public import Foundation
internal import SluiceShards
internal import SluiceText
internal import Dispatch
internal import SluiceTrain

/// The offline batch driver behind `sluice curate`: JSON Lines in, shards + index + `rejected.jsonl` out, through
/// the same stage chain as the streaming pipeline.
///
/// Lines are read in batches; batch *n* runs decode → clean → desensitize → quality → shingling → sample encoding
/// on worker *n mod workers* (each worker owns its stages, so the output depends only on the input and the worker
/// count), and the results are consumed in input order by one thread that runs the dedup index, writes shards
/// (their zstd frames compressed on a thread of their own), and records each sealed shard with its dedup entries in
/// one index transaction.
public final class Curator {
    public let configuration: CurateConfiguration
    public let output: URL
    /// Lines per batch handed to a worker.
    public var batchSize = 2048
    /// Batches queued per worker.
    var inFlightPerWorker = 2

    public init(configuration: CurateConfiguration, output: URL) {
        self.configuration = configuration
        self.output = output
    }

    /// What happened, for the summary.
    public struct Summary: Sendable {
        public var lines = 0
        public var decoded = 0
        public var kept = 0
        public var inputBytes = 0
        public var textBytes = 0
        public var storedBytes = 0
        public var shards = 0
        public var dropped: [String: [String: Int]] = [:]
        public var seconds = 0.0
        /// CPU seconds per stage: the workers' stages summed over workers, then `dedup` and `write` (shards,
        /// index, rejected log) on the writing thread.
        public var stageSeconds: [(stage: String, seconds: Double)] = []

        mutating func drop(_ stage: String, _ reason: String) {
            dropped[stage, default: [:]][reason, default: 0] += 1
        }

        /// The summary as one JSON object.
        public var json: String {
            var out = "{\"lines\":\(lines),\"decoded\":\(decoded),\"kept\":\(kept),\"shards\":\(shards)"
            out += ",\"input_bytes\":\(inputBytes),\"text_bytes\":\(textBytes),\"stored_bytes\":\(storedBytes)"
            out += String(format: ",\"seconds\":%.3f,\"mb_per_s\":%.2f,\"docs_per_s\":%.0f", seconds,
                seconds > 0 ? Double(textBytes) / seconds / 1e6 : 0, seconds > 0 ? Double(decoded) / seconds : 0)
            out += ",\"dropped\":{"
            out += dropped.sorted { $0.key < $1.key }.map { stage, reasons in
                JSONText.string(stage) + ":{" + reasons.sorted { $0.key < $1.key }.map { JSONText.string($0.key) + ":\($0.value)" }
                    .joined(separator: ",") + "}"
            }.joined(separator: ",")
            out += "}"
            if !stageSeconds.isEmpty {
                out += ",\"stage_seconds\":{"
                out += stageSeconds.map { JSONText.string($0.stage) + String(format: ":%.3f", $0.seconds) }.joined(separator: ",")
                out += "}"
            }
            return out + "}"
        }
    }

    /// Progress callback: lines read so far and input bytes.
    public typealias Progress = @Sendable (_ lines: Int, _ bytes: Int) -> Void

    /// Runs the whole input. `datasetName` names the shards (`<name>+<first line>`).
    /// - Throws: ``ShardError`` for index or file failures, ``ConfigError`` for settings.
    public func run(
        input: LineSource, datasetName: String, overwrite: Bool, progress: Progress? = nil
    ) throws -> Summary {
        try prepareOutput(overwrite: overwrite)
        // A bulk load: every shard's rows go in one large transaction, which larger pages make cheaper.
        let index = try ShardIndex(path: output.appendingPathComponent("index.sqlite").path, pageSize: 16384)
        try index.registerDataset(name: datasetName, input: input.name, config: nil, now: Date())
        let store = try DedupStore(writer: index.writer, configuration: configuration.dedup)
        var dedup = try Deduplicator(configuration.dedup, index: try store.load())
        let compressor = FrameCompressor(level: configuration.shards.compressionLevel)
        defer { compressor.close() }
        let writer = ShardWriter(directory: output, configuration: configuration.shards, compressor: compressor)
        // The open shard's rows go into the index as its frames are written, in a transaction committed at the seal.
        let recorder = ShardRecorder(index: index, dataset: datasetName)
        defer { recorder.close() }
        let rejected = try RejectedLog(url: output.appendingPathComponent("rejected.jsonl"))
        var summary = Summary()
        let clock = ContinuousClock()
        let started = clock.now

        let workers = max(1, configuration.workers)
        var configuration = configuration
        if let perplexity = configuration.perplexity {
            guard let path = perplexity.model else {
                throw TrainError("perplexity.model must name a model for sluice curate (models_topic is for the streaming pipeline)")
            }
            configuration.modelSlot = ModelSlot(try ScoringModel.load(path, referencePerplexity: perplexity.referencePerplexity))
        } else {
            stopIdleBLASThreads()  // their start-up spinning would take CPU from the stages
        }
        let boxes = try (0..<workers).map { _ in
            var stages = try WorkerStages(configuration)
            stages.stageNanoseconds = [UInt64](repeating: 0, count: WorkerStages.timedStages.count)
            return StageBox(stages)
        }
        var dedupNanoseconds: UInt64 = 0
        var writeNanoseconds: UInt64 = 0
        let results = NumberedResults<[WorkerResult]>()
        // Batch n goes to worker n mod workers: the clean stage's repeated-line evidence depends on which
        // documents a worker saw before, so a fixed assignment keeps the output a function of the input alone.
        let queues = boxes.map { _ in BatchQueue(capacity: inFlightPerWorker) }
        let finished = DispatchSemaphore(value: 0)
        let threads = zip(boxes, queues).map { box, work in
            let thread = Thread {
                while let (number, batch) = work.take() { results.put(number, box.process(batch)) }
                finished.signal()
            }
            thread.name = "sluice.curate.worker"
            thread.start()
            return thread
        }
        defer { for work in queues { work.close() } }
        _ = threads
        var submitted = 0
        var consumed = 0
        var dedupSent = dedup.index.count

        var mark: UInt64 = 0
        func lap(_ total: inout UInt64) {
            let now = monotonicNanoseconds()
            total &+= now &- mark
            mark = now
        }

        func consume(_ batch: inout [WorkerResult]) throws {
            mark = monotonicNanoseconds()
            defer {
                recorder.update(from: writer)
                // The open shard's dedup entries join its transaction as they come, not all at the seal.
                if dedup.index.count > dedupSent {
                    let entries = dedup.index.entryBlock(from: dedupSent)
                    dedupSent = dedup.index.count
                    recorder.append { db in try DedupStore.write(entries, in: db) }
                }
                lap(&writeNanoseconds)
            }
            // Each result is moved out of the array, a placeholder without storage left in its place, rather than
            // copied out: a copy retains every string and array it holds, and the array's release then releases
            // them again.
            try batch.withUnsafeMutableBufferPointer { buffer in
                for index in buffer.indices {
                    let slot = buffer.baseAddress! + index
                    // The next document's dedup probes miss the cache: start them now, to overlap with this one.
                    if index + 1 < buffer.count, let fingerprint = slot[1].fingerprint { dedup.prefetch(fingerprint) }
                    let result = slot.move()
                    slot.initialize(to: WorkerResult.drained)
                    try handle(result)
                }
            }
        }

        func handle(_ result: consuming WorkerResult) throws {
            summary.lines += 1
            switch consume result {
            case .rejected(let line, let id, let stage, let reason, let detail, _):
                if stage != "decode" { summary.decoded += 1 }
                summary.textBytes += detail.textBytes
                summary.drop(stage, reason)
                rejected.append(line: line, id: id, stage: stage, reason: reason, extra: detail.json)
            case .kept(let line, var document, let fingerprint, let textBytes, let prepared, _):
                summary.decoded += 1
                summary.textBytes += textBytes
                lap(&writeNanoseconds)
                let verdict = dedup.decide(&document, fingerprint: fingerprint)
                lap(&dedupNanoseconds)
                if case .drop(let reason) = verdict {
                    summary.drop("dedup", reason)
                    let similarity = document.signals["dedup.similarity"] ?? 0
                    rejected.append(
                        line: line, id: document.id, stage: "dedup", reason: reason,
                        extra: ",\"duplicate_of\":\(JSONText.string(document.duplicateOf ?? ""))"
                            + ",\"similarity\":" + JSONText.fixed(similarity, digits: 3))
                    return
                }
                summary.kept += 1
                let sealed = try writer.add(
                    prepared, position: "\(datasetName)+\(Self.padded(line))",
                    now: (clock.now - started).inSeconds)
                if let sealed { try record(sealed) }
            }
        }

        func record(_ sealed: SealedShard) throws {
            let entries = dedup.index.entryBlock(from: dedupSent)
            try recorder.finish(sealed) { db in try DedupStore.write(entries, in: db) }
            dedup.index.commitPending()
            dedupSent = dedup.index.count
            summary.shards += 1
            summary.storedBytes += sealed.storedBytes
        }

        while let batch = try input.nextBatch(maximumLines: batchSize) {
            summary.inputBytes += batch.bytes
            progress?(input.linesRead, input.bytesRead)
            let number = submitted
            submitted += 1
            // Waits while the queue is full, consuming finished batches meanwhile.
            while !queues[number % workers].offer((number, batch), waitSeconds: 0.002) {
                while var ready = results.take(consumed, wait: false) {
                    try consume(&ready)
                    consumed += 1
                }
            }
            while var ready = results.take(consumed, wait: false) {
                try consume(&ready)
                consumed += 1
            }
        }
        while consumed < submitted {
            var ready = results.take(consumed, wait: true)!
            try consume(&ready)
            consumed += 1
        }
        if let sealed = try writer.seal(now: (clock.now - started).inSeconds) { try record(sealed) }
        try rejected.close()
        try WIDSExport.write(index: index, to: output.appendingPathComponent("wids.json"))
        summary.seconds = (clock.now - started).inSeconds
        for work in queues { work.close() }
        for _ in threads { finished.wait() }  // the workers' timings are read after they stopped
        var spent = [UInt64](repeating: 0, count: WorkerStages.timedStages.count)
        for box in boxes { for (i, n) in (box.stages.stageNanoseconds ?? []).enumerated() { spent[i] &+= n } }
        summary.stageSeconds = zip(WorkerStages.timedStages, spent).map { ($0, Double($1) / 1e9) }
            + [("dedup", Double(dedupNanoseconds) / 1e9), ("write", Double(writeNanoseconds) / 1e9)]
        return summary
    }

    /// Refuses a directory that already holds a dataset unless `overwrite`; removes leftovers of a crash.
    private func prepareOutput(overwrite: Bool) throws(ShardError) {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: output.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ShardError.make(.alreadyExists, "\(output.path) is a file, not a directory") }
            let existing = (try? manager.contentsOfDirectory(atPath: output.path)) ?? []
            let ours = existing.filter { $0.hasPrefix("index.sqlite") || $0.hasSuffix(".tar") || $0.hasSuffix(".tar.zst") || $0 == "rejected.jsonl" || $0 == "wids.json" || $0.hasSuffix(".tmp") }
            if !ours.isEmpty {
                guard overwrite else {
                    throw ShardError.make(.alreadyExists, "\(output.path) already holds a dataset; pass --overwrite to replace it")
                }
                for name in ours { try? manager.removeItem(at: output.appendingPathComponent(name)) }
            }
        } else {
            do { try manager.createDirectory(at: output, withIntermediateDirectories: true) } catch {
                throw ShardError.make(.io, "cannot create \(output.path): \(error.localizedDescription)")
            }
        }
        ShardWriter.removeTemporaryFiles(in: output)
    }

    /// `line` in decimal, zero-padded to 10 digits (a sample key; more digits when it has more).
    static func padded(_ line: Int) -> String {
        guard line >= 0 && line < 10_000_000_000 else {
            let digits = String(line)
            return String(repeating: "0", count: max(0, 10 - digits.count)) + digits
        }
        // Ten ASCII digits fit a small string: no allocation, no intermediate strings.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 10) { digits in
            var rest = line
            for index in stride(from: 9, through: 0, by: -1) {
                digits[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
                rest /= 10
            }
            return String(decoding: UnsafeBufferPointer(digits), as: UTF8.self)
        }
    }
}

extension Duration {
    /// The duration in seconds, for throughput figures.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// One worker's stages; used by one batch at a time (its serial queue).
final class StageBox: @unchecked Sendable {
    // @unchecked: only the worker's serial DispatchQueue touches `stages`.
    var stages: WorkerStages
    init(_ stages: WorkerStages) { self.stages = stages }
    func process(_ batch: LineBatch) -> [WorkerResult] { stages.process(batch) }
}

/// What a worker produced for one line.
enum WorkerResult: @unchecked Sendable {
    // @unchecked: values are built on a worker and handed over once through NumberedResults' lock.

    /// What a consumed result leaves in its batch: nothing that holds storage.
    static var drained: WorkerResult { .rejected(line: 0, id: nil, stage: "", reason: "", detail: ("", 0)) }

    /// The dedup fingerprint of a kept document (read in place: the rest of the result is not copied).
    var fingerprint: Deduplicator.Fingerprint? {
        switch self {
        case .kept(_, _, let fingerprint, _, _, _): fingerprint
        case .rejected: nil
        }
    }
    case rejected(line: Int, id: String?, stage: String, reason: String, detail: (json: String, textBytes: Int), profile: RecordProfile? = nil)
    case kept(line: Int, Document, Deduplicator.Fingerprint, textBytes: Int, prepared: PreparedSample, profile: RecordProfile? = nil)
}

/// The stage chain of one worker, up to the dedup fingerprint.
struct WorkerStages {
    var decoder: EnvelopeDecoder
    var cleaner: Cleaner
    var desensitizer: Desensitizer
    var quality: QualityFilter
    var fingerprinter: Deduplicator
    var perplexity: PerplexityScorer?
    let encoder: SampleEncoder
    /// The shadow rule set's stages (tag-only), when configured.
    var shadowDesensitizer: Desensitizer?
    var shadowQuality: QualityFilter?
    /// Whether results carry a ``RecordProfile`` (the streaming pipeline's assessment, shadow rules, quarantine).
    var profiles = false
    let quarantine: QuarantineConfiguration?
    /// The ``PipelineVersion`` stamped on every sample.
    let pipeline: String
    /// When set, nanoseconds spent per stage (decode, clean, desensitize, quality, fingerprint, encode) accumulate
    /// here.
    var stageNanoseconds: [UInt64]?
    static let timedStages = ["decode", "clean", "desensitize", "quality", "fingerprint", "encode"]

    private mutating func lap(_ stage: Int, _ mark: inout UInt64) {
        guard stageNanoseconds != nil else { return }
        let now = monotonicNanoseconds()
        stageNanoseconds![stage] &+= now &- mark
        mark = now
    }

    init(_ configuration: CurateConfiguration) throws {
        encoder = SampleEncoder(configuration: configuration.shards)
        pipeline = PipelineVersion.of(configuration)
        quarantine = configuration.quarantine
        if let shadow = configuration.shadowRules {
            shadowDesensitizer = try Desensitizer(shadow.desensitizer ?? configuration.desensitizer)
            shadowQuality = QualityFilter(shadow.quality ?? configuration.quality)
        }
        decoder = configuration.decoder
        cleaner = Cleaner(configuration.cleaner)
        desensitizer = try Desensitizer(configuration.desensitizer)
        quality = QualityFilter(configuration.quality)
        fingerprinter = try Deduplicator(configuration.dedup)
        if let settings = configuration.perplexity, let slot = configuration.modelSlot {
            perplexity = PerplexityScorer(configuration: settings, slot: slot)
        }
    }

    mutating func process(_ batch: LineBatch) -> [WorkerResult] {
        var out: [WorkerResult] = []
        out.reserveCapacity(batch.lines.count)
        batch.data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            for (number, range) in zip(batch.firstLine..., batch.lines) {
                var line = UnsafeBufferPointer(rebasing: bytes[range])
                if line.last == 0x0D { line = UnsafeBufferPointer(rebasing: line.dropLast()) }
                guard !line.isEmpty else {
                    out.append(.rejected(line: number, id: nil, stage: "decode", reason: "empty_line", detail: ("", 0)))
                    continue
                }
                out.append(process(line, number: number, origin: .line(number), format: decoder.format))
            }
        }
        return out
    }

    /// Runs one record through decode → clean → desensitize → quality → fingerprint and prepares its sample.
    /// `number` is echoed in the result; `origin` names the sample and fills its position fields; `source` (a
    /// record's `source` header) stands in for an envelope without one.
    mutating func process(
        _ bytes: UnsafeBufferPointer<UInt8>, number: Int, origin: SampleOrigin, format: EnvelopeDecoder.Format,
        source: String? = nil, reviewed: Bool = false
    ) -> WorkerResult {
        if decoder.format != format { decoder.format = format }
        var mark = stageNanoseconds == nil ? 0 : monotonicNanoseconds()
        var document: Document
        defer { lap(5, &mark) }
        let decoded = decoder.decode(bytes)
        lap(0, &mark)
        switch decoded {
        case .failure(let failure):
            return .rejected(line: number, id: nil, stage: "decode", reason: failure.reason.rawValue, detail: ("", 0), profile: profiles ? RecordProfile() : nil)
        case .success(let decoded):
            document = decoded
        }
        if document.source == nil, let source { document.source = source }
        var profile = profiles ? RecordProfile(document) : nil
        if document.id == nil, case .kafka(let topic, let partition, let offset) = origin {
            document.id = "\(topic)/\(partition)/\(offset)"
        }
        let textBytes = document.text.count
        var shadowCopy: Document?
        for stage in 0..<3 {
            let verdict: StageVerdict
            let name: String
            switch stage {
            case 0: (verdict, name) = (cleaner.process(&document), "clean")
            case 1: (verdict, name) = (desensitizer.process(&document), "desensitize")
            default: (verdict, name) = (quality.process(&document), "quality")
            }
            lap(1 + stage, &mark)
            if stage == 0, shadowQuality != nil, case .keep = verdict { shadowCopy = document }
            if profile != nil {
                if stage == 1 { profile!.pii = document.signals.values.reduce(0) { $0 + ($1.0.hasPrefix("pii.") ? Int($1.1) : 0) } }
                if stage == 2 {
                    profile!.language = document.language
                    profile!.quality = document.signals["quality.score"]
                }
            }
            if stage == 2, !reviewed, let quarantine, let score = document.signals["quality.score"],
                score >= quarantine.qualityScoreMin && score <= quarantine.qualityScoreMax
            {
                // Borderline: neither kept nor dropped; a reviewer decides (sluice review).
                profile?.shadow = shadowVerdict(shadowCopy, activeDrop: nil)
                return .rejected(
                    line: number, id: document.id, stage: "quarantine", reason: "quality_borderline",
                    detail: (",\"score\":" + JSONText.fixed(score, digits: 3), textBytes), profile: profile)
            }
            if case .drop(let reason) = verdict, !(reviewed && stage == 2) {
                let score = document.signals["quality.score"].map { ",\"score\":" + JSONText.fixed($0, digits: 3) } ?? ""
                profile?.shadow = shadowVerdict(shadowCopy, activeDrop: stage == 0 ? "clean/\(reason)" : nil)
                return .rejected(line: number, id: document.id, stage: name, reason: reason, detail: (score, textBytes), profile: profile)
            }
        }
        profile?.shadow = shadowVerdict(shadowCopy, activeDrop: nil)
        if perplexity != nil {
            switch perplexity!.judge(document.text) {
            case .drop(let perplexity, let limit):
                let detail = ",\"perplexity\":" + JSONText.fixed(perplexity, digits: 2) + ",\"limit\":" + JSONText.fixed(limit, digits: 2)
                return .rejected(
                    line: number, id: document.id, stage: "perplexity", reason: "perplexity_above_limit", detail: (detail, textBytes), profile: profile)
            case .keep(let perplexity):
                document.signals.set("perplexity", perplexity)
            case .unscored:
                break
            }
        }
        let print = fingerprinter.fingerprint(of: document)
        lap(4, &mark)
        document.dedupText = nil  // compared already; not carried further
        // Tar members and the zstd frame are built here, on the worker; a duplicate's are thrown away by the
        // writing thread.
        let sample = SampleJSON.sample(document, origin: origin, pipeline: pipeline)
        guard let prepared = try? encoder.prepare(sample, mtime: SampleJSON.mtime(document.timestamp)) else {
            return .rejected(line: number, id: document.id, stage: "shards", reason: "encode_failed", detail: ("", textBytes), profile: profile)
        }
        // The text lives on in the sample's members; the writing thread decides on hashes, id and signals.
        if document.rawTextHash == nil { document.rawTextHash = ContentHash(document.text).value }
        document.text = []
        document.metaJSON = nil
        return .kept(line: number, document, print, textBytes: textBytes, prepared: prepared, profile: profile)
    }

    /// Where the shadow rules would drop a record (`stage/reason`), given the document as the active clean stage
    /// left it; nil when they would keep it (dedup is judged later, by the sink) or there are no shadow rules.
    private mutating func shadowVerdict(_ cleaned: Document?, activeDrop: String?) -> String? {
        guard shadowQuality != nil else { return nil }
        if let activeDrop { return activeDrop }  // the clean stage is shared
        guard var copy = cleaned else { return nil }
        if case .drop(let reason) = shadowDesensitizer!.process(&copy) { return "desensitize/\(reason)" }
        if case .drop(let reason) = shadowQuality!.process(&copy) { return "quality/\(reason)" }
        return nil
    }
}

/// Numbered batches waiting for a worker: bounded, first in first out.
final class BatchQueue: @unchecked Sendable {
    // @unchecked: every access goes through `condition`.
    private let condition = NSCondition()
    private var items: [(Int, LineBatch)] = []  // at most `capacity`: removing the first is cheap
    private var closed = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Adds a batch unless the queue stays full for `waitSeconds`; false then.
    func offer(_ item: (Int, LineBatch), waitSeconds: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: waitSeconds)
        while items.count >= capacity {
            if !condition.wait(until: deadline) { return false }
        }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// The next batch, waiting for one; nil once closed and drained.
    func take() -> (Int, LineBatch)? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        guard !items.isEmpty else { return nil }
        let item = items.removeFirst()
        condition.broadcast()
        return item
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
