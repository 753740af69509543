internal import Foundation
public import SluiceTrain
internal import SluiceText
internal import Synchronization

/// What `/v1/score` returns for one text.
public struct TextScore: Sendable, Equatable {
    /// Perplexity per byte of the model on the scored bytes.
    public var perplexity: Double
    public var tokens: Int
    /// The curation quality score (0…1), its language guess and the rules it fails.
    public var qualityScore: Double
    public var language: String
    public var failed: [String]
}

/// Dynamic batching for scoring: texts from concurrent requests are gathered until `maxBatch` windows or
/// `maxDelay` after the first arrived, then scored in one forward pass. `maxBatch` 1 turns batching off.
/// The queue is bounded (`maxQueue` texts); beyond it requests are refused at once.
public final class ScoreBatcher: @unchecked Sendable {
    // @unchecked: shared state is guarded by `condition`; the model and filter are used by the batcher thread only.
    public let maxBatch: Int
    public let maxDelay: Double
    public let maxQueue: Int
    /// Bytes of each text scored (the first ones), in windows of the model's context.
    public let maxBytes: Int
    private let condition = NSCondition()
    private var queue: [(text: [UInt8], index: Int, request: Pending)] = []
    private var stopping = false
    private var model: GPT
    private var quality = QualityFilter()
    private let counters = Mutex<(batches: Int, texts: Int, sizes: BatchSizeHistogram)>((0, 0, BatchSizeHistogram()))

    /// Threads for one scoring pass (the model's own team; 1 leaves the other core to generation and HTTP).
    public let threads: Int

    public init(model: GPT, maxBatch: Int = 32, maxDelay: Double = 0.002, maxQueue: Int = 4096, maxBytes: Int = 1024, threads: Int = 1) {
        self.model = model
        self.maxBatch = max(1, maxBatch)
        self.maxDelay = maxDelay
        self.maxQueue = maxQueue
        self.maxBytes = maxBytes
        self.threads = max(1, threads)
        model.threads = self.threads
        let thread = Thread { [weak self] in self?.loop() }  // weak: the thread may start after a scheduler made and dropped at once
        thread.name = "sluice.score"
        thread.start()
    }

    /// Batches run and texts scored since start.
    public var statistics: (batches: Int, texts: Int) { counters.withLock { ($0.batches, $0.texts) } }
    /// Texts per scoring batch since start.
    public var batchSizes: BatchSizeHistogram { counters.withLock { $0.sizes } }

    /// Scores with a new model from the next batch on.
    public func swap(to model: GPT) {
        model.threads = threads
        condition.withLock { self.model = model }
    }

    public func stop() { condition.withLock { stopping = true; condition.broadcast() } }

    /// One request's texts: results fill in as batches finish; the last one resumes the caller.
    private final class Pending: @unchecked Sendable {
        // @unchecked: touched by the batcher thread only, after the caller handed it over under the lock.
        var results: [TextScore?]
        var remaining: Int
        var continuation: CheckedContinuation<[TextScore], Never>?
        init(count: Int) {
            results = [TextScore?](repeating: nil, count: count)
            remaining = count
        }
    }

    /// Scores texts (in order); throws `.queueFull` when the queue cannot take them all.
    public func score(_ texts: [[UInt8]]) async throws(GatewayError) -> [TextScore] {
        guard !texts.isEmpty else { return [] }
        let pending = Pending(count: texts.count)
        let accepted = await withCheckedContinuation { (continuation: CheckedContinuation<[TextScore], Never>) in
            let admitted = condition.withLock { () -> Bool in
                guard queue.count + texts.count <= maxQueue, !stopping else { return false }
                pending.continuation = continuation
                for (index, text) in texts.enumerated() { queue.append((text, index, pending)) }
                condition.signal()
                return true
            }
            if !admitted { continuation.resume(returning: []) }
        }
        guard accepted.count == texts.count else { throw GatewayError(.queueFull, "the scoring queue is full") }
        return accepted
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping && queue.isEmpty {
                condition.unlock()
                return
            }
            // Wait for more texts until the batch is full or the delay since now has passed.
            let deadline = Date(timeIntervalSinceNow: maxDelay)
            while queue.count < maxBatch && !stopping {
                if !condition.wait(until: deadline) { break }
            }
            let take = min(maxBatch, queue.count)
            let batch = Array(queue.prefix(take))
            queue.removeFirst(take)
            let model = self.model
            condition.unlock()
            let scores = score(batch.map(\.text), with: model)
            counters.withLock {
                $0.batches += 1
                $0.texts += batch.count
                $0.sizes.observe(batch.count)
            }
            for (item, score) in zip(batch, scores) {
                item.request.results[item.index] = score
                item.request.remaining -= 1
                if item.request.remaining == 0 { item.request.continuation?.resume(returning: item.request.results.map { $0! }) }
            }
        }
    }

    /// One forward pass over the windows of every text. The window length is the longest text of the batch
    /// (rounded up to 4, at most the context), so short texts are not padded to the whole context; a text is
    /// scored the same way whatever else is in its batch (every text of at most the context fits one window).
    private func score(_ texts: [[UInt8]], with model: GPT) -> [TextScore] {
        let context = model.configuration.contextLength
        let predictedCounts = texts.map { max(0, min($0.count, maxBytes + 1) - 1) }
        let longest = min(context, predictedCounts.max() ?? 1)
        let t = min(context, max(1, (longest + 3) / 4 * 4))
        var inputs: [UInt8] = [], targets: [UInt8] = []
        var spans: [(first: Int, windows: Int, tokens: Int)] = []
        for (text, predicted) in zip(texts, predictedCounts) {
            let windows = max(1, (predicted + t - 1) / t)
            spans.append((inputs.count / t, windows, predicted))
            for w in 0..<windows {
                for i in 0..<t {
                    let k = w * t + i
                    inputs.append(k < predicted ? text[k] : 0)
                    targets.append(k < predicted ? text[k + 1] : 0)
                }
            }
        }
        model.forward(inputs: inputs, targets: targets, batch: inputs.count / t, time: t)
        let losses = model.lastLosses
        return zip(texts, spans).map { text, span in
            var sum = 0.0
            for k in 0..<span.tokens { sum += Double(losses[span.first * t + k]) }
            let evaluation = quality.evaluate(text)
            return TextScore(
                perplexity: span.tokens > 0 ? exp(sum / Double(span.tokens)) : .nan, tokens: span.tokens,
                qualityScore: evaluation.score, language: evaluation.language, failed: evaluation.failed.map(\.rawValue))
        }
    }
}
