internal import Foundation
internal import Logging
internal import SluiceKafka
internal import SluiceShards
internal import SluiceText
internal import CoreMetrics
internal import GRDB

/// The single-threaded end of the streaming pipeline: dedup decisions, one shard writer per assigned partition,
/// checkpoints (seal → index transaction → announce → commit).
///
/// Confined to the pipeline's sink queue: every method runs there.
final class PipelineSink: @unchecked Sendable {
    // @unchecked: confined to the sink queue (see the type's documentation).
    private let configuration: PipelineConfiguration
    private let index: ShardIndex
    private var dedup: Deduplicator
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    private let health: PipelineHealth
    private let logger: Logger
    private var partitions: [TopicPartition: PartitionState] = [:]
    /// Dedup entries of open shards given up when their partition was lost: never durable, so the same records
    /// read again are replays, not duplicates.
    private var abandoned: Set<Int> = []
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    /// The first fatal error; once set, nothing more is written or committed.
    private(set) var failure: (any Error)?
    /// Checkpoints whose announcements are queued in the producer.
    private var announcing: [Int64] = []
    private var failedDeliveriesSeen = 0
    private var lastDedupGauge = ContinuousClock.now
    private var firstRecordAt: ContinuousClock.Instant?
    private var lastCheckpointAt: ContinuousClock.Instant?

    /// From the first record applied to the last checkpoint.
    var processingSeconds: Double {
        guard let first = firstRecordAt, let last = lastCheckpointAt, last > first else { return 0 }
        return (last - first).inSeconds
    }

    private let metrics: Metrics
    /// Totals since start, for the summary.
    private(set) var summary = StreamingPipeline.Summary()

    /// One partition's open checkpoint.
    final class PartitionState {
        let writer: ShardWriter
        /// Records below this offset are already in a checkpoint (a replay after a crash): skipped.
        var skipBelow: Int64
        /// Where the first record should be (the committed offset or the index's mark); a later first record
        /// means retention deleted the records between (reported in skip mode).
        var expectedStart: Int64?
        var firstOffset: Int64?
        var nextOffset: Int64 = 0
        var openedAt: ContinuousClock.Instant?
        var records = 0
        var kept = 0
        var rejected: [RejectedRecord] = []
        /// Positions in the dedup index of the documents this checkpoint keeps.
        var dedupEntries: [Int] = []
        /// Assessment counts by window and source, and shadow-rule comparisons, recorded with the checkpoint.
        var quality: [QualityKey: SourceCounts] = [:]
        var shadow: [ShadowKey: Int] = [:]

        init(writer: ShardWriter, skipBelow: Int64) {
            self.writer = writer
            self.skipBelow = skipBelow
        }

        func reset() {
            firstOffset = nil
            openedAt = nil
            records = 0
            kept = 0
            rejected.removeAll(keepingCapacity: true)
            dedupEntries.removeAll(keepingCapacity: true)
            quality.removeAll()
            shadow.removeAll()
        }
    }

    struct Metrics {
        let recordsIn = Counter(label: "sluice_records_in_total")
        let recordsOut = Counter(label: "sluice_records_out_total")
        let replaySkipped = Counter(label: "sluice_records_replay_skipped_total")
        let dlq = Counter(label: "sluice_dlq_records_total")
        let dlqFailures = Counter(label: "sluice_dlq_failures_total")
        let shardsSealed = Counter(label: "sluice_shards_sealed_total")
        let bytesWritten = Counter(label: "sluice_shard_bytes_written_total")
        let checkpoints = Counter(label: "sluice_checkpoints_total")
        let commitFailures = Counter(label: "sluice_commit_failures_total")
        let sealSeconds = Timer(label: "sluice_seal_seconds")
        /// The sink's share of a record: dedup decision and shard write, checkpoints included (mean over a batch).
        let sinkSeconds = Timer(label: "sluice_stage_seconds", dimensions: [("stage", "dedup_and_write")])
        let dedupDocuments = Gauge(label: "sluice_dedup_index_documents")
        let dedupBytes = Gauge(label: "sluice_dedup_index_bytes")
        let openPartitions = Gauge(label: "sluice_open_partitions")

    }

