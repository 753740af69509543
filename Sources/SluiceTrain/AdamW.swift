internal import Foundation

/// AdamW with decoupled weight decay on matrices and embeddings only (biases and LayerNorm parameters are not
/// decayed), bias-corrected moments, and global-norm gradient clipping — PyTorch's `AdamW` and
/// `clip_grad_norm_` step for step.
public struct AdamWConfiguration: Sendable, Equatable, Codable {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.1
    /// Clip the global gradient norm to this (0: no clipping).
    public var clipNorm: Float = 1
    public init() {}

    enum CodingKeys: String, CodingKey {
        case beta1, beta2, epsilon, weightDecay = "weight_decay", clipNorm = "clip_norm"
    }
}

/// Linear warm-up to `maxRate`, then a cosine decay to `minRate` at `totalSteps`.
public struct LearningRateSchedule: Sendable, Equatable, Codable {
    public var maxRate: Float = 1e-3
    public var minRate: Float = 1e-4
    public var warmupSteps = 100
    public var totalSteps = 1000
    public init() {}
    public init(maxRate: Float, minRate: Float, warmupSteps: Int, totalSteps: Int) {
        self.maxRate = maxRate
        self.minRate = minRate
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// The rate for 0-based `step`.
    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return maxRate * Float(step + 1) / Float(warmupSteps) }
        if step >= totalSteps { return minRate }
        let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
        return minRate + Float(0.5 * (1 + cos(Double.pi * progress))) * (maxRate - minRate)
    }

    enum CodingKeys: String, CodingKey {
        case maxRate = "max_lr", minRate = "min_lr", warmupSteps = "warmup_steps", totalSteps = "total_steps"
    }
}

/// Optimizer state for one model: the two moment buffers (same layout as the parameters) and the step count.
public final class AdamW: @unchecked Sendable {
    // @unchecked: used by the one trainer that owns the model.
    public let configuration: AdamWConfiguration
    let m: FloatBuffer
    let v: FloatBuffer
    /// Steps taken (PyTorch's `step`, used for bias correction).
    public private(set) var steps = 0
    private let decayMask: [(range: Range<Int>, decays: Bool)]

    public init(for model: GPT, configuration: AdamWConfiguration = AdamWConfiguration()) {
        self.configuration = configuration
        m = FloatBuffer(count: model.parameterCount)
        v = FloatBuffer(count: model.parameterCount)
        decayMask = model.layout.tensors.map { ($0.offset..<($0.offset + $0.count), $0.decays) }
    }

    /// The global L2 norm of the gradients.
    public static func gradientNorm(_ model: GPT) -> Float {
        let g = model.gradients.pointer
        var sum: Double = 0
        var start = 0
        while start < model.parameterCount {
            let end = min(start + 4096, model.parameterCount)
            var partial: Float = 0
            for i in start..<end { partial += g[i] * g[i] }
            sum += Double(partial)
            start = end
        }
        return Float(sum.squareRoot())
    }

    /// Clips (when configured) and applies one update at `learningRate`. Returns the gradient norm before clipping.
    @discardableResult
    public func step(_ model: GPT, learningRate lr: Float) -> Float {
        let norm = Self.gradientNorm(model)
        let g = model.gradients.pointer, p = model.parameters.pointer
        let mp = m.pointer, vp = v.pointer
        var gradientScale: Float = 1
        if configuration.clipNorm > 0 {
            let coefficient = configuration.clipNorm / (norm + 1e-6)
            if coefficient < 1 { gradientScale = coefficient }
        }
        steps += 1
        let b1 = configuration.beta1, b2 = configuration.beta2, eps = configuration.epsilon
        let correction1 = 1 - Float(pow(Double(b1), Double(steps)))
        let correction2Root = Float((1 - pow(Double(b2), Double(steps))).squareRoot())
        let stepSize = lr / correction1
        for (range, decays) in decayMask {
            let decay: Float = decays ? 1 - lr * configuration.weightDecay : 1
            for i in range {
                let grad = g[i] * gradientScale
                let mi = mp[i] + (grad - mp[i]) * (1 - b1)
                let vi = vp[i] * b2 + (1 - b2) * grad * grad
                mp[i] = mi
                vp[i] = vi
                let denominator = vi.squareRoot() / correction2Root + eps
                p[i] = p[i] * decay - stepSize * mi / denominator
            }
        }
        return norm
    }

    /// Restores moments and step count from a checkpoint.
    func restore(m values: [Float], v second: [Float], steps: Int) {
        precondition(values.count == m.count && second.count == v.count)
        values.withUnsafeBufferPointer { m.pointer.update(from: $0.baseAddress!, count: m.count) }
        second.withUnsafeBufferPointer { v.pointer.update(from: $0.baseAddress!, count: v.count) }
        self.steps = steps
    }
}
