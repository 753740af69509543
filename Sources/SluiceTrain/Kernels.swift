internal import COpenBLAS
internal import Foundation

// Forward/backward kernel pairs on contiguous row-major Float buffers. Backward kernels accumulate into
// gradients (`+=`) unless they say otherwise. Products go through `cblas_sgemm` (see `GEMM`); everything else is
// plain loops over rows that the optimiser vectorises (no per-element calls, no allocation).

typealias FloatPointer = UnsafeMutablePointer<Float>
typealias ConstFloatPointer = UnsafePointer<Float>

/// Counts the time and floating-point work spent in `cblas_sgemm`, for the trainer's report.
struct GEMMStatistics: Sendable {
    var calls = 0
    var flops: Double = 0
    var nanoseconds: UInt64 = 0
    var seconds: Double { Double(nanoseconds) / 1e9 }
    var gflops: Double { nanoseconds == 0 ? 0 : flops / Double(nanoseconds) }
}

/// Row-major single-precision GEMM: `C = alpha · op(A) · op(B) + beta · C`, with op(X) = Xᵀ when `transposeX`.
struct GEMM {
    var statistics = GEMMStatistics()
    var measuring = true

    @inline(__always)
    mutating func callAsFunction(
        _ transposeA: Bool, _ transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        _ a: ConstFloatPointer, lda: Int, _ b: ConstFloatPointer, ldb: Int, beta: Float, _ c: FloatPointer, ldc: Int
    ) {
        let start = measuring ? monotonicNanoseconds() : 0
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        if measuring {
            statistics.nanoseconds &+= monotonicNanoseconds() &- start
            statistics.calls += 1
            statistics.flops += 2 * Double(m) * Double(n) * Double(k)
        }
    }
}

/// The monotonic clock in nanoseconds, read straight from `clock_gettime` (the vDSO): curate's stage timing reads it
/// several times per document, and Dispatch's clock costs several times as much per read.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
}

/// Sets how many threads OpenBLAS uses for one product.
func setBLASThreads(_ threads: Int) { openblas_set_num_threads(Int32(max(1, threads))) }

/// Stops OpenBLAS's worker threads, which it starts when the binary loads and which spin for a while before they
/// sleep: for commands that never multiply matrices. A later product starts them again.
public func stopIdleBLASThreads() { _ = blas_thread_shutdown_() }

enum Kernels {
    // MARK: Transcendentals