    /// One counter per stage and reason, made the first time that pair drops a record.
    private var dropCounters: [String: Counter] = [:]

    private func countDrop(_ stage: String, _ reason: String) {
        let key = stage + "/" + reason
        if let counter = dropCounters[key] { return counter.increment() }
        let counter = Counter(label: "sluice_records_dropped_total", dimensions: [("stage", stage), ("reason", reason)])
        dropCounters[key] = counter
        counter.increment()
    }

    init(
        configuration: PipelineConfiguration, index: ShardIndex, dedup: Deduplicator, consumer: KafkaConsumer,
        producer: KafkaProducer, health: PipelineHealth, logger: Logger
    ) {
        self.configuration = configuration
        self.index = index
        self.dedup = dedup
        self.consumer = consumer
        self.producer = producer
        self.health = health
        self.logger = logger
        started = clock.now
        compressor = FrameCompressor(level: configuration.stages.shards.compressionLevel)
        metrics = Metrics()
        metrics.dedupDocuments.record(dedup.index.count)
        let known = (try? index.assessmentBaseline()) ?? (fields: [], sources: [], languages: [])
        monitor = QualityMonitor(
            configuration: configuration.stages.assessment, knownFields: known.fields, knownSources: known.sources, knownLanguages: known.languages)
        if let threshold = configuration.stages.shadowRules?.dedupThreshold {
            var shadowConfiguration = configuration.stages.dedup
            shadowConfiguration.threshold = threshold
            shadowDedup = try? Deduplicator(shadowConfiguration)
        }
        shadowEnabled = configuration.stages.shadowRules != nil
    }

    deinit { compressor.close() }

    /// Compresses every partition's zstd frames on one thread with one context: a context per open shard would
    /// hold a megabyte or two of tables each.
    private let compressor: FrameCompressor
    /// The data-quality assessment's rolling windows and alerts.
    private let monitor: QualityMonitor
    /// The shadow rule set's dedup (its own in-memory index over the same documents), and whether shadow rules run.
    private var shadowDedup: Deduplicator?
    private let shadowEnabled: Bool
    private var qualityGauges: [String: Gauge] = [:]
    private var shadowCounters: [String: Counter] = [:]

    /// Counts a record in the assessment and the shadow comparison of its partition's open checkpoint.
    private func assess(_ record: KafkaRecord, profile: RecordProfile?, active: String, shadow: String?, state: PartitionState) {
        guard let profile else { return }
        let seen = Date().timeIntervalSince1970
        let outcome = monitor.observe(profile, dropped: active != "kept" && active != "quarantine", quarantined: active == "quarantine", now: seen)
        state.quality[QualityKey(window: outcome.window, source: profile.source ?? "unknown"), default: SourceCounts()].add(outcome.counts)
        for alert in outcome.alerts { raise(alert) }
        guard shadowEnabled else { return }
        let shadowVerdict = shadow ?? "kept"
        state.shadow[ShadowKey(source: profile.source ?? "unknown", language: profile.language ?? "unknown", active: active, shadow: shadowVerdict), default: 0] += 1
        let kind = shadowVerdict == active ? "agree" : active == "kept" ? "would_drop" : shadowVerdict == "kept" ? "would_keep" : "other_reason"
        let key = kind + "\t" + (kind == "would_drop" ? shadowVerdict : kind == "would_keep" ? active : "")
        if let counter = shadowCounters[key] { return counter.increment() }
        let parts = key.split(separator: "\t", omittingEmptySubsequences: false)
        let counter = Counter(label: "sluice_shadow_decisions_total", dimensions: [("comparison", String(parts[0])), ("rule", String(parts[1]))])
        shadowCounters[key] = counter
        counter.increment()
    }

    /// An alert: logged, counted, and sent to the alerts topic (best effort: an alert lost to a broker outage
    /// is still in the log and the metrics).
    private func raise(_ alert: QualityMonitor.Alert) {
        logger.warning("data-quality alert", metadata: ["kind": "\(alert.kind)", "source": "\(alert.source)", "detail": "\(alert.detail)"])
        Counter(label: "sluice_quality_alerts_total", dimensions: [("kind", alert.kind), ("source", alert.source)]).increment()
        try? producer.enqueue(ProducerMessage(topic: configuration.alertsTopic, key: Array(alert.source.utf8), value: Array(alert.json.utf8)))
    }

