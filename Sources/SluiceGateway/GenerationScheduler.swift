internal import Foundation
public import SluiceTrain
internal import Synchronization

/// Why the gateway refused or failed a request.
public struct GatewayError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case queueFull, invalid, unavailable }
    public let kind: Kind
    public let reason: String
    public init(_ kind: Kind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }
    public var description: String { reason }
}

/// Continuous (iteration-level) batching of generation over a KV-cached ``InferenceEngine``: one thread runs
/// decoding steps for every active sequence at once; new requests join between steps (their prompts run in the
/// same call as the others' next tokens), finished ones leave and free their slot. The queue is bounded: a full
/// queue refuses at once, never grows.
///
/// A new model (``swap(to:version:)``) takes new requests; sequences already running finish on the model they
/// started with.
public final class GenerationScheduler: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `condition`, except the engines' internals, which only the
    // scheduler thread touches.
    public struct Request: Sendable {
        public var prompt: [UInt8]
        public var maxTokens: Int
        public var sampler: TokenSampler
        public var stop: [[UInt8]]
        public init(prompt: [UInt8], maxTokens: Int, sampler: TokenSampler, stop: [[UInt8]] = []) {
            self.prompt = prompt
            self.maxTokens = maxTokens
            self.sampler = sampler
            self.stop = stop
        }
    }

    public enum Event: Sendable, Equatable {
        /// Bytes of the completion (one token per byte; a multi-byte character may span events).
        case bytes([UInt8])
        /// The end: "stop" (a stop sequence), "length" (max_tokens or the context), with the counts and the mean
        /// probability the model (at temperature 1) gave the tokens it produced.
        case finished(reason: String, promptTokens: Int, completionTokens: Int, modelVersion: String, confidence: Double)
    }

    private final class Generation: @unchecked Sendable {
        // @unchecked: fields change under the scheduler's condition, or on its thread only.
        var request: Request
        let continuation: AsyncStream<Event>.Continuation
        let engine: EngineSlot
        var slot = -1
        var position = 0
        var pending: UInt8?
        var generated: [UInt8] = []
        var promptTokens = 0
        var probabilitySum = 0.0
        var sampled = 0
        var cancelled = false
        init(request: Request, continuation: AsyncStream<Event>.Continuation, engine: EngineSlot) {
            self.request = request
            self.continuation = continuation
            self.engine = engine
        }
    }

    private final class EngineSlot {
        let engine: InferenceEngine
        let version: String
        var free: [Int]
        var active = 0
        init(engine: InferenceEngine, version: String) {
            self.engine = engine
            self.version = version
            free = Array((0..<engine.slots).reversed())
        }
    }

    public let slots: Int
    public let maxQueue: Int
    private let condition = NSCondition()
    private var current: EngineSlot
    /// A second model taking a share of traffic (canary) or a copy of it (shadow).
    private var canary: EngineSlot?
    private var shadow: EngineSlot?

    /// Which model a request goes to.
    public enum Role: String, Sendable { case stable, canary, shadow }
    private var waiting: [Generation] = []
    private var running: [Generation] = []
    private var stopping = false
    private var thread: Thread?
    private let counters = Mutex<(tokens: Int, steps: Int, rows: Int, sizes: BatchSizeHistogram)>((0, 0, 0, BatchSizeHistogram()))

    public init(model: GPT, version: String, slots: Int = 32, maxQueue: Int = 256) {
        self.slots = slots
        self.maxQueue = maxQueue
        current = EngineSlot(engine: InferenceEngine(model: model, slots: slots), version: version)
        let thread = Thread { [weak self] in self?.loop() }  // weak: the thread may start after a scheduler made and dropped at once
        thread.name = "sluice.generate"
        self.thread = thread
        thread.start()
    }

    deinit { stop() }

    public var contextLength: Int { condition.withLock { current.engine.configuration.contextLength } }
    public var modelVersion: String { condition.withLock { current.version } }
    /// The canary's and the shadow's versions, if any.
    public var canaryVersion: String? { condition.withLock { canary?.version } }
    public var shadowVersion: String? { condition.withLock { shadow?.version } }
    public var queued: Int { condition.withLock { waiting.count } }
    public var active: Int { condition.withLock { running.count } }
    /// Tokens generated, decoding steps run and rows processed since start.
    public var statistics: (tokens: Int, steps: Int, rows: Int) { counters.withLock { ($0.tokens, $0.steps, $0.rows) } }
    /// Sequences per decoding step since start.
    public var batchSizes: BatchSizeHistogram { counters.withLock { $0.sizes } }

    /// Queues a request; its events arrive on the returned stream. Throws `.queueFull` when the queue holds
    /// `maxQueue` requests already.
    public func submit(_ request: Request, role: Role = .stable) throws(GatewayError) -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .unbounded)
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { throw GatewayError(.unavailable, "the generator is shutting down") }
        // Requests beyond the free slots wait; at most `maxQueue` of them.
        let target = (role == .canary ? canary : role == .shadow ? shadow : nil) ?? current
        guard waiting.count < maxQueue + target.free.count else {
            throw GatewayError(.queueFull, "all \(slots) sequences are busy and \(maxQueue) requests wait already")
        }
        let generation = Generation(request: request, continuation: continuation, engine: target)
        continuation.onTermination = { [weak self, weak generation] termination in
            guard case .cancelled = termination, let self, let generation else { return }
            self.condition.withLock { generation.cancelled = true }
        }
        waiting.append(generation)
        condition.signal()
        return stream
    }

    /// New requests go to `model` from now on; running sequences finish on their model.
    public func swap(to model: GPT, version: String) {
        let engine = EngineSlot(engine: InferenceEngine(model: model, slots: slots), version: version)
        condition.withLock { current = engine }
    }

    /// Sets (or with nil removes) the canary or shadow model; running sequences finish on theirs.
    public func set(_ role: Role, _ model: GPT?, version: String) {
        let engine = model.map { EngineSlot(engine: InferenceEngine(model: $0, slots: slots), version: version) }
        condition.withLock {
            switch role {
            case .stable: if let engine { current = engine }
            case .canary: canary = engine
            case .shadow: shadow = engine
            }
        }
    }

    /// Makes the canary the stable model. Returns its version, or nil without a canary.
    @discardableResult
    public func promoteCanary() -> String? {
        condition.withLock {
            guard let promoted = canary else { return nil }
            current = promoted
            canary = nil
            return promoted.version
        }
    }

    public func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while !stopping && waiting.isEmpty && running.isEmpty { condition.wait() }
            if stopping {
                let all = waiting + running
                waiting.removeAll()
                running.removeAll()
                condition.unlock()
                for generation in all { generation.continuation.finish() }
                return
            }
            // Drop cancelled sequences; admit waiting requests while their model has a free slot.
            running.removeAll { generation in
                guard generation.cancelled else { return false }
                release(generation)
                return true
            }
            waiting.removeAll { $0.cancelled }
            var admitted: [Generation] = []
            var stillWaiting: [Generation] = []
            for generation in waiting {
                if let slot = generation.engine.free.popLast() {
                    generation.slot = slot
                    generation.engine.active += 1
                    admitted.append(generation)
                } else if generation.engine !== current, generation.engine !== canary, generation.engine !== shadow,
                    let slot = current.free.popLast()
                {
                    // Queued under an older model that is draining: take the current one.
                    let moved = Generation(request: generation.request, continuation: generation.continuation, engine: current)
                    moved.slot = slot
                    current.active += 1
                    admitted.append(moved)
                } else {
                    stillWaiting.append(generation)
                }
            }
            waiting = stillWaiting
            let batch = running + admitted
            running = batch
            condition.unlock()
            step(batch, admitted: Set(admitted.map { ObjectIdentifier($0) }))
        }
    }

    /// One call per engine: prompts of the admitted, next tokens of the others.
    private func step(_ batch: [Generation], admitted: Set<ObjectIdentifier>) {
        var byEngine: [ObjectIdentifier: (EngineSlot, [Generation])] = [:]
        for generation in batch { byEngine[ObjectIdentifier(generation.engine), default: (generation.engine, [])].1.append(generation) }
        var finished: [Generation] = []
        var endings: [(Generation, Event)] = []
        var rowsRun = 0, tokens = 0
        for (engineSlot, generations) in byEngine.values {
            let t = engineSlot.engine.configuration.contextLength
            var rows: [InferenceEngine.Row] = []
            for generation in generations {
                if admitted.contains(ObjectIdentifier(generation)) {
                    // Keep the prompt's end; leave room for at least one new token.
                    var prompt = generation.request.prompt.isEmpty ? [UInt8(0)] : generation.request.prompt
                    if prompt.count > t - 1 { prompt = Array(prompt.suffix(t - 1)) }
                    generation.promptTokens = prompt.count
                    for (position, token) in prompt.enumerated() {
                        rows.append(.init(slot: generation.slot, position: position, token: token, wantsLogits: position == prompt.count - 1))
                    }
                    generation.position = prompt.count
                } else if let token = generation.pending {
                    rows.append(.init(slot: generation.slot, position: generation.position, token: token))
                    generation.position += 1
                }
            }
            rowsRun += rows.count
            let logits = engineSlot.engine.run(rows)
            for (generation, row) in zip(generations, logits) {
                let token = generation.request.sampler.next(row)
                generation.probabilitySum += Self.probability(of: token, in: row)
                generation.sampled += 1
                generation.generated.append(token)
                generation.pending = token
                tokens += 1
                var reason: String?
                if let stop = generation.request.stop.first(where: { !$0.isEmpty && generation.generated.ends(with: $0) }) {
                    generation.generated.removeLast(stop.count)
                    reason = "stop"
                } else {
                    generation.continuation.yield(.bytes([token]))
                    if generation.generated.count >= generation.request.maxTokens || generation.position >= t { reason = "length" }
                }
                if let reason {
                    endings.append((generation, .finished(
                        reason: reason, promptTokens: generation.promptTokens, completionTokens: generation.generated.count,
                        modelVersion: engineSlot.version, confidence: generation.probabilitySum / Double(max(1, generation.sampled)))))
                    finished.append(generation)
                }
            }
        }
        counters.withLock {
            $0.tokens += tokens
            $0.steps += 1
            $0.rows += rowsRun
            $0.sizes.observe(batch.count)
        }
        guard !finished.isEmpty else { return }
        let done = Set(finished.map { ObjectIdentifier($0) })
        // Free the slots before the callers hear of the end, so a caller's next request finds its slot free.
        condition.withLock {
            running.removeAll { done.contains(ObjectIdentifier($0)) }
            for generation in finished { release(generation) }
        }
        for (generation, event) in endings {
            generation.continuation.yield(event)
            generation.continuation.finish()
        }
    }

    /// softmax(logits)[token].
    static func probability(of token: UInt8, in logits: [Float]) -> Double {
        let maximum = logits.max() ?? 0
        var sum = 0.0
        for value in logits { sum += Foundation.exp(Double(value - maximum)) }
        return Foundation.exp(Double(logits[Int(token)] - maximum)) / sum
    }

    private func release(_ generation: Generation) {
        guard generation.slot >= 0 else { return }
        generation.engine.free.append(generation.slot)
        generation.engine.active -= 1
        generation.slot = -1
    }
}

extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && self[(count - suffix.count)...].elementsEqual(suffix) }
}
