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
    /// Set when the model was loaded from an int8 file: inference engines then compute with the int8 matrices.
    public var quantized: QuantizedWeights?
    let parameters: FloatBuffer
    let gradients: FloatBuffer
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
        setBLASThreads(1)  // the model splits work itself (see `threads`); two pools would fight over the cores
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
        setBLASThreads(1)
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

    // MARK: Threads

    /// Threads for one step (the caller and `threads − 1` workers). Products are split between them, with
    /// OpenBLAS single-threaded inside each, and so is every other kernel.
    public var threads: Int {
        get { team.size }
        set {
            guard newValue != team.size else { return }
            team = ThreadTeam(size: newValue)
            gemms.deallocate()
            gemms = Self.makeGEMMs(team.size)
            scratch = FloatBuffer(count: team.size * 2 * configuration.channels)
        }
    }
    private var team = ThreadTeam(size: 1)
    private var gemms = GPT.makeGEMMs(1)
    /// Per member: LayerNorm weight and bias gradient partial sums (2C each).
    private lazy var scratch = FloatBuffer(count: team.size * 2 * configuration.channels)
    private var partials = [Double](repeating: 0, count: 64)

    private static func makeGEMMs(_ count: Int) -> UnsafeMutablePointer<GEMM> {
        let pointer = UnsafeMutablePointer<GEMM>.allocate(capacity: count)
        pointer.initialize(repeating: GEMM(), count: count)
        return pointer
    }

    deinit { gemms.deallocate() }

    /// Time and work inside sgemm summed over the team since the last reset.
    var gemmStatistics: GEMMStatistics {
        get {
            var total = GEMMStatistics()
            for m in 0..<team.size {
                total.calls += gemms[m].statistics.calls
                total.flops += gemms[m].statistics.flops
                total.nanoseconds += gemms[m].statistics.nanoseconds
            }
            return total
        }
        set { for m in 0..<team.size { gemms[m].statistics = newValue } }
    }

    /// Runs `body(member, rows share, gemm)` on every team member.
    @inline(__always)
    private func parallel(rows: Int, _ body: (Int, Range<Int>, inout GEMM) -> Void) {
        let gemms = self.gemms
        team.run { m in body(m, team.share(of: rows, member: m), &gemms[m]) }
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
        let c = configuration.channels, rows = batch * time, v = configuration.vocabularySize
        let p = parameters.pointer
        let wte = p + layout.wte, wpe = p + layout.wpe
        parallel(rows: rows) { _, r, _ in
            Kernels.encoderForward(a.encoded, tokens: a.tokens, wte: wte, wpe: wpe, rows: r, time: time, channels: c)
        }
        for l in 0..<configuration.layers { layerForward(l, a) }
        let last = a.output(of: configuration.layers - 1)
        let lnfWeight = p + layout.lnfWeight, lnfBias = p + layout.lnfBias
        let scoring = targets != nil
        partials.withUnsafeMutableBufferPointer { totals in
            parallel(rows: rows) { m, r, gemm in
                guard !r.isEmpty else { totals[m] = 0; return }
                let o = r.lowerBound
                Kernels.layerNormForward(
                    a.lnf + o * c, mean: a.lnfMean + o, rstd: a.lnfRstd + o, last + o * c, weight: lnfWeight, bias: lnfBias,
                    rows: r.count, channels: c)
                gemm(false, true, m: r.count, n: v, k: c, a.lnf + o * c, lda: c, wte, ldb: c, beta: 0, a.logits + o * v, ldc: v)
                totals[m] = scoring
                    ? Kernels.crossEntropyForward(
                        losses: a.losses + o, logSumExp: a.logSumExp + o, logits: a.logits + o * v, targets: a.targets + o,
                        rows: r.count, vocabulary: v) : 0
            }
        }
        guard scoring else { return .nan }
        return Float(partials[0..<team.size].reduce(0, +) / Double(rows))
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
        parallel(rows: rows) { _, r, gemm in
            guard !r.isEmpty else { return }
            let i = r.lowerBound
            Kernels.layerNormForward(
                s.ln1 + i * c, mean: s.ln1Mean + i, rstd: s.ln1Rstd + i, input + i * c, weight: p + o.ln1Weight,
                bias: p + o.ln1Bias, rows: r.count, channels: c)
            Kernels.linearForward(
                &gemm, s.qkv + i * 3 * c, s.ln1 + i * c, weight: p + o.qkvWeight, bias: p + o.qkvBias, rows: r.count,
                inputs: c, outputs: 3 * c)
        }
        parallel(rows: a.batch * nh) { _, pairs, gemm in
            for pair in pairs {
                let b = pair / nh, h = pair % nh
                Kernels.attentionForward(
                    &gemm, out: s.atty + b * t * c + h * hs, probabilities: s.att + pair * t * t,
                    qkv: s.qkv + b * t * 3 * c + h * hs, time: t, channels: c, headSize: hs)
            }
        }
        let output = a.output(of: l)
        parallel(rows: rows) { _, r, gemm in
            guard !r.isEmpty else { return }
            let i = r.lowerBound, n = r.count
            Kernels.linearForward(
                &gemm, s.res2 + i * c, s.atty + i * c, weight: p + o.projWeight, bias: p + o.projBias,
                residual: input + i * c, rows: n, inputs: c, outputs: c)
            Kernels.layerNormForward(
                s.ln2 + i * c, mean: s.ln2Mean + i, rstd: s.ln2Rstd + i, s.res2 + i * c, weight: p + o.ln2Weight,
                bias: p + o.ln2Bias, rows: n, channels: c)
            Kernels.linearForward(
                &gemm, s.fch + i * 4 * c, s.ln2 + i * c, weight: p + o.fcWeight, bias: p + o.fcBias, rows: n, inputs: c,
                outputs: 4 * c)
            Kernels.geluForward(s.fchGelu + i * 4 * c, s.fch + i * 4 * c, count: n * 4 * c)
            Kernels.linearForward(
                &gemm, output + i * c, s.fchGelu + i * 4 * c, weight: p + o.fcProjWeight, bias: p + o.fcProjBias,
                residual: s.res2 + i * c, rows: n, inputs: 4 * c, outputs: c)
        }
    }

    // MARK: Backward

    /// Accumulates into the gradients d(scale · mean loss)/dθ for the last forward pass (which must have had
    /// targets). Gradient accumulation over k micro-batches: call with scale 1/k and zero the gradients per step.
    public func backward(scale: Float = 1) {
        guard let a = arena, a.hasTargets else { preconditionFailure("backward needs a forward pass with targets") }
        let c = configuration.channels, rows = a.batch * a.time, v = configuration.vocabularySize
        let p = parameters.pointer, g = gradients.pointer
        let lossScale = scale / Float(rows)
        // The head: logits = lnf · wteᵀ; its gradient overwrites the logits.
        parallel(rows: rows) { _, r, gemm in
            guard !r.isEmpty else { return }
            let i = r.lowerBound
            Kernels.crossEntropyBackward(
                logits: a.logits + i * v, logSumExp: a.logSumExp + i, targets: a.targets + i, rows: r.count, vocabulary: v,
                scale: lossScale)
            gemm(false, false, m: r.count, n: c, k: v, a.logits + i * v, lda: v, p + layout.wte, ldb: c, beta: 0,
                 a.dC + i * c, ldc: c)
        }
        parallel(rows: v) { _, r, gemm in
            guard !r.isEmpty else { return }
            gemm(true, false, m: r.count, n: c, k: rows, a.logits + r.lowerBound, lda: v, a.lnf, ldb: c, beta: 1,
                 g + layout.wte + r.lowerBound * c, ldc: c)
        }
        layerNormBackward(
            a, dout: a.dC, input: a.output(of: configuration.layers - 1), weight: layout.lnfWeight, bias: layout.lnfBias,
            mean: a.lnfMean, rstd: a.lnfRstd, overwrite: true)
        for l in stride(from: configuration.layers - 1, through: 0, by: -1) {
            if recomputesActivations { layerForward(l, a) }
            layerBackward(l, a)
        }
        let wte = g + layout.wte, wpe = g + layout.wpe
        parallel(rows: c) { _, channels, _ in
            Kernels.encoderBackward(
                dwte: wte, dwpe: wpe, dout: a.dResidual, tokens: a.tokens, rows: rows, time: a.time, channels: c,
                channelRange: channels)
        }
        a.hasTargets = false  // the logits now hold their gradient
    }

    /// dResidual (= with `overwrite`, else +=) LayerNorm backward of `dout`; weight and bias gradients summed over
    /// the members' partial sums.
    private func layerNormBackward(
        _ a: Arena, dout: FloatPointer, input: FloatPointer, weight: Int, bias: Int, mean: FloatPointer,
        rstd: FloatPointer, overwrite: Bool = false
    ) {
        let c = configuration.channels, rows = a.batch * a.time
        let p = parameters.pointer, g = gradients.pointer, partial = scratch.pointer
        parallel(rows: rows) { m, r, _ in
            let dw = partial + m * 2 * c, db = dw + c
            dw.update(repeating: 0, count: 2 * c)
            guard !r.isEmpty else { return }
            let i = r.lowerBound
            if overwrite { (a.dResidual + i * c).update(repeating: 0, count: r.count * c) }
            Kernels.layerNormBackward(
                dinput: a.dResidual + i * c, dweight: dw, dbias: db, dout: dout + i * c, input: input + i * c,
                weight: p + weight, mean: mean + i, rstd: rstd + i, rows: r.count, channels: c)
        }
        for m in 0..<team.size {
            let dw = partial + m * 2 * c, db = dw + c
            for j in 0..<c {
                g[weight + j] += dw[j]
                g[bias + j] += db[j]
            }
        }
    }

    /// Linear backward with rows split for dinput and outputs split for the weight and bias gradients.
    private func linearBackward(
        dinput: FloatPointer, weight: Int, bias: Int, dout: FloatPointer, input: FloatPointer, rows: Int, inputs: Int,
        outputs: Int
    ) {
        let p = parameters.pointer, g = gradients.pointer
        let team = self.team
        parallel(rows: rows) { m, r, gemm in
            Kernels.linearBackward(
                &gemm, dinput: dinput, dweight: g + weight, dbias: g + bias, dout: dout, input: input, weight: p + weight,
                rows: rows, inputs: inputs, outputs: outputs, rowRange: r, outputRange: team.share(of: outputs, member: m))
        }
    }

    /// With `dResidual` holding d(block output), leaves d(block input) there.
    private func layerBackward(_ l: Int, _ a: Arena) {
        let c = configuration.channels, rows = a.batch * a.time, t = a.time
        let nh = configuration.heads, hs = c / nh
        let o = layout.layerOffsets[l]
        let s = a.layer(l)
        linearBackward(
            dinput: a.d4C, weight: o.fcProjWeight, bias: o.fcProjBias, dout: a.dResidual, input: s.fchGelu, rows: rows,
            inputs: 4 * c, outputs: c)
        parallel(rows: rows) { _, r, _ in
            let i = r.lowerBound * 4 * c
            Kernels.geluBackward(a.d4C + i, input: s.fch + i, dout: a.d4C + i, count: r.count * 4 * c)
        }
        linearBackward(
            dinput: a.dC, weight: o.fcWeight, bias: o.fcBias, dout: a.d4C, input: s.ln2, rows: rows, inputs: c, outputs: 4 * c)
        layerNormBackward(a, dout: a.dC, input: s.res2, weight: o.ln2Weight, bias: o.ln2Bias, mean: s.ln2Mean, rstd: s.ln2Rstd)
        linearBackward(
            dinput: a.dC, weight: o.projWeight, bias: o.projBias, dout: a.dResidual, input: s.atty, rows: rows, inputs: c,
            outputs: c)
        parallel(rows: a.batch * nh) { m, pairs, gemm in
            for pair in pairs {
                let b = pair / nh, h = pair % nh
                Kernels.attentionBackward(
                    &gemm, dqkv: a.dQKV + b * t * 3 * c + h * hs, scratch: a.dScores + m * t * t,
                    dout: a.dC + b * t * c + h * hs, probabilities: s.att + pair * t * t, qkv: s.qkv + b * t * 3 * c + h * hs,
                    time: t, channels: c, headSize: hs)
            }
        }
        linearBackward(
            dinput: a.dC, weight: o.qkvWeight, bias: o.qkvBias, dout: a.dQKV, input: s.ln1, rows: rows, inputs: c,
            outputs: 3 * c)
        layerNormBackward(
            a, dout: a.dC, input: a.input(of: l), weight: o.ln1Weight, bias: o.ln1Bias, mean: s.ln1Mean, rstd: s.ln1Rstd)
    }

    // MARK: Arena

    /// Bytes the activation arena holds for a batch shape (for reports).
    public var activationBytes: Int { (arena?.floats ?? 0) * MemoryLayout<Float>.stride }

    private func arena(batch: Int, time: Int) -> Arena {
        if let arena, arena.batch == batch, arena.time == time, arena.members == team.size { return arena }
        // A new shape reuses the old storage when it fits (scoring varies the shape batch by batch).
        let made = Arena(
            configuration: configuration, batch: batch, time: time, shared: recomputesActivations, members: team.size,
            reusing: arena?.storage)
        arena = made
        return made
    }
}

/// Every activation a training step needs, allocated once for a (batch, time) shape.
private final class Arena {
    let batch: Int, time: Int, members: Int
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

    init(configuration: GPTConfiguration, batch: Int, time: Int, shared: Bool, members: Int, reusing: FloatBuffer? = nil) {
        self.batch = batch
        self.time = time
        self.shared = shared
        self.members = members
        let c = configuration.channels, rows = batch * time, v = configuration.vocabularySize
        channels = c
        heads = configuration.heads
        let layerFloats = 15 * rows * c + 4 * rows + batch * configuration.heads * time * time
        let layerCopies = shared ? 1 : configuration.layers
        let sizes = [
            rows * c, rows * c, rows, rows, rows * v, rows, rows,  // encoded … logSumExp
            rows * c, rows * c, rows * 3 * c, rows * 4 * c, members * time * time,  // backward scratch
            configuration.layers * rows * c,  // block outputs
            layerCopies * layerFloats,
        ]
        let needed = sizes.reduce(0, +)
        if let reusing, reusing.count >= needed {
            storage = reusing  // every activation is written before it is read; backward zeroes what it accumulates
        } else {
            storage = FloatBuffer(count: needed)
        }
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
