internal import Foundation

/// A byte-level GPT with forward and backward passes on flat buffers (design after llm.c's CPU reference:
/// one buffer each for parameters and gradients laid out by ``ParameterLayout``, a preallocated activation arena
/// for a fixed batch and sequence length, kernels as forward/backward pairs, products in `cblas_sgemm`).
///
/// Not thread-safe: one trainer drives a model. OpenBLAS may use several threads inside each product.
public final class GPT: @unchecked Sendable {
    // @unchecked: mutable state (buffers, arena, GEMM counters) is driven by one caller at a time.
    public let configuration: GPTConfiguration
    public let layout: ParameterLayout
    let parameters: FloatBuffer
    let gradients: FloatBuffer
    var gemm = GEMM()
    private var arena: Arena?
    /// Activation checkpointing: keep only each block's output in forward and recompute the block's other
    /// activations in backward (less memory, about one more forward pass of compute).
    public var recomputesActivations = false {
        didSet { if oldValue != recomputesActivations { arena = nil } }
    }

    /// A model with GPT-2 style initial weights from `seed`: N(0, 0.02) for matrices and embeddings,
    /// N(0, 0.02/√(2L)) for the two residual projections, zero biases, unit LayerNorm weights.
    public init(configuration: GPTConfiguration, seed: UInt64) {
        precondition(configuration.problem == nil, configuration.problem ?? "")
        self.configuration = configuration
        layout = ParameterLayout(configuration)
        parameters = FloatBuffer(count: layout.count)
        gradients = FloatBuffer(count: layout.count)
        var random = GaussianRandom(seed: seed)
        let residualScale = 0.02 / Float(2 * configuration.layers).squareRoot()
        for tensor in layout.tensors {
            let values = parameters.pointer + tensor.offset
            if tensor.name.hasSuffix(".bias") {
                continue
            } else if tensor.name.contains("ln_") {
                values.update(repeating: 1, count: tensor.count)
            } else {
                let std: Float = tensor.name.hasSuffix("c_proj.weight") ? residualScale : 0.02
                for i in 0..<tensor.count { values[i] = random.next() * std }
            }
        }
    }

    /// A model with the given parameter values (in ``ParameterLayout`` order).
    public init(configuration: GPTConfiguration, parameters values: [Float]) {
        precondition(configuration.problem == nil, configuration.problem ?? "")
        self.configuration = configuration
        layout = ParameterLayout(configuration)
        precondition(values.count == layout.count, "expected \(layout.count) parameters, got \(values.count)")
        parameters = FloatBuffer(count: layout.count)
        gradients = FloatBuffer(count: layout.count)
        values.withUnsafeBufferPointer { parameters.pointer.update(from: $0.baseAddress!, count: layout.count) }
    }

    public var parameterCount: Int { layout.count }

    /// A copy of one tensor's values (or gradients).
    public func values(of name: String, gradient: Bool = false) -> [Float] {
        guard let tensor = layout.tensor(named: name) else { return [] }
        let base = (gradient ? gradients : parameters).pointer + tensor.offset
        return Array(UnsafeBufferPointer(start: base, count: tensor.count))
    }

    /// Replaces one tensor's values.
    public func setValues(of name: String, to values: [Float]) {
        guard let tensor = layout.tensor(named: name), values.count == tensor.count else {
            preconditionFailure("no tensor \(name) with \(values.count) values")
        }
        values.withUnsafeBufferPointer { (parameters.pointer + tensor.offset).update(from: $0.baseAddress!, count: tensor.count) }
    }

    /// All parameters, in layout order.
    public var allParameters: [Float] { Array(UnsafeBufferPointer(start: parameters.pointer, count: layout.count)) }

    public func zeroGradients() { gradients.zero() }

    /// The logits of the last forward pass, (batch × time × 256).
    public var lastLogits: [Float] {
        guard let arena else { return [] }
        return Array(UnsafeBufferPointer(start: arena.logits, count: arena.batch * arena.time * configuration.vocabularySize))
    }

    // MARK: Forward

