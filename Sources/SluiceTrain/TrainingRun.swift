public import Foundation
public import SluiceKafka
internal import SluiceShards

/// Where training data comes from.
public enum TrainingData: Sendable {
    /// The sealed shards of a curated directory (its `index.sqlite`), in passes (epochs) until the step count.
    case directory(URL)
    /// Announcements on a shards topic, followed from the loader's saved offset. Relative shard paths resolve
    /// against `baseDirectory`. With `exitAtEnd`, the run ends when the topic is drained; otherwise it waits for
    /// new shards.
    case stream(KafkaConfiguration, topic: String, baseDirectory: URL?, exitAtEnd: Bool)
    /// A fixed list of announced shards (a retraining round), in passes until the step count.
    case shards([ShardAnnouncement], baseDirectory: URL?)
}

/// A training run: a ``Trainer`` fed by a ``ShardStreamLoader`` from ``TrainingData``, with validation on
/// held-out samples and checkpoints into `output`.
public final class TrainingRun: @unchecked Sendable {
    // @unchecked: one task drives a run; `stopRequested` is the only field touched from elsewhere (a flag).
    public let trainer: Trainer
    public let data: TrainingData
    public let output: URL
    private let log: @Sendable (String) -> Void
    private var loader: ShardStreamLoader
    private var announcements: [ShardAnnouncement] = []
    private var validation: [TrainingBatch]?
    private let stopFlag = StopFlag()
    private var feed: ShardAnnouncementFeed?
    /// Stop (with a checkpoint) after this many steps of this run, as a signal would.
    public var stepsThisRunLimit: Int?

    public struct Summary: Sendable, Codable {
        public var steps: Int
        public var stepsThisRun: Int
        public var tokens: Int
        public var epochs: Int
        /// The loss of this run's first step, and of its last.
        public var firstLoss: Float?
        public var loss: Float?
        public var validationLoss: Float?
        public var tokensPerSecond: Double
        public var seconds: Double
        public var checkpoint: String?
        public var skippedShards: [String]
        public var stoppedBy: String

        enum CodingKeys: String, CodingKey {
            case steps, stepsThisRun = "steps_this_run", tokens, epochs, firstLoss = "first_loss", loss, validationLoss = "validation_loss"
            case tokensPerSecond = "tokens_per_second", seconds, checkpoint, skippedShards = "skipped_shards"
            case stoppedBy = "stopped_by"
        }
    }

    public init(trainer: Trainer, data: TrainingData, output: URL, log: @escaping @Sendable (String) -> Void) {
        self.trainer = trainer
        self.data = data
        self.output = output
        self.log = log
        loader = Self.makeLoader(
            trainer: trainer, data: data, epoch: trainer.progress.epoch,
            state: trainer.progress.loader.offered > 0 ? trainer.progress.loader : nil)
    }

    /// Asks the run to stop after the current step (it then writes a checkpoint). Safe from any thread.
    public func requestStop() { stopFlag.set() }

    private static func makeLoader(trainer: Trainer, data: TrainingData, epoch: Int, state: LoaderState?) -> ShardStreamLoader {
        var configuration = trainer.configuration.loader
        configuration.seed = configuration.seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15
        let base: URL?
        switch data {
        case .directory(let url): base = url
        case .stream(_, _, let baseDirectory, _): base = baseDirectory
        case .shards(_, let baseDirectory): base = baseDirectory
        }
        var loader = ShardStreamLoader(configuration: configuration, baseDirectory: base, state: state)
        loader.deletions = DeletionView()
        return loader
    }