    private func updateQualityGauges() {
        for (source, rates) in monitor.latestRates {
            for (rate, value) in rates {
                let key = source + "\t" + rate
                let gauge = qualityGauges[key] ?? Gauge(label: "sluice_quality_\(rate)", dimensions: [("source", source)])
                qualityGauges[key] = gauge
                gauge.record(value)
            }
        }
    }

    /// Sends a borderline record's original bytes to the quarantine topic with its position, reason and score.
    private func quarantine(_ record: KafkaRecord, reason: String, score: Double?) {
        var headers = record.headers.filter { !$0.name.hasPrefix("sluice.") }
        headers.append(KafkaHeader(name: "sluice.source.topic", string: record.topic))
        headers.append(KafkaHeader(name: "sluice.source.partition", string: "\(record.partition)"))
        headers.append(KafkaHeader(name: "sluice.source.offset", string: "\(record.offset)"))
        headers.append(KafkaHeader(name: "sluice.reason", string: reason))
        if let score { headers.append(KafkaHeader(name: "sluice.score", string: JSONText.fixed(score, digits: 3))) }
        do {
            try producer.enqueueBlocking(ProducerMessage(topic: configuration.quarantineTopic, key: record.key, value: record.value, headers: headers))
        } catch {
            logger.warning("could not send a record to quarantine; its audit row is in the index", metadata: ["offset": "\(record.offset)", "error": "\(error)"])
        }
    }

    private var now: Double { (clock.now - started).inSeconds }


    // MARK: Lifecycle

    /// Re-announces checkpoints a crash left unannounced.
    func start() throws {
        let pending = try index.unannouncedCheckpoints(dataset: configuration.dataset)
        if !pending.isEmpty {
            logger.info("re-announcing checkpoints recorded before a restart", metadata: ["count": "\(pending.count)"])
        }
        for id in pending { try announce(id) }
    }

    /// New partitions: each resumes after its highest checkpoint; leftovers of a crashed writer are removed.
    func assign(_ assigned: [TopicPartition], committed: [TopicPartition: Int64?] = [:]) throws {
        guard failure == nil else { return }
        var marks: [String: [Int32: Int64]] = [:]
        for partition in assigned {
            if marks[partition.topic] == nil { marks[partition.topic] = try index.highWaterMarks(topic: partition.topic) }
            let mark = marks[partition.topic]?[partition.partition] ?? 0
            ShardWriter.removeTemporaryFiles(in: configuration.outputDirectory, prefix: Self.shardPrefix(partition))
            var shards = configuration.stages.shards
            shards.maximumAge = nil  // the sink seals by age itself, also when no record arrives
            let state = PartitionState(
                writer: ShardWriter(directory: configuration.outputDirectory, configuration: shards, compressor: compressor),
                skipBelow: mark)
            let known = [marks[partition.topic]?[partition.partition], committed[partition] ?? nil].compactMap { $0 }
            state.expectedStart = known.max()
            partitions[partition] = state
            logger.info("partition assigned", metadata: ["partition": "\(partition)", "resume_at": "\(mark)"])
        }
        health.noteAssigned(assigned, positions: Dictionary(uniqueKeysWithValues: assigned.map { ($0, partitions[$0]!.skipBelow) }))
        metrics.openPartitions.record(partitions.count)
    }

    /// Partitions leave: revoked ones checkpoint first; lost ones (another member may own them already) are
    /// abandoned without writing anything.
    func release(_ released: [TopicPartition], lost: Bool) {
        for partition in released {
            guard let state = partitions[partition] else { continue }
            if !lost && failure == nil {
                checkpoint(partition, state, sealed: nil, reason: "revocation")
            } else if state.records > 0 {
                abandoned.formUnion(state.dedupEntries)
                logger.warning(
                    "partition lost with an open shard; the new owner re-reads it",
                    metadata: ["partition": "\(partition)", "records": "\(state.records)"])
            }
            partitions[partition] = nil
        }
        health.forget(released)
        metrics.openPartitions.record(partitions.count)
    }