    /// Runs the model on `batch` rows of `time` byte tokens. With `targets`, returns the mean cross-entropy
    /// (nats per token); the arena then holds what ``backward(scale:)`` needs.
    @discardableResult
    public func forward(inputs: [UInt8], targets: [UInt8]?, batch: Int, time: Int) -> Float {
        precondition(time >= 1 && time <= configuration.contextLength, "sequence length \(time) exceeds the context")
        precondition(inputs.count == batch * time && (targets?.count ?? inputs.count) == batch * time)
        let a = arena(batch: batch, time: time)
        for i in 0..<inputs.count { a.tokens[i] = Int32(inputs[i]) }
        if let targets { for i in 0..<targets.count { a.targets[i] = Int32(targets[i]) } }
        a.hasTargets = targets != nil
        let c = configuration.channels, rows = batch * time
        let p = parameters.pointer
        Kernels.encoderForward(
            a.encoded, tokens: a.tokens, wte: p + layout.wte, wpe: p + layout.wpe, batch: batch, time: time, channels: c)
        for l in 0..<configuration.layers { layerForward(l, a) }
        let last = a.output(of: configuration.layers - 1)
        Kernels.layerNormForward(
            a.lnf, mean: a.lnfMean, rstd: a.lnfRstd, last, weight: p + layout.lnfWeight, bias: p + layout.lnfBias,
            rows: rows, channels: c)
        let v = configuration.vocabularySize
        gemm(false, true, m: rows, n: v, k: c, a.lnf, lda: c, p + layout.wte, ldb: c, beta: 0, a.logits, ldc: v)
        guard targets != nil else { return .nan }
        let total = Kernels.crossEntropyForward(
            losses: a.losses, logSumExp: a.logSumExp, logits: a.logits, targets: a.targets, rows: rows, vocabulary: v)
        return Float(total / Double(rows))
    }

    /// Per-token losses of the last forward pass (nats).
    public var lastLosses: [Float] {
        guard let arena else { return [] }
        return Array(UnsafeBufferPointer(start: arena.losses, count: arena.batch * arena.time))
    }

    private func layerForward(_ l: Int, _ a: Arena) {
        let c = configuration.channels, rows = a.batch * a.time, t = a.time
        let nh = configuration.heads, hs = c / nh
        let o = layout.layerOffsets[l], p = parameters.pointer
        let s = a.layer(l)
        let input = a.input(of: l)
        Kernels.layerNormForward(
            s.ln1, mean: s.ln1Mean, rstd: s.ln1Rstd, input, weight: p + o.ln1Weight, bias: p + o.ln1Bias, rows: rows,
            channels: c)
        Kernels.linearForward(&gemm, s.qkv, s.ln1, weight: p + o.qkvWeight, bias: p + o.qkvBias, rows: rows, inputs: c, outputs: 3 * c)
        for b in 0..<a.batch {
            for h in 0..<nh {
                Kernels.attentionForward(
                    &gemm, out: s.atty + b * t * c + h * hs, probabilities: s.att + (b * nh + h) * t * t,
                    qkv: s.qkv + b * t * 3 * c + h * hs, time: t, channels: c, headSize: hs)
            }
        }
        Kernels.linearForward(
            &gemm, s.res2, s.atty, weight: p + o.projWeight, bias: p + o.projBias, residual: input, rows: rows, inputs: c,
            outputs: c)
        Kernels.layerNormForward(
            s.ln2, mean: s.ln2Mean, rstd: s.ln2Rstd, s.res2, weight: p + o.ln2Weight, bias: p + o.ln2Bias, rows: rows,
            channels: c)
        Kernels.linearForward(&gemm, s.fch, s.ln2, weight: p + o.fcWeight, bias: p + o.fcBias, rows: rows, inputs: c, outputs: 4 * c)
        Kernels.geluForward(s.fchGelu, s.fch, count: rows * 4 * c)
        Kernels.linearForward(
            &gemm, a.output(of: l), s.fchGelu, weight: p + o.fcProjWeight, bias: p + o.fcProjBias, residual: s.res2,
            rows: rows, inputs: 4 * c, outputs: c)
    }

    // MARK: Backward

