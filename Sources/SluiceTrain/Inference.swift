internal import COpenBLAS
internal import Foundation

/// Inference for a ``GPT`` with a key/value cache per sequence slot: a prompt's tokens, a decoding step of many
/// sequences, or both at once (continuous batching) run as one call over "rows" — (slot, position, token)
/// triples. Every row's key and value are written to its slot's cache before attention, so rows of the same
/// slot at consecutive positions (a prompt) attend causally among themselves.
///
/// Products run in `cblas_sgemm` (several rows) or `cblas_sgemv` (one row: batch-1 decoding), single-threaded
/// as inference at small batch should be; attention over the cache uses `cblas_sgemv` per head.
/// Not thread-safe: one scheduler drives an engine.
public final class InferenceEngine: @unchecked Sendable {
    // @unchecked: one scheduler drives the engine.
    public let configuration: GPTConfiguration
    public let slots: Int
    private let parameters: FloatBuffer
    private let layout: ParameterLayout
    /// slots × layers × (K, V) × context × channels.
    private let cache: FloatBuffer
    private var scratch: FloatBuffer
    private var scratchRows = 0
    /// Int8 matrices by parameter offset, when the model is quantized.
    private let int8: [Int: QuantizedWeights.Matrix]
    public var isQuantized: Bool { !int8.isEmpty }
    /// Room for the largest int8 matrix expanded to floats.
    private let dequantized: FloatBuffer

    /// An engine over a copy of `model`'s parameters with `slots` concurrent sequences.
    public init(model: GPT, slots: Int) {
        precondition(slots >= 1)
        configuration = model.configuration
        layout = model.layout
        self.slots = slots
        parameters = FloatBuffer(count: model.parameterCount)
        parameters.pointer.update(from: model.parameters.pointer, count: model.parameterCount)
        let c = configuration.channels
        cache = FloatBuffer(count: slots * configuration.layers * 2 * configuration.contextLength * c)
        scratch = FloatBuffer(count: 1)
        int8 = model.quantized?.matrices ?? [:]
        dequantized = FloatBuffer(count: int8.values.map { $0.rows * $0.columns }.max() ?? 1)
        setBLASThreads(1)
    }

    /// Bytes held by the key/value cache.
    public var cacheBytes: Int { cache.count * 4 }

    public struct Row: Sendable, Equatable {
        public var slot: Int
        public var position: Int
        public var token: UInt8
        /// Whether this row's next-token logits are wanted.
        public var wantsLogits: Bool
        public init(slot: Int, position: Int, token: UInt8, wantsLogits: Bool = true) {
            self.slot = slot
            self.position = position
            self.token = token
            self.wantsLogits = wantsLogits
        }
    }

    private func ensureScratch(rows: Int) {
        guard rows > scratchRows else { return }
        let c = configuration.channels
        // x, ln, attention out, residual: 4C; qkv 3C; mlp 4C; logits V; scores T.
        scratch = FloatBuffer(count: rows * (4 * c + 3 * c + 4 * c + configuration.vocabularySize) + configuration.contextLength)
        scratchRows = rows
    }

    private func keys(_ slot: Int, _ layer: Int) -> FloatPointer {
        let c = configuration.channels, t = configuration.contextLength
        return cache.pointer + ((slot * configuration.layers + layer) * 2) * t * c
    }

    private func values(_ slot: Int, _ layer: Int) -> FloatPointer { keys(slot, layer) + configuration.contextLength * configuration.channels }