    /// Checkpoints every partition that holds records (shutdown).
    func checkpointAll(reason: String) {
        for (partition, state) in partitions.sorted(by: { $0.key.description < $1.key.description }) {
            guard failure == nil else { return }
            checkpoint(partition, state, sealed: nil, reason: reason)
        }
    }

    /// Seals partitions whose open checkpoint is older than the configured latency; marks delivered announcements.
    func tick() {
        guard failure == nil else { return }
        let limit = Duration.milliseconds(Int64(configuration.sealAfterSeconds * 1000))
        let current = clock.now
        for (partition, state) in partitions {
            if let opened = state.openedAt, current - opened >= limit {
                checkpoint(partition, state, sealed: nil, reason: "age")
            }
        }
        markDeliveredAnnouncements()
        if current - lastDedupGauge > .seconds(5) {
            lastDedupGauge = current
            updateQualityGauges()
            metrics.dedupDocuments.record(dedup.index.count)
            metrics.dedupBytes.record(dedup.index.memoryBytes)
        }
    }

    // MARK: Records

    /// Applies one batch's worker results, in consumption order.
    func apply(_ records: [KafkaRecord], _ results: [WorkerResult]) {
        guard failure == nil else { return }
        let began = clock.now
        if firstRecordAt == nil && !records.isEmpty { firstRecordAt = began }
        defer {
            if !records.isEmpty {
                metrics.sinkSeconds.recordSeconds((clock.now - began).inSeconds / Double(records.count))
            }
        }
        var positions: [TopicPartition: Int64] = [:]
        for (record, result) in zip(records, results) {
            let partition = record.topicPartition
            guard let state = partitions[partition] else { continue }  // revoked while in flight
            if let expected = state.expectedStart {
                state.expectedStart = nil
                if record.offset > expected { reportDataLoss(partition, from: expected, to: record.offset) }
            }
            guard record.offset >= state.skipBelow else {
                summary.replaySkipped += 1
                metrics.replaySkipped.increment()
                continue
            }
            metrics.recordsIn.increment()
            summary.records += 1
            if state.firstOffset == nil {
                state.firstOffset = record.offset
                state.openedAt = clock.now
            }
            state.records += 1
            state.nextOffset = record.offset + 1
            positions[partition] = record.offset + 1
            do {
                try handle(record, result, partition: partition, state: state)
            } catch {
                fail(error)
                return
            }
        }
        health.noteRecords(positions: positions)
    }

