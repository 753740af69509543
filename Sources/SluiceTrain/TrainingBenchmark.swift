internal import Foundation

/// Times training steps of a model shape on synthetic bytes, for `sluice eval train-speed`: tokens/s, the share
/// of time inside `cblas_sgemm`, its achieved GFLOP/s, and this machine's sgemm peak for comparison.
public struct TrainingBenchmark: Sendable {
    public var model = GPTConfiguration()
    public var batch = 16
    public var steps = 20
    public var warmupSteps = 3
    public var threads = 2
    public var recompute = false
    public init() {}

    public struct Result: Sendable, Codable {
        public var threads: Int
        public var layers: Int
        public var dim: Int
        public var context: Int
        public var batch: Int
        public var recompute: Bool
        public var steps: Int
        public var loss: Float
        public var seconds: Double
        public var tokensPerSecond: Double
        public var sgemmShare: Double
        public var sgemmGFLOPS: Double
        public var sgemmPeakGFLOPS: Double
        public var activationMiB: Double
        public var parameters: Int

        enum CodingKeys: String, CodingKey {
            case threads, layers, dim, context, batch, recompute, steps, loss, seconds
            case tokensPerSecond = "tokens_per_second", sgemmShare = "sgemm_share", sgemmGFLOPS = "sgemm_gflops"
            case sgemmPeakGFLOPS = "sgemm_peak_gflops", activationMiB = "activation_mib", parameters
        }
    }

    public func run() -> Result {
        setBLASThreads(1)
        let gpt = GPT(configuration: model, seed: 1)
        gpt.threads = threads
        gpt.recomputesActivations = recompute
        let optimizer = AdamW(for: gpt)
        let t = model.contextLength
        var random = GaussianRandom(seed: 7)
        // Bytes with some structure (a repeating text with noise) so the loss moves like on real text.
        let text = Array("Sluice curates streams of text for language models; 数据经过清洗、去重和过滤。\n".utf8)
        func makeBatch() -> ([UInt8], [UInt8]) {
            var inputs = [UInt8](repeating: 0, count: batch * t), targets = inputs
            for b in 0..<batch {
                let start = Int(random.nextUInt64() % UInt64(text.count))
                for i in 0..<t {
                    inputs[b * t + i] = text[(start + i) % text.count]
                    targets[b * t + i] = text[(start + i + 1) % text.count]
                }
            }
            return (inputs, targets)
        }
        var loss: Float = 0
        func step() {
            let (inputs, targets) = makeBatch()
            gpt.zeroGradients()
            loss = gpt.forward(inputs: inputs, targets: targets, batch: batch, time: t)
            gpt.backward()
            optimizer.step(gpt, learningRate: 3e-4)
        }
        for _ in 0..<warmupSteps { step() }
        gpt.gemmStatistics = GEMMStatistics()
        let start = monotonicNanoseconds()
        for _ in 0..<steps { step() }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        let statistics = gpt.gemmStatistics
        return Result(
            threads: threads, layers: model.layers, dim: model.channels, context: t, batch: batch, recompute: recompute,
            steps: steps, loss: loss, seconds: seconds, tokensPerSecond: Double(steps * batch * t) / seconds,
            sgemmShare: statistics.seconds / Double(threads) / seconds, sgemmGFLOPS: statistics.gflops * Double(threads),
            sgemmPeakGFLOPS: Self.sgemmPeak(threads: threads), activationMiB: Double(gpt.activationBytes) / 1_048_576,
            parameters: gpt.parameterCount)
    }

    /// GFLOP/s of a large square-ish product (M=2048, K=N=512) on `threads` threads, best of five.
    public static func sgemmPeak(threads: Int) -> Double {
        setBLASThreads(threads)
        let m = 2048, n = 512, k = 512
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: n * k), c = FloatBuffer(count: m * n)
        for i in 0..<(m * k) { a.pointer[i] = Float(i % 7) * 0.01 }
        for i in 0..<(n * k) { b.pointer[i] = Float(i % 5) * 0.01 }
        var gemm = GEMM()
        var best = 0.0
        for _ in 0..<5 {
            gemm.statistics = GEMMStatistics()
            gemm(false, true, m: m, n: n, k: k, a.pointer, lda: k, b.pointer, ldb: k, beta: 0, c.pointer, ldc: n)
            best = max(best, gemm.statistics.gflops)
        }
        return best
    }
}
