import Foundation
@testable import SluiceTrain
import Testing

/// Central finite differences against every backward kernel: for a kernel y = f(x) and fixed random weights w,
/// the scalar L = Σ w·y has dL/dx = backward(dout: w), which must match (L(x + h) − L(x − h)) / 2h.
@Suite("Kernel gradients by finite differences")
struct KernelGradientTests {
    var random = GaussianRandom(seed: 42)

    mutating func normals(_ count: Int, scale: Float = 1) -> [Float] { (0..<count).map { _ in random.next() * scale } }

    /// Checks `analytic` against the numeric gradient of `loss` with respect to every element of `values`.
    static func check(
        _ name: String, values: inout [Float], analytic: [Float], step: Float = 1e-2, tolerance: Float = 2e-2,
        loss: ([Float]) -> Double
    ) {
        #expect(values.count == analytic.count)
        var worst: Float = 0
        var scale: Float = 1e-3
        for i in values.indices {
            let saved = values[i]
            values[i] = saved + step
            let plus = loss(values)
            values[i] = saved - step
            let minus = loss(values)
            values[i] = saved
            let numeric = Float((plus - minus) / Double(2 * step))
            worst = max(worst, abs(numeric - analytic[i]))
            scale = max(scale, abs(analytic[i]))
        }
        #expect(worst / scale < tolerance, "\(name): worst difference \(worst) at gradient scale \(scale)")
    }

    static func weighted(_ y: [Float], _ w: [Float]) -> Double {
        var sum: Double = 0
        for i in y.indices { sum += Double(y[i]) * Double(w[i]) }
        return sum
    }