    private func handle(_ record: KafkaRecord, _ result: WorkerResult, partition: TopicPartition, state: PartitionState) throws {
        // A replayed record's audit rows name its original position, so lineage finds what became of the replay.
        let replayNote = record.headers.isEmpty ? nil : record.headers.first { $0.name == ReplayHeader.name }?.value.map {
            ",\"replay_of\":" + JSONText.string(String(decoding: $0, as: UTF8.self))
        }
        switch result {
        case .rejected(_, let id, let stage, let reason, let detail, let profile):
            summary.textBytes += detail.textBytes
            if stage == "decode" { deadLetter(record, reason: reason) }
            if stage == "quarantine" { quarantine(record, reason: reason, score: profile?.quality) }
            assess(record, profile: profile, active: stage == "quarantine" ? "quarantine" : "\(stage)/\(reason)", shadow: profile?.shadow, state: state)
            summary.rejected += 1
            countDrop(stage, reason)
            var extra = detail.json.hasPrefix(",") ? String(detail.json.dropFirst()) : detail.json
            if let replayNote { extra += extra.isEmpty ? String(replayNote.dropFirst()) : replayNote }
            state.rejected.append(RejectedRecord(offset: record.offset, id: id, stage: stage, reason: reason, detail: extra))
        case .kept(_, var document, let fingerprint, let textBytes, let prepared, let profile):
            summary.textBytes += textBytes
            var shadowVerdict = profile?.shadow
            if shadowVerdict == nil, shadowDedup != nil {
                var copy = document
                if case .drop(let reason) = shadowDedup!.decide(&copy, fingerprint: fingerprint) { shadowVerdict = "dedup/\(reason)" }
            }
            let before = dedup.index.count
            var verdict = dedup.decide(&document, fingerprint: fingerprint)
            var replayOf: Int?
            if document.signals["dedup.replay"] == 1, let match = dedup.index.lastReplay {
                // Records already checkpointed are skipped before this point, so a document whose id is already
                // kept is the source sending it again, unless it was kept in a shard given up with a lost partition.
                if abandoned.contains(match) {
                    replayOf = match
                } else {
                    document.duplicateOf = document.id
                    document.signals.set("dedup.similarity", 1)
                    verdict = .drop(reason: "duplicate")
                }
            }
            assess(record, profile: profile, active: { if case .drop(let reason) = verdict { "dedup/\(reason)" } else { "kept" } }(), shadow: shadowVerdict, state: state)
            if case .drop(let reason) = verdict {
                countDrop("dedup", reason)
                summary.rejected += 1
                let similarity = document.signals["dedup.similarity"] ?? 0
                state.rejected.append(
                    RejectedRecord(
                        offset: record.offset, id: document.id, stage: "dedup", reason: reason,
                        detail: "\"duplicate_of\":\(JSONText.string(document.duplicateOf ?? ""))"
                            + ",\"similarity\":" + JSONText.fixed(similarity, digits: 3) + (replayNote ?? "")))
                break
            }
            if dedup.index.count > before { state.dedupEntries.append(before) }
            if let replayOf {
                abandoned.remove(replayOf)
                state.dedupEntries.append(replayOf)
            }
            state.kept += 1
            summary.kept += 1
            metrics.recordsOut.increment()
            let name = Self.shardName(partition, firstOffset: state.firstOffset ?? record.offset)
            if let sealed = try state.writer.add(prepared, position: name, now: now) {
                checkpoint(partition, state, sealed: sealed, reason: "size")
                return
            }
        }
        if state.records >= configuration.maxRecordsPerCheckpoint {
            checkpoint(partition, state, sealed: nil, reason: "records")
        }
    }

    /// Sends an undecodable record's original bytes to the DLQ topic with its position and the reason. A value
    /// larger than the producer may send (`message.max.bytes`) goes truncated, with `sluice.truncated` holding the
    /// original length; a record the producer refuses is logged and counted, never fatal: its audit row is in the
    /// index either way.
    private func deadLetter(_ record: KafkaRecord, reason: String) {
        metrics.dlq.increment()
        summary.deadLettered += 1
        var headers = record.headers
        headers.append(KafkaHeader(name: "sluice.source.topic", string: record.topic))
        headers.append(KafkaHeader(name: "sluice.source.partition", string: "\(record.partition)"))
        headers.append(KafkaHeader(name: "sluice.source.offset", string: "\(record.offset)"))
        headers.append(KafkaHeader(name: "sluice.stage", string: "decode"))
        headers.append(KafkaHeader(name: "sluice.reason", string: reason))
        var value = record.value
        if let original = value, original.count > dlqValueLimit {
            value = Array(original.prefix(dlqValueLimit))
            headers.append(KafkaHeader(name: "sluice.truncated", string: "\(original.count)"))
        }
        do {
            try producer.enqueueBlocking(
                ProducerMessage(topic: configuration.dlqTopic, key: record.key, value: value, headers: headers))
        } catch {
            metrics.dlqFailures.increment()
            logger.warning(
                "could not send a record to the DLQ; its audit row is in the index",
                metadata: ["topic": "\(record.topic)", "partition": "\(record.partition)", "offset": "\(record.offset)",
                           "error": "\(error)"])
        }
    }