    /// y (rows × out) = x (rows × in) · Wᵀ + b, by sgemv for one row.
    private func linear(_ y: FloatPointer, _ x: FloatPointer, weight: Int, bias: Int, rows: Int, inputs: Int, outputs: Int) {
        let w = parameters.pointer + weight, b = parameters.pointer + bias
        if let matrix = int8[weight] {
            Kernels.int8Linear(y, x, matrix, bias: b, rows: rows, scratch: dequantized.pointer)
            return
        }
        for r in 0..<rows { (y + r * outputs).update(from: b, count: outputs) }
        if rows == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(outputs), Int32(inputs), 1, w, Int32(inputs), x, 1, 1, y, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outputs), Int32(inputs), 1, x, Int32(inputs),
                        w, Int32(inputs), 1, y, Int32(outputs))
        }
    }

    /// Runs the rows through the model, filling the caches; returns the logits (256 each) of the rows that want
    /// them, in row order. Positions must be below the context length and, per slot, continue what the cache holds.
    public func run(_ rows: [Row]) -> [[Float]] {
        let n = rows.count
        guard n > 0 else { return [] }
        let c = configuration.channels, v = configuration.vocabularySize, t = configuration.contextLength
        let heads = configuration.heads, hs = c / heads
        for row in rows { precondition(row.slot < slots && row.position < t, "row outside the cache") }
        ensureScratch(rows: n)
        let p = parameters.pointer
        let x = scratch.pointer, ln = x + n * c, att = ln + n * c, qkv = att + n * c
        let mlp = qkv + n * 3 * c, logits = mlp + n * 4 * c, scores = logits + n * v
        let mean = FloatBuffer(count: n), rstd = FloatBuffer(count: n)
        for (r, row) in rows.enumerated() {
            let e = x + r * c, token = p + layout.wte + Int(row.token) * c, position = p + layout.wpe + row.position * c
            for i in 0..<c { e[i] = token[i] + position[i] }
        }
        let scale = 1 / Float(hs).squareRoot()
        for l in 0..<configuration.layers {
            let o = layout.layerOffsets[l]
            Kernels.layerNormForward(ln, mean: mean.pointer, rstd: rstd.pointer, x, weight: p + o.ln1Weight, bias: p + o.ln1Bias, rows: n, channels: c)
            linear(qkv, ln, weight: o.qkvWeight, bias: o.qkvBias, rows: n, inputs: c, outputs: 3 * c)
            for (r, row) in rows.enumerated() {
                let source = qkv + r * 3 * c
                (keys(row.slot, l) + row.position * c).update(from: source + c, count: c)
                (values(row.slot, l) + row.position * c).update(from: source + 2 * c, count: c)
            }
            for (r, row) in rows.enumerated() {
                let q = qkv + r * 3 * c, length = row.position + 1
                for h in 0..<heads {
                    let k = keys(row.slot, l) + h * hs, vv = values(row.slot, l) + h * hs
                    // scores = K[0...pos] · q (scaled), softmax, out = V[0...pos]ᵀ · p.
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(length), Int32(hs), scale, k, Int32(c), q + h * hs, 1, 0, scores, 1)
                    var maximum = scores[0]
                    for j in 1..<max(1, length) where scores[j] > maximum { maximum = scores[j] }
                    var sum: Float = 0
                    for j in 0..<length {
                        let e = Kernels.exp(scores[j] - maximum)
                        scores[j] = e
                        sum += e
                    }
                    let inverse = 1 / sum
                    for j in 0..<length { scores[j] *= inverse }
                    cblas_sgemv(CblasRowMajor, CblasTrans, Int32(length), Int32(hs), 1, vv, Int32(c), scores, 1, 0, att + r * c + h * hs, 1)
                }
            }
            // x += proj(att); ln = LN2(x); x += mlp(ln)
            linear(ln, att, weight: o.projWeight, bias: o.projBias, rows: n, inputs: c, outputs: c)
            for i in 0..<(n * c) { x[i] += ln[i] }
            Kernels.layerNormForward(ln, mean: mean.pointer, rstd: rstd.pointer, x, weight: p + o.ln2Weight, bias: p + o.ln2Bias, rows: n, channels: c)
            linear(mlp, ln, weight: o.fcWeight, bias: o.fcBias, rows: n, inputs: c, outputs: 4 * c)
            Kernels.geluForward(mlp, mlp, count: n * 4 * c)
            linear(att, mlp, weight: o.fcProjWeight, bias: o.fcProjBias, rows: n, inputs: 4 * c, outputs: c)
            for i in 0..<(n * c) { x[i] += att[i] }
        }
        // Logits only for the rows that want them.
        let wanted = rows.indices.filter { rows[$0].wantsLogits }
        guard !wanted.isEmpty else { return [] }
        for (k, r) in wanted.enumerated() where k != r { (x + k * c).update(from: x + r * c, count: c) }
        Kernels.layerNormForward(ln, mean: mean.pointer, rstd: rstd.pointer, x, weight: p + layout.lnfWeight, bias: p + layout.lnfBias, rows: wanted.count, channels: c)
        if let matrix = int8[layout.wte] {
            Kernels.int8Linear(logits, ln, matrix, bias: nil, rows: wanted.count, scratch: dequantized.pointer)
        } else if wanted.count == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(v), Int32(c), 1, p + layout.wte, Int32(c), ln, 1, 0, logits, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(wanted.count), Int32(v), Int32(c), 1, ln, Int32(c),
                        p + layout.wte, Int32(c), 0, logits, Int32(v))
        }
        return (0..<wanted.count).map { Array(UnsafeBufferPointer(start: logits + $0 * v, count: v)) }
    }
}

