import Foundation
@testable import SluiceTrain
import Testing

@Suite("KV-cached inference")
struct InferenceTests {
    static func reference(_ model: GPT, _ tokens: [UInt8]) -> [[Float]] {
        model.forward(inputs: tokens, targets: nil, batch: 1, time: tokens.count)
        let logits = model.lastLogits
        return (0..<tokens.count).map { Array(logits[($0 * 256)..<($0 * 256 + 256)]) }
    }

    static func close(_ a: [Float], _ b: [Float]) -> Bool {
        let scale = b.map(abs).max() ?? 1
        return zip(a, b).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, scale) }
    }

    @Test func cachedDecodingMatchesFullRecomputation() throws {
        let model = GPT(configuration: GPTConfiguration(contextLength: 32, layers: 2, channels: 32, heads: 4), seed: 5)
        let engine = InferenceEngine(model: model, slots: 3)
        let first = Array("Sluice streams".utf8), second = Array("数据".utf8)
        // Two prompts prefilled in one call, every position's logits returned.
        let rows = first.enumerated().map { InferenceEngine.Row(slot: 0, position: $0.offset, token: $0.element) }
            + second.enumerated().map { InferenceEngine.Row(slot: 2, position: $0.offset, token: $0.element) }
        let prefill = engine.run(rows)
        let expectedFirst = Self.reference(model, first), expectedSecond = Self.reference(model, second)
        for i in first.indices { #expect(Self.close(prefill[i], expectedFirst[i]), "prompt 1 position \(i)") }
        for i in second.indices { #expect(Self.close(prefill[first.count + i], expectedSecond[i]), "prompt 2 position \(i)") }
        // Greedy decoding, both sequences in each step (batch of two; then one alone: sgemv).
        var a = first, b = second
        var sampler = TokenSampler()
        var nextA = sampler.next(prefill[first.count - 1]), nextB = sampler.next(prefill.last!)
        for step in 0..<6 {
            var stepRows = [InferenceEngine.Row(slot: 0, position: a.count, token: nextA)]
            if step < 3 { stepRows.append(InferenceEngine.Row(slot: 2, position: b.count, token: nextB)) }
            let out = engine.run(stepRows)
            a.append(nextA)
            #expect(Self.close(out[0], Self.reference(model, a).last!), "step \(step), sequence 1")
            nextA = sampler.next(out[0])
            if step < 3 {
                b.append(nextB)
                #expect(Self.close(out[1], Self.reference(model, b).last!), "step \(step), sequence 2")
                nextB = sampler.next(out[1])
            }
        }
    }

    @Test func samplingIsSeededAndTopPNarrows() {
        var logits = [Float](repeating: -10, count: 256)
        logits[65] = 5
        logits[66] = 4.9
        var first = TokenSampler(temperature: 1, topP: 1, seed: 9), second = TokenSampler(temperature: 1, topP: 1, seed: 9)
        let drawsA = (0..<50).map { _ in first.next(logits) }, drawsB = (0..<50).map { _ in second.next(logits) }
        #expect(drawsA == drawsB && Set(drawsA).isSubset(of: [65, 66]) && Set(drawsA).count == 2)
        var narrow = TokenSampler(temperature: 1, topP: 0.3, seed: 1)
        #expect((0..<20).allSatisfy { _ in narrow.next(logits) == 65 })
        var greedy = TokenSampler()
        #expect(greedy.next(logits) == 65)
    }
}

@Suite("INT8 weight-only quantization")
struct QuantizationTests {
    @Test func savesLoadsAndDecodesWithInt8Weights() throws {
        let directory = ShardStreamLoaderTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = GPT(configuration: GPTConfiguration(contextLength: 32, layers: 2, channels: 32, heads: 4), seed: 11)
        let float = directory.appendingPathComponent("float.safetensors"), int8 = directory.appendingPathComponent("int8.safetensors")
        try model.save(to: float)
        try QuantizedWeights(model: model).save(model, to: int8)
        let size = { (url: URL) in (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0 }
        #expect(try size(int8) * 3 < size(float), "int8 matrices take a quarter of the bytes")
        let loaded = try GPT.load(int8)
        #expect(loaded.quantized != nil)
        // Each weight within half a quantization step of the original.
        for tensor in model.layout.tensors where QuantizedWeights.isQuantized(tensor) {
            let original = model.values(of: tensor.name), restored = loaded.values(of: tensor.name)
            let step = (original.map(abs).max() ?? 0) / 127
            #expect(zip(original, restored).allSatisfy { abs($0 - $1) <= step / 2 + 1e-7 }, "\(tensor.name)")
        }
        #expect(loaded.values(of: "ln_f.bias") == model.values(of: "ln_f.bias") && loaded.values(of: "wpe.weight") == model.values(of: "wpe.weight"))
        // The int8 engine computes what the dequantized float model computes.
        let engine = InferenceEngine(model: loaded, slots: 1)
        #expect(engine.isQuantized)
        let prompt = Array("quantized".utf8)
        let logits = engine.run(prompt.enumerated().map { InferenceEngine.Row(slot: 0, position: $0.offset, token: $0.element) })
        let reference = InferenceTests.reference(loaded, prompt)
        for i in prompt.indices { #expect(InferenceTests.close(logits[i], reference[i]), "position \(i)") }
        let step = engine.run([InferenceEngine.Row(slot: 0, position: prompt.count, token: 65)])
        #expect(InferenceTests.close(step[0], InferenceTests.reference(loaded, prompt + [65]).last!))
    }
}