    @Test mutating func layerNorm() {
        let rows = 3, c = 8
        var x = normals(rows * c), weight = normals(c), bias = normals(c)
        let w = normals(rows * c)
        func run(_ x: [Float], _ weight: [Float], _ bias: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: rows * c), mean = [Float](repeating: 0, count: rows), rstd = mean
            Kernels.layerNormForward(&out, mean: &mean, rstd: &rstd, x, weight: weight, bias: bias, rows: rows, channels: c)
            return out
        }
        var out = [Float](repeating: 0, count: rows * c), mean = [Float](repeating: 0, count: rows), rstd = mean
        Kernels.layerNormForward(&out, mean: &mean, rstd: &rstd, x, weight: weight, bias: bias, rows: rows, channels: c)
        var dx = [Float](repeating: 0, count: rows * c), dw = [Float](repeating: 0, count: c), db = dw
        Kernels.layerNormBackward(
            dinput: &dx, dweight: &dw, dbias: &db, dout: w, input: x, weight: weight, mean: mean, rstd: rstd, rows: rows,
            channels: c)
        Self.check("layernorm dx", values: &x, analytic: dx, step: 1e-3) { Self.weighted(run($0, weight, bias), w) }
        Self.check("layernorm dweight", values: &weight, analytic: dw) { Self.weighted(run(x, $0, bias), w) }
        Self.check("layernorm dbias", values: &bias, analytic: db) { Self.weighted(run(x, weight, $0), w) }
    }

    @Test mutating func linear() {
        let rows = 4, inputs = 6, outputs = 5
        var x = normals(rows * inputs), weight = normals(outputs * inputs), bias = normals(outputs)
        let w = normals(rows * outputs)
        func run(_ x: [Float], _ weight: [Float], _ bias: [Float]) -> [Float] {
            var gemm = GEMM()
            var out = [Float](repeating: 0, count: rows * outputs)
            Kernels.linearForward(&gemm, &out, x, weight: weight, bias: bias, rows: rows, inputs: inputs, outputs: outputs)
            return out
        }
        var gemm = GEMM()
        var dx = [Float](repeating: 0, count: rows * inputs), dw = [Float](repeating: 0, count: outputs * inputs)
        var db = [Float](repeating: 0, count: outputs)
        Kernels.linearBackward(
            &gemm, dinput: &dx, dweight: &dw, dbias: &db, dout: w, input: x, weight: weight, rows: rows, inputs: inputs,
            outputs: outputs)
        Self.check("linear dx", values: &x, analytic: dx) { Self.weighted(run($0, weight, bias), w) }
        Self.check("linear dweight", values: &weight, analytic: dw) { Self.weighted(run(x, $0, bias), w) }
        Self.check("linear dbias", values: &bias, analytic: db) { Self.weighted(run(x, weight, $0), w) }
    }

    @Test mutating func gelu() {
        let n = 64
        var x = normals(n, scale: 2)
        let w = normals(n)
        var dx = [Float](repeating: 0, count: n)
        Kernels.geluBackward(&dx, input: x, dout: w, count: n)
        Self.check("gelu", values: &x, analytic: dx, step: 1e-3) { x in
            var out = [Float](repeating: 0, count: n)
            Kernels.geluForward(&out, x, count: n)
            return Self.weighted(out, w)
        }
    }

    @Test mutating func causalAttention() {
        let t = 5, c = 8, hs = 4  // one head of two; the other head's slice must get zero gradient
        var qkv = normals(t * 3 * c)
        let w = normals(t * c)
        func run(_ qkv: [Float]) -> [Float] {
            var gemm = GEMM()
            var out = [Float](repeating: 0, count: t * c), p = [Float](repeating: 0, count: t * t)
            Kernels.attentionForward(&gemm, out: &out, probabilities: &p, qkv: qkv, time: t, channels: c, headSize: hs)
            return out
        }
        var gemm = GEMM()
        var out = [Float](repeating: 0, count: t * c), p = [Float](repeating: 0, count: t * t)
        Kernels.attentionForward(&gemm, out: &out, probabilities: &p, qkv: qkv, time: t, channels: c, headSize: hs)
        for i in 0..<t { for j in (i + 1)..<max(i + 1, t) { #expect(p[i * t + j] == 0, "causal mask at \(i),\(j)") } }
        var dqkv = [Float](repeating: 0, count: t * 3 * c), scratch = [Float](repeating: 0, count: t * t)
        // Only the head's first hs output columns count.
        var wHead = w
        for r in 0..<t { for j in hs..<c { wHead[r * c + j] = 0 } }
        Kernels.attentionBackward(
            &gemm, dqkv: &dqkv, scratch: &scratch, dout: wHead, probabilities: p, qkv: qkv, time: t, channels: c, headSize: hs)
        Self.check("attention dqkv", values: &qkv, analytic: dqkv, step: 1e-3) { qkv in
            let y = run(qkv)
            var sum: Double = 0
            for r in 0..<t { for j in 0..<hs { sum += Double(y[r * c + j]) * Double(w[r * c + j]) } }
            return sum
        }
    }

    @Test mutating func crossEntropy() {
        let rows = 3, v = 256
        var logits = normals(rows * v, scale: 3)
        let targets: [Int32] = [0, 17, 255]
        func run(_ logits: [Float]) -> Double {
            var losses = [Float](repeating: 0, count: rows), lse = losses
            return Kernels.crossEntropyForward(
                losses: &losses, logSumExp: &lse, logits: logits, targets: targets, rows: rows, vocabulary: v)
        }
        var losses = [Float](repeating: 0, count: rows), lse = losses
        _ = Kernels.crossEntropyForward(losses: &losses, logSumExp: &lse, logits: logits, targets: targets, rows: rows, vocabulary: v)
        var d = logits
        Kernels.crossEntropyBackward(logits: &d, logSumExp: lse, targets: targets, rows: rows, vocabulary: v, scale: 1)
        Self.check("cross-entropy", values: &logits, analytic: d, step: 1e-2) { run($0) }
    }

    @Test mutating func embedding() {
        let b = 2, t = 3, c = 4, v = 256
        var wte = normals(v * c), wpe = normals(t * c)
        let tokens: [Int32] = [5, 9, 5, 200, 9, 1]
        let w = normals(b * t * c)
        func run(_ wte: [Float], _ wpe: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: b * t * c)
            Kernels.encoderForward(&out, tokens: tokens, wte: wte, wpe: wpe, rows: 0..<(b * t), time: t, channels: c)
            return out
        }
        var dwte = [Float](repeating: 0, count: v * c), dwpe = [Float](repeating: 0, count: t * c)
        Kernels.encoderBackward(dwte: &dwte, dwpe: &dwpe, dout: w, tokens: tokens, rows: b * t, time: t, channels: c)
        Self.check("embedding dwpe", values: &wpe, analytic: dwpe) { Self.weighted(run(wte, $0), w) }
        // Only the rows of used tokens matter; checking all 1024 entries is cheap.
        Self.check("embedding dwte", values: &wte, analytic: dwte) { Self.weighted(run($0, wpe), w) }
    }

    @Test func fastExponentialIsAccurate() {
        var worst: Float = 0
        var x: Float = -80
        while x < 80 {
            let reference = Float(Foundation.exp(Double(x)))
            worst = max(worst, abs(Kernels.exp(x) - reference) / reference)
            x += 0.0137
        }
        #expect(worst < 5e-7, "relative error \(worst)")
        #expect(Kernels.tanh(20) == 1 && Kernels.tanh(-20) == -1)
    }
}