    /// Skip mode found a gap: the records `from ..< to` were deleted by retention before anyone read them.
    private func reportDataLoss(_ partition: TopicPartition, from: Int64, to: Int64) {
        Counter(label: "sluice_data_lost_records_total", dimensions: [("topic", partition.topic)]).increment(by: Int(to - from))
        logger.error(
            "records were deleted by retention before they were read; continuing at the log start (on_data_loss: skip)",
            metadata: ["partition": "\(partition)", "first_lost": "\(from)", "next_read": "\(to)"])
        let event = "{\"stage\":\"consume\",\"reason\":\"data_lost_to_retention\",\"topic\":\(JSONText.string(partition.topic))"
            + ",\"partition\":\(partition.partition),\"first_lost\":\(from),\"last_lost\":\(to - 1),\"records\":\(to - from)"
            + ",\"dataset\":\(JSONText.string(configuration.dataset))}"
        do {
            try producer.enqueueBlocking(
                ProducerMessage(
                    topic: configuration.rejectedTopic, key: Array("\(partition.topic)/\(partition.partition)/lost/\(from)".utf8),
                    value: Array(event.utf8)))
        } catch {
            logger.error("could not send the data-loss audit event", metadata: ["error": "\(error)"])
        }
    }

    /// The largest DLQ value: the producer's `message.max.bytes` less room for key, headers and framing.
    private var dlqValueLimit: Int {
        max(1024, (Int(configuration.kafka["message.max.bytes"] ?? "") ?? 1_000_000) - 65_536)
    }

    // MARK: Checkpoints

    /// Seals the partition's shard (unless `sealed` already is), records the checkpoint with its rejected records
    /// and dedup entries in one index transaction, announces it and commits the partition's next offset.
    private func checkpoint(_ partition: TopicPartition, _ state: PartitionState, sealed: SealedShard?, reason: String) {
        guard failure == nil, state.records > 0, let first = state.firstOffset else { return }
        let began = clock.now
        do {
            let shard = try sealed ?? state.writer.seal(now: now)
            let entries = state.dedupEntries.map { dedup.index.entry(at: $0) }
            let checkpoint = PartitionCheckpoint(
                topic: partition.topic, partition: partition.partition, firstOffset: first, nextOffset: state.nextOffset,
                records: state.records, kept: state.kept, rejected: state.rejected)
            let quality = state.quality, shadow = state.shadow
            let id = try index.recordCheckpoint(checkpoint, shard: shard, dataset: configuration.dataset) { db in
                try DedupStore.write(entries, in: db)
                try AssessmentStore.write(quality: quality, shadow: shadow, checkpoint: checkpoint, in: db)
            }
            state.skipBelow = state.nextOffset
            state.reset()
            metrics.checkpoints.increment()
            summary.checkpoints += 1
            if let shard {
                summary.shards += 1
                metrics.shardsSealed.increment()
                metrics.bytesWritten.increment(by: shard.storedBytes)
                health.noteSeal()
                logger.info(
                    "shard sealed",
                    metadata: ["shard": "\(shard.fileName)", "samples": "\(shard.sampleCount)", "reason": "\(reason)",
                               "offsets": "\(first)..<\(checkpoint.nextOffset)"])
            }
            lastCheckpointAt = clock.now
            metrics.sealSeconds.recordSeconds((clock.now - began).inSeconds)
            try announce(id)
            commit(partition, checkpoint.nextOffset)
        } catch {
            fail(error)
        }
    }

    /// Commits in the background: a cluster that does not answer never stalls the sink or the shutdown. A failed
    /// commit is harmless for correctness (the index's checkpoints make the next owner skip what is sealed), so
    /// it is logged and counted, not fatal.
    private func commit(_ partition: TopicPartition, _ next: Int64) {
        do {
            try consumer.commitInBackground([TopicPartitionOffset(topic: partition.topic, partition: partition.partition, offset: next)])
        } catch {
            metrics.commitFailures.increment()
            logger.info(
                "offset commit failed; the index's checkpoint still covers these records",
                metadata: ["partition": "\(partition)", "offset": "\(next)", "error": "\(error)"])
        }
    }

    /// Produces the shard event (when the checkpoint has a shard) and one audit event per rejected record that
    /// is not a DLQ record; the checkpoint is marked announced once the producer delivered them.
    private func announce(_ id: Int64) throws {
        guard let report = try index.checkpointReport(id) else { return }
        for record in report.rejected where record.stage != "decode" {
            let position = "\(report.topic)/\(report.partition)/\(record.offset)"
            try producer.enqueueBlocking(
                ProducerMessage(
                    topic: configuration.rejectedTopic, key: Array(position.utf8),
                    value: Array(Self.rejectedEvent(record, report: report).utf8)))
        }
        if let shard = report.shard {
            try producer.enqueueBlocking(
                ProducerMessage(
                    topic: configuration.shardsTopic, key: Array(shard.name.utf8),
                    value: Array(Self.shardEvent(report, shard: shard, directory: configuration.outputDirectory).utf8)))
        }
        announcing.append(id)
    }

