import Foundation
@testable import SluiceTrain
import Testing

/// The committed fixture was written by `Benchmarks/train/gpt_torch.py fixture` (PyTorch 2.13, CPU): a
/// 2-layer, d=32, 4-head model with context 16, batch 2×16; its parameters, logits, loss, every parameter
/// gradient and the losses of ten AdamW steps (warm-up 3, cosine to step 10, clip 1.0, decay 0.1).
@Suite("GPT against the PyTorch reference")
struct GPTReferenceTests {
    static let fixtureURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/gpt-tiny.safetensors")

    struct Fixture {
        let tensors: SafeTensors
        let model: GPT
        let inputs: [UInt8]
        let targets: [UInt8]
        let batch = 2, time = 16
    }

    static func load() throws -> Fixture {
        let tensors = try SafeTensors(contentsOf: fixtureURL)
        let config = GPTConfiguration(contextLength: 16, layers: 2, channels: 32, heads: 4)
        let layout = ParameterLayout(config)
        let order = try JSONSerialization.jsonObject(with: Data(tensors.metadata["order", default: "[]"].utf8)) as? [String]
        #expect(order == layout.tensors.map(\.name), "parameter order matches PyTorch's named_parameters()")
        var values: [Float] = []
        for tensor in layout.tensors {
            let entry = try #require(tensors.entries["param.\(tensor.name)"])
            #expect(entry.shape == tensor.shape, "shape of \(tensor.name)")
            values += try tensors.floats("param.\(tensor.name)")
        }
        let model = GPT(configuration: config, parameters: values)
        let inputs = try tensors.int32s("inputs").map { UInt8($0) }
        let targets = try tensors.int32s("targets").map { UInt8($0) }
        return Fixture(tensors: tensors, model: model, inputs: inputs, targets: targets)
    }

    /// max |a − b| / (max |b| + 1e-8): the error relative to the tensor's scale.
    static func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        var worst: Float = 0, scale: Float = 0
        for i in a.indices {
            worst = max(worst, abs(a[i] - b[i]))
            scale = max(scale, abs(b[i]))
        }
        return worst / (scale + 1e-8)
    }

    @Test(arguments: [false, true], [1, 2])
    func logitsLossAndEveryGradientMatch(recompute: Bool, threads: Int) throws {
        let f = try Self.load()
        f.model.recomputesActivations = recompute
        f.model.threads = threads
        let loss = f.model.forward(inputs: f.inputs, targets: f.targets, batch: f.batch, time: f.time)
        let expectedLoss = try f.tensors.floats("loss")[0]
        #expect(abs(loss - expectedLoss) < 1e-5, "loss \(loss) vs PyTorch \(expectedLoss)")
        let logitsError = Self.relativeError(f.model.lastLogits, try f.tensors.floats("logits"))
        #expect(logitsError < 1e-5, "logits relative error \(logitsError)")
        f.model.zeroGradients()
        f.model.backward()
        for tensor in f.model.layout.tensors {
            let error = Self.relativeError(f.model.values(of: tensor.name, gradient: true), try f.tensors.floats("grad.\(tensor.name)"))
            #expect(error < 1e-4, "gradient of \(tensor.name): relative error \(error)")
        }
    }

    @Test func tenAdamWStepsFollowPyTorch() throws {
        let f = try Self.load()
        let optimizer = AdamW(for: f.model)
        let schedule = LearningRateSchedule(maxRate: 1e-3, minRate: 1e-4, warmupSteps: 3, totalSteps: 10)
        let expected = try f.tensors.floats("step_losses")
        for step in 0..<10 {
            f.model.zeroGradients()
            let loss = f.model.forward(inputs: f.inputs, targets: f.targets, batch: f.batch, time: f.time)
            f.model.backward()
            optimizer.step(f.model, learningRate: schedule.rate(at: step))
            #expect(abs(loss - expected[step]) < 1e-4, "step \(step): loss \(loss) vs PyTorch \(expected[step])")
        }
    }

    @Test func accumulatingTwoHalvesGivesTheFullBatchGradient() throws {
        let f = try Self.load()
        f.model.zeroGradients()
        f.model.forward(inputs: f.inputs, targets: f.targets, batch: 2, time: 16)
        f.model.backward()
        let full = f.model.layout.tensors.map { f.model.values(of: $0.name, gradient: true) }
        f.model.zeroGradients()
        for row in 0..<2 {
            let range = (row * 16)..<(row * 16 + 16)
            f.model.forward(inputs: Array(f.inputs[range]), targets: Array(f.targets[range]), batch: 1, time: 16)
            f.model.backward(scale: 0.5)
        }
        for (tensor, expected) in zip(f.model.layout.tensors, full) {
            let error = Self.relativeError(f.model.values(of: tensor.name, gradient: true), expected)
            #expect(error < 1e-5, "\(tensor.name): \(error)")
        }
    }
}