    /// Accumulates into the gradients d(scale · mean loss)/dθ for the last forward pass (which must have had
    /// targets). Gradient accumulation over k micro-batches: call with scale 1/k and zero the gradients per step.
    public func backward(scale: Float = 1) {
        guard let a = arena, a.hasTargets else { preconditionFailure("backward needs a forward pass with targets") }
        let c = configuration.channels, rows = a.batch * a.time, v = configuration.vocabularySize
        let p = parameters.pointer, g = gradients.pointer
        Kernels.crossEntropyBackward(
            logits: a.logits, logSumExp: a.logSumExp, targets: a.targets, rows: rows, vocabulary: v, scale: scale / Float(rows))
        // The head: logits = lnf · wteᵀ.
        gemm(false, false, m: rows, n: c, k: v, a.logits, lda: v, p + layout.wte, ldb: c, beta: 0, a.dC, ldc: c)
        gemm(true, false, m: v, n: c, k: rows, a.logits, lda: v, a.lnf, ldb: c, beta: 1, g + layout.wte, ldc: c)
        a.dResidual.update(repeating: 0, count: rows * c)
        Kernels.layerNormBackward(
            dinput: a.dResidual, dweight: g + layout.lnfWeight, dbias: g + layout.lnfBias, dout: a.dC,
            input: a.output(of: configuration.layers - 1), weight: p + layout.lnfWeight, mean: a.lnfMean, rstd: a.lnfRstd,
            rows: rows, channels: c)
        for l in stride(from: configuration.layers - 1, through: 0, by: -1) {
            if recomputesActivations { layerForward(l, a) }
            layerBackward(l, a)
        }
        Kernels.encoderBackward(
            dwte: g + layout.wte, dwpe: g + layout.wpe, dout: a.dResidual, tokens: a.tokens, batch: a.batch, time: a.time,
            channels: c)
        a.hasTargets = false  // the logits now hold their gradient
    }

    /// With `dResidual` holding d(block output), leaves d(block input) there.
    private func layerBackward(_ l: Int, _ a: Arena) {
        let c = configuration.channels, rows = a.batch * a.time, t = a.time
        let nh = configuration.heads, hs = c / nh
        let o = layout.layerOffsets[l], p = parameters.pointer, g = gradients.pointer
        let s = a.layer(l)
        Kernels.linearBackward(
            &gemm, dinput: a.d4C, dweight: g + o.fcProjWeight, dbias: g + o.fcProjBias, dout: a.dResidual,
            input: s.fchGelu, weight: p + o.fcProjWeight, rows: rows, inputs: 4 * c, outputs: c)
        Kernels.geluBackward(a.d4C, input: s.fch, dout: a.d4C, count: rows * 4 * c)
        Kernels.linearBackward(
            &gemm, dinput: a.dC, dweight: g + o.fcWeight, dbias: g + o.fcBias, dout: a.d4C, input: s.ln2,
            weight: p + o.fcWeight, rows: rows, inputs: c, outputs: 4 * c)
        Kernels.layerNormBackward(
            dinput: a.dResidual, dweight: g + o.ln2Weight, dbias: g + o.ln2Bias, dout: a.dC, input: s.res2,
            weight: p + o.ln2Weight, mean: s.ln2Mean, rstd: s.ln2Rstd, rows: rows, channels: c)
        Kernels.linearBackward(
            &gemm, dinput: a.dC, dweight: g + o.projWeight, dbias: g + o.projBias, dout: a.dResidual, input: s.atty,
            weight: p + o.projWeight, rows: rows, inputs: c, outputs: c)
        for b in 0..<a.batch {
            for h in 0..<nh {
                Kernels.attentionBackward(
                    &gemm, dqkv: a.dQKV + b * t * 3 * c + h * hs, scratch: a.dScores, dout: a.dC + b * t * c + h * hs,
                    probabilities: s.att + (b * nh + h) * t * t, qkv: s.qkv + b * t * 3 * c + h * hs, time: t,
                    channels: c, headSize: hs)
            }
        }
        Kernels.linearBackward(
            &gemm, dinput: a.dC, dweight: g + o.qkvWeight, dbias: g + o.qkvBias, dout: a.dQKV, input: s.ln1,
            weight: p + o.qkvWeight, rows: rows, inputs: c, outputs: 3 * c)
        Kernels.layerNormBackward(
            dinput: a.dResidual, dweight: g + o.ln1Weight, dbias: g + o.ln1Bias, dout: a.dC, input: a.input(of: l),
            weight: p + o.ln1Weight, mean: s.ln1Mean, rstd: s.ln1Rstd, rows: rows, channels: c)
    }

    // MARK: Arena

    /// Bytes the activation arena holds for a batch shape (for reports).
    public var activationBytes: Int { (arena?.floats ?? 0) * MemoryLayout<Float>.stride }

    private func arena(batch: Int, time: Int) -> Arena {
        if let arena, arena.batch == batch, arena.time == time { return arena }
        let made = Arena(configuration: configuration, batch: batch, time: time, shared: recomputesActivations)
        arena = made
        return made
    }
}