    public func run() async throws -> Summary {
        let started = monotonicNanoseconds()
        let firstStep = trainer.progress.step
        var tokensThisRun = 0
        var stoppedBy = "steps"
        var firstLoss: Float?
        let configuration = trainer.configuration
        if case .directory(let url) = data {
            announcements = try ShardAnnouncement.directory(url)
            guard !announcements.isEmpty else { throw TrainError("\(url.path) has no sealed shards to train on") }
            offerDirectory()
        } else if case .shards(let list, _) = data {
            guard !list.isEmpty else { throw TrainError("no shards to train on") }
            announcements = list
            offerDirectory()
        }
        defer { if let feed { Task { await feed.close() } } }
        var lastReport = monotonicNanoseconds()
        var windowTokens = 0
        steps: while trainer.progress.step < configuration.steps {
            if stopFlag.isSet || stepsThisRunLimit.map({ trainer.progress.step - firstStep >= $0 }) == true {
                stoppedBy = stopFlag.isSet ? "signal" : "step limit"
                break
            }
            var batches: [TrainingBatch] = []
            while batches.count < configuration.accumulation {
                if let batch = try await nextBatch() {
                    batches.append(batch)
                } else {
                    stoppedBy = stopFlag.isSet ? "signal" : "end of stream"
                    break steps
                }
            }
            let report = trainer.step(batches)
            if firstLoss == nil { firstLoss = report.loss }
            trainer.progress.loader = loader.state
            tokensThisRun += report.tokens
            windowTokens += report.tokens
            let now = monotonicNanoseconds()
            if now - lastReport > 2_000_000_000 || report.step == configuration.steps || report.step == firstStep + 1 {
                let rate = Double(windowTokens) / (Double(now - lastReport) / 1e9)
                log(String(format: "step %d/%d  loss %.4f  lr %.2e  norm %.3f  %.0f tok/s", report.step, configuration.steps,
                           report.loss, report.learningRate, report.gradientNorm, rate))
                lastReport = now
                windowTokens = 0
            }
            if configuration.validateEvery > 0, report.step % configuration.validateEvery == 0 { try validate() }
            if report.step % configuration.checkpointEvery == 0 && report.step < configuration.steps {
                try validate()
                let url = try trainer.saveCheckpoint(in: output)
                log("checkpoint \(url.lastPathComponent)")
            }
        }
        var checkpoint: String?
        if trainer.progress.step > firstStep || Trainer.latestCheckpoint(in: output) == nil {
            try validate()
            checkpoint = try trainer.saveCheckpoint(in: output).path
            log("checkpoint \(URL(fileURLWithPath: checkpoint!).lastPathComponent)")
        }
        let seconds = Double(monotonicNanoseconds() - started) / 1e9
        return Summary(
            steps: trainer.progress.step, stepsThisRun: trainer.progress.step - firstStep, tokens: trainer.progress.tokens,
            epochs: trainer.progress.epoch, firstLoss: firstLoss, loss: trainer.progress.lastLoss, validationLoss: trainer.progress.validationLoss,
            tokensPerSecond: Double(tokensThisRun) / max(seconds, 1e-9), seconds: seconds, checkpoint: checkpoint,
            skippedShards: loader.state.skipped, stoppedBy: stoppedBy)
    }

    private func offerDirectory() {
        for announcement in announcements.dropFirst(loader.state.offered) { noteOffer(loader.offer(announcement), announcement) }
        loader.finish()
    }

    private func noteOffer(_ event: LoaderEvent, _ announcement: ShardAnnouncement) {
        if case .assigned = event {
            if trainer.progress.firstShard == nil { trainer.progress.firstShard = announcement.name }
            trainer.progress.lastShard = announcement.name
        }
        reportEvents()
    }

    private func reportEvents() {
        for event in loader.takeEvents() {
            if case .skipped(let name, let reason) = event { log("skipped \(name): \(reason)") }
        }
    }

    /// The next batch: from the loader, a new epoch (directory), or new announcements (stream).
    private func nextBatch() async throws -> TrainingBatch? {
        while true {
            if let batch = loader.nextBatch() {
                reportEvents()
                return batch
            }
            reportEvents()
            switch data {
            case .directory, .shards:
                guard !loader.state.finished || loader.state.batches > 0 else {
                    throw TrainError("the shards hold fewer tokens than one batch (\(trainer.configuration.loader.batchSize) × \(trainer.configuration.loader.contextLength))")
                }
                trainer.progress.epoch += 1
                log("epoch \(trainer.progress.epoch) begins")
                loader = Self.makeLoader(trainer: trainer, data: data, epoch: trainer.progress.epoch, state: nil)
                offerDirectory()
                if loader.state.pending.isEmpty { throw TrainError("no shard of the directory could be read") }
            case .stream(let kafka, let topic, _, let exitAtEnd):
                if loader.state.finished { return nil }
                if feed == nil {
                    feed = try await ShardAnnouncementFeed(configuration: kafka, topic: topic, from: loader.state.nextOffset ?? 0)
                }
                guard let feed else { return nil }
                let position = loader.state.nextOffset ?? 0
                if position >= (try await feed.end()) {
                    if exitAtEnd {
                        loader.finish()
                        continue
                    }
                    if stopFlag.isSet { return nil }
                    try await Task.sleep(nanoseconds: 500_000_000)
                    continue
                }
                guard let (offset, result) = try await feed.next() else { return nil }
                switch result {
                case .success(let announcement):
                    announcements.append(announcement)
                    noteOffer(loader.offer(announcement, offset: offset), announcement)
                case .failure(let error):
                    loader.skipEvent(at: offset, reason: error.reason)
                    reportEvents()
                }
            }
        }
    }