    /// Marks announced what the producer has delivered (all queued records, with no new delivery failure).
    func markDeliveredAnnouncements() {
        guard !announcing.isEmpty, producer.outstanding == 0 else { return }
        let failed = producer.statistics.failed
        guard failed == failedDeliveriesSeen else {
            failedDeliveriesSeen = failed
            logger.warning(
                "some announcements were not delivered; they are re-sent on the next start",
                metadata: ["checkpoints": "\(announcing.count)"])
            announcing.removeAll()
            return
        }
        do {
            try index.markAnnounced(announcing)
            announcing.removeAll()
        } catch {
            logger.warning("could not mark checkpoints announced", metadata: ["error": "\(error)"])
        }
    }

    /// Waits (up to 10 s) until the producer delivered the queued announcements; what is not delivered by then is
    /// announced again at the next start.
    func waitForAnnouncements(producer: KafkaProducer) async {
        try? await producer.flush(timeout: .seconds(10))
    }

    /// Called once, on the sink queue, when the sink fails (the pipeline stops consuming).
    var onFailure: (@Sendable () -> Void)?

    private func fail(_ error: any Error) {
        guard failure == nil else { return }
        failure = error
        onFailure?()
        health.noteSinkFailure(error)
        logger.error("the shard sink failed; consumption stops and nothing unsealed is committed", metadata: ["error": "\(error)"])
    }

    // MARK: Names and events

    static func shardPrefix(_ partition: TopicPartition) -> String { "\(partition.topic)+\(partition.partition)+" }

    static func shardName(_ partition: TopicPartition, firstOffset: Int64) -> String {
        shardPrefix(partition) + Curator.padded(Int(firstOffset))
    }

    static func rejectedEvent(_ record: RejectedRecord, report: CheckpointReport) -> String {
        var json = "{\"id\":" + (record.id.map(JSONText.string) ?? "null")
        json += ",\"stage\":\(JSONText.string(record.stage)),\"reason\":\(JSONText.string(record.reason))"
        if !record.detail.isEmpty { json += "," + record.detail }
        json += ",\"topic\":\(JSONText.string(report.topic)),\"partition\":\(report.partition),\"offset\":\(record.offset)"
        return json + ",\"dataset\":\(JSONText.string(report.dataset))}"
    }

    static func shardEvent(_ report: CheckpointReport, shard: ShardRecord, directory: URL) -> String {
        let path = directory.appendingPathComponent(shard.fileName).standardizedFileURL
        var json = "{\"dataset\":\(JSONText.string(report.dataset)),\"shard\":\(JSONText.string(shard.name))"
        json += ",\"path\":\(JSONText.string(path.path)),\"uri\":\(JSONText.string(path.absoluteString))"
        json += ",\"format\":\(JSONText.string(shard.format.rawValue)),\"samples\":\(shard.samples)"
        json += ",\"raw_bytes\":\(shard.rawBytes),\"stored_bytes\":\(shard.storedBytes),\"sha256\":\(JSONText.string(shard.sha256))"
        json += ",\"sealed_at\":\(JSONText.string(shard.sealedAt))"
        json += ",\"offsets\":[{\"topic\":\(JSONText.string(report.topic)),\"partition\":\(report.partition)"
        json += ",\"first\":\(report.firstOffset),\"last\":\(report.nextOffset - 1)}]"
        json += ",\"quality\":{\"records\":\(report.records),\"kept\":\(report.kept)"
        if let mean = report.meanScore { json += String(format: ",\"mean_score\":%.4f", mean) }
        json += ",\"rejected\":{" + report.rejectedCounts.sorted { $0.key < $1.key }
            .map { "\(JSONText.string($0.key)):\($0.value)" }.joined(separator: ",") + "}}}"
        return json
    }
}