/// Every activation a training step needs, allocated once for a (batch, time) shape.
private final class Arena {
    let batch: Int, time: Int
    var hasTargets = false
    let storage: FloatBuffer
    let tokenStorage: UnsafeMutablePointer<Int32>
    var tokens: UnsafeMutablePointer<Int32> { tokenStorage }
    var targets: UnsafeMutablePointer<Int32> { tokenStorage + batch * time }
    let encoded, lnf, lnfMean, lnfRstd, logits, losses, logSumExp: FloatPointer
    let dResidual, dC, dQKV, d4C, dScores: FloatPointer
    private let outputs: FloatPointer
    private let layerBase: FloatPointer
    private let layerStride: Int
    private let shared: Bool
    private let channels: Int, heads: Int
    var floats: Int { storage.count }

    struct Layer {
        let ln1, ln1Mean, ln1Rstd, qkv, atty, att, res2, ln2, ln2Mean, ln2Rstd, fch, fchGelu: FloatPointer
    }

    init(configuration: GPTConfiguration, batch: Int, time: Int, shared: Bool) {
        self.batch = batch
        self.time = time
        self.shared = shared
        let c = configuration.channels, rows = batch * time, v = configuration.vocabularySize
        channels = c
        heads = configuration.heads
        let layerFloats = 15 * rows * c + 4 * rows + batch * configuration.heads * time * time
        let layerCopies = shared ? 1 : configuration.layers
        let sizes = [
            rows * c, rows * c, rows, rows, rows * v, rows, rows,  // encoded … logSumExp
            rows * c, rows * c, rows * 3 * c, rows * 4 * c, time * time,  // backward scratch
            configuration.layers * rows * c,  // block outputs
            layerCopies * layerFloats,
        ]
        storage = FloatBuffer(count: sizes.reduce(0, +))
        tokenStorage = .allocate(capacity: 2 * rows)
        tokenStorage.initialize(repeating: 0, count: 2 * rows)
        var next = storage.pointer
        func take(_ n: Int) -> FloatPointer {
            defer { next += n }
            return next
        }
        encoded = take(sizes[0]); lnf = take(sizes[1]); lnfMean = take(sizes[2]); lnfRstd = take(sizes[3])
        logits = take(sizes[4]); losses = take(sizes[5]); logSumExp = take(sizes[6])
        dResidual = take(sizes[7]); dC = take(sizes[8]); dQKV = take(sizes[9]); d4C = take(sizes[10]); dScores = take(sizes[11])
        outputs = take(sizes[12])
        layerStride = layerFloats
        layerBase = take(sizes[13])
    }

    deinit { tokenStorage.deallocate() }

    func output(of layer: Int) -> FloatPointer { outputs + layer * batch * time * channels }
    func input(of layer: Int) -> FloatPointer { layer == 0 ? encoded : output(of: layer - 1) }

    func layer(_ l: Int) -> Layer {
        let rows = batch * time, c = channels
        var next = layerBase + (shared ? 0 : l * layerStride)
        func take(_ n: Int) -> FloatPointer {
            defer { next += n }
            return next
        }
        return Layer(
            ln1: take(rows * c), ln1Mean: take(rows), ln1Rstd: take(rows), qkv: take(rows * 3 * c), atty: take(rows * c),
            att: take(batch * heads * time * time), res2: take(rows * c), ln2: take(rows * c), ln2Mean: take(rows),
            ln2Rstd: take(rows), fch: take(rows * 4 * c), fchGelu: take(rows * 4 * c))
    }
}

/// Seeded standard normal numbers (SplitMix64 and Box–Muller), the same on every machine.
struct GaussianRandom {
    private var state: UInt64
    private var spare: Float?

    init(seed: UInt64) { state = seed }

    mutating func nextUInt64() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return ShardStreamLoader.mix(state)
    }

    /// Uniform in (0, 1].
    mutating func nextUniform() -> Double { (Double(nextUInt64() >> 11) + 1) / 9_007_199_254_740_992 }

    mutating func next() -> Float {
        if let spare {
            self.spare = nil
            return spare
        }
        let u1 = nextUniform(), u2 = nextUniform()
        let radius = (-2 * Foundation.log(u1)).squareRoot()
        spare = Float(radius * Foundation.sin(2 * Double.pi * u2))
        return Float(radius * Foundation.cos(2 * Double.pi * u2))
    }
}