    /// e^x to about 2e-7 relative error, branch-free so loops over it vectorise. Clamped to ±87.
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        let x = x < -87 ? -87 : (x > 87 ? 87 : x)
        let shifted = x * 1.442_695_04 + 12_582_912  // round(x / ln 2) in the low mantissa bits
        let n = shifted - 12_582_912
        let r = x - n * 0.693_145_751_953_125 - n * 1.428_606_765_330_187e-06
        var p: Float = 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let exponent = (Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000 &+ 127) &<< 23
        return p * Float(bitPattern: UInt32(bitPattern: exponent))
    }

    @inline(__always)
    static func tanh(_ x: Float) -> Float { 1 - 2 / (exp(2 * x) + 1) }

    // MARK: Embedding

    /// out[row,:] = wte[token] + wpe[row % time] for the flat rows (b·time + t) in `rows`.
    static func encoderForward(
        _ out: FloatPointer, tokens: UnsafePointer<Int32>, wte: ConstFloatPointer, wpe: ConstFloatPointer,
        rows: Range<Int>, time: Int, channels c: Int
    ) {
        for r in rows {
            let row = out + r * c
            let token = wte + Int(tokens[r]) * c
            let position = wpe + (r % time) * c
            for i in 0..<c { row[i] = token[i] + position[i] }
        }
    }

    /// Accumulates the embedding gradients for the channels in `channelRange` (members of a team take disjoint
    /// channel ranges, so rows that share a token never race).
    static func encoderBackward(
        dwte: FloatPointer, dwpe: FloatPointer, dout: ConstFloatPointer, tokens: UnsafePointer<Int32>,
        rows: Int, time: Int, channels c: Int, channelRange: Range<Int>? = nil
    ) {
        let range = channelRange ?? 0..<c
        for r in 0..<rows {
            let row = dout + r * c
            let token = dwte + Int(tokens[r]) * c
            let position = dwpe + (r % time) * c
            for i in range {
                token[i] += row[i]
                position[i] += row[i]
            }
        }
    }

    // MARK: LayerNorm

    /// Normalises each row over `c` channels (eps 1e-5), scales and shifts; keeps mean and 1/σ for backward.
    static func layerNormForward(
        _ out: FloatPointer, mean: FloatPointer, rstd: FloatPointer, _ input: ConstFloatPointer,
        weight: ConstFloatPointer, bias: ConstFloatPointer, rows: Int, channels c: Int
    ) {
        let scale = 1 / Float(c)
        for r in 0..<rows {
            let x = input + r * c
            var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
            var i = 0
            while i + 4 <= c {
                s0 += x[i]; s1 += x[i + 1]; s2 += x[i + 2]; s3 += x[i + 3]
                i += 4
            }
            while i < c { s0 += x[i]; i += 1 }
            let m = (s0 + s1 + s2 + s3) * scale
            var v0: Float = 0, v1: Float = 0, v2: Float = 0, v3: Float = 0
            i = 0
            while i + 4 <= c {
                let a = x[i] - m, b = x[i + 1] - m, d = x[i + 2] - m, e = x[i + 3] - m
                v0 += a * a; v1 += b * b; v2 += d * d; v3 += e * e
                i += 4
            }
            while i < c { let a = x[i] - m; v0 += a * a; i += 1 }
            let s = 1 / (((v0 + v1 + v2 + v3) * scale + 1e-5)).squareRoot()
            let o = out + r * c
            for j in 0..<c { o[j] = (x[j] - m) * s * weight[j] + bias[j] }
            mean[r] = m
            rstd[r] = s
        }
    }

    /// Accumulates dinput, dweight and dbias.
    static func layerNormBackward(
        dinput: FloatPointer, dweight: FloatPointer, dbias: FloatPointer, dout: ConstFloatPointer,
        input: ConstFloatPointer, weight: ConstFloatPointer, mean: ConstFloatPointer, rstd: ConstFloatPointer,
        rows: Int, channels c: Int
    ) {
        let scale = 1 / Float(c)
        for r in 0..<rows {
            let x = input + r * c, dy = dout + r * c, dx = dinput + r * c
            let m = mean[r], s = rstd[r]
            var a0: Float = 0, a1: Float = 0, b0: Float = 0, b1: Float = 0
            var i = 0
            while i + 2 <= c {
                let n0 = (x[i] - m) * s, n1 = (x[i + 1] - m) * s
                let d0 = weight[i] * dy[i], d1 = weight[i + 1] * dy[i + 1]
                a0 += d0; a1 += d1
                b0 += d0 * n0; b1 += d1 * n1
                i += 2
            }
            while i < c {
                let n0 = (x[i] - m) * s, d0 = weight[i] * dy[i]
                a0 += d0; b0 += d0 * n0
                i += 1
            }
            let dnormMean = (a0 + a1) * scale
            let dnormNormMean = (b0 + b1) * scale
            for j in 0..<c {
                let norm = (x[j] - m) * s
                let dnorm = weight[j] * dy[j]
                dbias[j] += dy[j]
                dweight[j] += norm * dy[j]
                dx[j] += (dnorm - dnormMean - norm * dnormNormMean) * s
            }
        }
    }

    // MARK: Linear

    /// out = input · weightᵀ + bias, for `rows` rows of `inputs` → `outputs` (weight stored (out, in)).
    /// With `residual`, out = residual + input · weightᵀ + bias (the block's skip connection, fused).
    static func linearForward(
        _ gemm: inout GEMM, _ out: FloatPointer, _ input: ConstFloatPointer, weight: ConstFloatPointer,
        bias: ConstFloatPointer, residual: ConstFloatPointer? = nil, rows: Int, inputs: Int, outputs: Int
    ) {
        for r in 0..<rows {
            let o = out + r * outputs
            if let residual {
                let x = residual + r * outputs
                for j in 0..<outputs { o[j] = x[j] + bias[j] }
            } else {
                o.update(from: bias, count: outputs)
            }
        }
        gemm(false, true, m: rows, n: outputs, k: inputs, input, lda: inputs, weight, ldb: inputs, beta: 1, out, ldc: outputs)
    }

    /// dinput (= or += with `accumulateInput`) dout · weight for the rows in `rowRange`; dweight += doutᵀ · input
    /// and dbias += column sums for the outputs in `outputRange` (over all rows). Defaults: everything.
    static func linearBackward(
        _ gemm: inout GEMM, dinput: FloatPointer, dweight: FloatPointer, dbias: FloatPointer?, dout: ConstFloatPointer,
        input: ConstFloatPointer, weight: ConstFloatPointer, rows: Int, inputs: Int, outputs: Int,
        accumulateInput: Bool = false, rowRange: Range<Int>? = nil, outputRange: Range<Int>? = nil
    ) {
        let rr = rowRange ?? 0..<rows, or = outputRange ?? 0..<outputs
        if !rr.isEmpty {
            gemm(false, false, m: rr.count, n: inputs, k: outputs, dout + rr.lowerBound * outputs, lda: outputs, weight,
                 ldb: inputs, beta: accumulateInput ? 1 : 0, dinput + rr.lowerBound * inputs, ldc: inputs)
        }
        guard !or.isEmpty else { return }
        gemm(true, false, m: or.count, n: inputs, k: rows, dout + or.lowerBound, lda: outputs, input, ldb: inputs, beta: 1,
             dweight + or.lowerBound * inputs, ldc: inputs)
        if let dbias {
            for r in 0..<rows {
                let d = dout + r * outputs
                for j in or { dbias[j] += d[j] }
            }
        }
    }

    // MARK: GELU (tanh form, as GPT-2)

    static func geluForward(_ out: FloatPointer, _ input: ConstFloatPointer, count: Int) {
        let k: Float = 0.797_884_56  // sqrt(2/π)
        for i in 0..<count {
            let x = input[i]
            out[i] = 0.5 * x * (1 + tanh(k * (x + 0.044_715 * x * x * x)))
        }
    }

    /// dinput = dout · gelu′(input), in place over `dout` when the two are the same buffer.
    static func geluBackward(_ dinput: FloatPointer, input: ConstFloatPointer, dout: ConstFloatPointer, count: Int) {
        let k: Float = 0.797_884_56
        for i in 0..<count {
            let x = input[i]
            let t = tanh(k * (x + 0.044_715 * x * x * x))
            let sech2 = 1 - t * t
            let derivative = 0.5 * (1 + t) + 0.5 * x * sech2 * k * (1 + 3 * 0.044_715 * x * x)
            dinput[i] = dout[i] * derivative
        }
    }

    // MARK: Causal self-attention

    /// For one (batch, head): scores = scale · Q·Kᵀ, causal softmax into `probabilities` (T×T, zero above the
    /// diagonal), out = P·V. `qkv` rows are [q | k | v] of width 3C; this head's slice starts at `head * hs`.
    static func attentionForward(
        _ gemm: inout GEMM, out: FloatPointer, probabilities p: FloatPointer, qkv: ConstFloatPointer,
        time t: Int, channels c: Int, headSize hs: Int
    ) {
        let scale = 1 / Float(hs).squareRoot()
        let q = qkv, k = qkv + c, v = qkv + 2 * c
        gemm(false, true, m: t, n: t, k: hs, alpha: scale, q, lda: 3 * c, k, ldb: 3 * c, beta: 0, p, ldc: t)
        for i in 0..<t {
            let row = p + i * t
            var maximum = row[0]
            for j in 1..<(i + 1) where row[j] > maximum { maximum = row[j] }
            var sum: Float = 0
            for j in 0...i {
                let e = exp(row[j] - maximum)
                row[j] = e
                sum += e
            }
            let inverse = 1 / sum
            for j in 0...i { row[j] *= inverse }
            if i + 1 < t { (row + i + 1).update(repeating: 0, count: t - i - 1) }
        }
        gemm(false, false, m: t, n: hs, k: t, p, lda: t, v, ldb: 3 * c, beta: 0, out, ldc: c)
    }

    /// For one (batch, head): writes dQ, dK, dV (slices of `dqkv`, overwritten), from dout and the saved
    /// probabilities. dS = P ⊙ (dP − rowsum(P ⊙ dP)), all four products in sgemm. `scratch` holds T×T.
    static func attentionBackward(
        _ gemm: inout GEMM, dqkv: FloatPointer, scratch dp: FloatPointer, dout: ConstFloatPointer,
        probabilities p: ConstFloatPointer, qkv: ConstFloatPointer, time t: Int, channels c: Int, headSize hs: Int
    ) {
        let scale = 1 / Float(hs).squareRoot()
        let q = qkv, k = qkv + c, v = qkv + 2 * c
        let dq = dqkv, dk = dqkv + c, dv = dqkv + 2 * c
        gemm(false, true, m: t, n: t, k: hs, dout, lda: c, v, ldb: 3 * c, beta: 0, dp, ldc: t)
        gemm(true, false, m: t, n: hs, k: t, p, lda: t, dout, ldb: c, beta: 0, dv, ldc: 3 * c)
        for i in 0..<t {
            let pr = p + i * t, dr = dp + i * t
            var s: Float = 0
            for j in 0...i { s += pr[j] * dr[j] }
            for j in 0...i { dr[j] = pr[j] * (dr[j] - s) }
            if i + 1 < t { (dr + i + 1).update(repeating: 0, count: t - i - 1) }
        }
        gemm(false, false, m: t, n: hs, k: t, alpha: scale, dp, lda: t, k, ldb: 3 * c, beta: 0, dq, ldc: 3 * c)
        gemm(true, false, m: t, n: hs, k: t, alpha: scale, dp, lda: t, q, ldb: 3 * c, beta: 0, dk, ldc: 3 * c)
    }

    // MARK: Softmax cross-entropy (fused)

    /// Per row: log-sum-exp of the logits and the loss −log p(target). Returns the summed loss.
    static func crossEntropyForward(
        losses: FloatPointer, logSumExp: FloatPointer, logits: ConstFloatPointer, targets: UnsafePointer<Int32>,
        rows: Int, vocabulary v: Int
    ) -> Double {
        var total: Double = 0
        for r in 0..<rows {
            let row = logits + r * v
            var maximum = row[0]
            for j in 1..<v where row[j] > maximum { maximum = row[j] }
            var sum: Float = 0
            for j in 0..<v { sum += exp(row[j] - maximum) }
            let lse = maximum + Foundation.log(sum)
            logSumExp[r] = lse
            losses[r] = lse - row[Int(targets[r])]
            total += Double(losses[r])
        }
        return total
    }

    /// Turns logits into dlogits in place: (softmax − one-hot(target)) · scale.
    static func crossEntropyBackward(
        logits: FloatPointer, logSumExp: ConstFloatPointer, targets: UnsafePointer<Int32>, rows: Int, vocabulary v: Int,
        scale: Float
    ) {
        for r in 0..<rows {
            let row = logits + r * v
            let lse = logSumExp[r]
            for j in 0..<v { row[j] = exp(row[j] - lse) * scale }
            row[Int(targets[r])] -= scale
        }
    }
}