/// Picks the next token from logits: greedy at temperature 0, else softmax at `temperature` restricted to the
/// smallest set of tokens whose probability reaches `topP`, drawn from a seeded generator.
public struct TokenSampler: Sendable {
    public var temperature: Float
    public var topP: Float
    private var random: UInt64

    public init(temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        random = seed
    }

    public mutating func next(_ logits: [Float]) -> UInt8 {
        if temperature <= 0 {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return UInt8(best)
        }
        let maximum = logits.max() ?? 0
        var probabilities = logits.map { Foundation.exp(Double(($0 - maximum) / temperature)) }
        let total = probabilities.reduce(0, +)
        for i in probabilities.indices { probabilities[i] /= total }
        var order = Array(probabilities.indices)
        order.sort { probabilities[$0] > probabilities[$1] }
        var kept: [Int] = []
        var mass = 0.0
        for index in order {
            kept.append(index)
            mass += probabilities[index]
            if mass >= Double(topP) { break }
        }
        random &+= 0x9E37_79B9_7F4A_7C15
        var target = Double(ShardStreamLoader.mix(random) >> 11) / 9_007_199_254_740_992 * mass
        for index in kept {
            target -= probabilities[index]
            if target <= 0 { return UInt8(index) }
        }
        return UInt8(kept.last ?? 0)
    }
}

/// Times greedy decoding with the KV cache (for `sluice eval generate-speed`): `batch` sequences start from a
/// `prompt`-byte prefix each and decode until the context is full; tokens/s counts decoded tokens only.
public struct GenerationBenchmark: Sendable {
    public var model = GPTConfiguration()
    public var batch = 1
    public var prompt = 16
    public var repeats = 3
    /// Decode with int8 weights (weight-only quantization) instead of float.
    public var quantize = false
    public init() {}

    public struct Result: Sendable, Codable {
        public var batch: Int
        public var prompt: Int
        public var decoded: Int
        public var seconds: Double
        public var tokensPerSecond: Double
        public var prefillTokensPerSecond: Double
        enum CodingKeys: String, CodingKey {
            case batch, prompt, decoded, seconds, tokensPerSecond = "tokens_per_second", prefillTokensPerSecond = "prefill_tokens_per_second"
        }
    }

    public func run() -> Result {
        let gpt = GPT(configuration: model, seed: 3)
        if quantize { gpt.quantized = QuantizedWeights(model: gpt) }
        let engine = InferenceEngine(model: gpt, slots: batch)
        let t = model.contextLength
        var decoded = 0, decodeSeconds = 0.0, prefillSeconds = 0.0
        for _ in 0..<repeats {
            var rows: [InferenceEngine.Row] = []
            for slot in 0..<batch {
                for position in 0..<prompt {
                    rows.append(.init(slot: slot, position: position, token: UInt8(65 + (slot + position) % 26), wantsLogits: position == prompt - 1))
                }
            }
            var start = monotonicNanoseconds()
            var logits = engine.run(rows)
            prefillSeconds += Double(monotonicNanoseconds() - start) / 1e9
            var sampler = TokenSampler()
            start = monotonicNanoseconds()
            for position in prompt..<t {
                let step = (0..<batch).map { InferenceEngine.Row(slot: $0, position: position, token: sampler.next(logits[$0])) }
                logits = engine.run(step)
                decoded += batch
            }
            decodeSeconds += Double(monotonicNanoseconds() - start) / 1e9
        }
        return Result(
            batch: batch, prompt: prompt, decoded: decoded, seconds: decodeSeconds, tokensPerSecond: Double(decoded) / decodeSeconds,
            prefillTokensPerSecond: Double(repeats * batch * prompt) / prefillSeconds)
    }
}