    /// Mean loss on the held-out samples of the announced shards (up to `validationWindows` windows).
    public func validate() throws {
        if validation == nil || (validation?.count ?? 0) < trainer.configuration.validationWindows {
            validation = ValidationSet.windows(
                of: announcements, loader: trainer.configuration.loader, baseDirectory: loader.baseDirectory,
                limit: trainer.configuration.validationWindows)
        }
        guard let windows = validation, !windows.isEmpty else { return }
        let loss = ValidationSet.loss(of: trainer.model, on: windows, context: trainer.configuration.loader.contextLength)
        trainer.progress.validationLoss = loss
        log(String(format: "validation loss %.4f (%d windows)", loss, windows.count))
    }
}

/// Held-out text packed into windows: every sample the loader's hold-out rule sets aside, in announcement and
/// index order, joined with the separator.
public enum ValidationSet {
    public static func windows(
        of announcements: [ShardAnnouncement], loader: LoaderConfiguration, baseDirectory: URL?, limit: Int
    ) -> [TrainingBatch] {
        guard loader.holdout > 0, limit > 0 else { return [] }
        let deletions = DeletionView()
        let t = loader.contextLength
        var stream: [UInt8] = []
        let need = limit * t + 1
        for announcement in announcements where stream.count < need {
            let url = announcement.path.hasPrefix("/") || baseDirectory == nil
                ? URL(fileURLWithPath: announcement.path) : baseDirectory!.appendingPathComponent(announcement.path)
            guard let samples = try? ShardReader.samples(of: url, expectingSHA256: announcement.sha256) else { continue }
            let deleted = deletions.deletedKeys(shard: announcement.name, directory: url.deletingLastPathComponent())
            for (index, sample) in samples.enumerated()
            where loader.isHeldOut(shard: announcement.name, index: index) && !deleted.contains(sample.key) {
                stream += sample.text
                stream.append(loader.separator)
                if stream.count >= need { break }
            }
        }
        return pack(stream, context: t, limit: limit)
    }

    /// Cuts a byte stream into single-row windows (targets shifted by one).
    public static func pack(_ stream: [UInt8], context t: Int, limit: Int = .max) -> [TrainingBatch] {
        var windows: [TrainingBatch] = []
        var start = 0
        while start + t + 1 <= stream.count && windows.count < limit {
            windows.append(TrainingBatch(inputs: Array(stream[start..<(start + t)]), targets: Array(stream[(start + 1)...(start + t)])))
            start += t
        }
        return windows
    }

    /// Mean cross-entropy (nats per byte) of `model` over the windows, in batches of up to 16.
    public static func loss(of model: GPT, on windows: [TrainingBatch], context t: Int) -> Float {
        var total: Double = 0
        var index = 0
        while index < windows.count {
            let group = windows[index..<min(index + 16, windows.count)]
            let inputs = group.flatMap(\.inputs), targets = group.flatMap(\.targets)
            total += Double(model.forward(inputs: inputs, targets: targets, batch: group.count, time: t)) * Double(group.count)
            index += group.count
        }
        return windows.isEmpty ? .nan : Float(total / Double(windows.count))
    }
}

/// A flag set from a signal handler's task and read by the training loop.
final class StopFlag: @unchecked Sendable {
    // @unchecked: a lock guards the one Bool.
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
