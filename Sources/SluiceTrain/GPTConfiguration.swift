/// The shape of a byte-level GPT: vocabulary 256 (bytes), learned positions, pre-norm transformer blocks with a
/// GELU MLP, and the token embedding tied as the output head.
public struct GPTConfiguration: Sendable, Equatable, Codable {
    /// Tokens are bytes.
    public var vocabularySize = 256
    /// The longest sequence the model sees (rows of the position embedding).
    public var contextLength = 128
    public var layers = 4
    /// Model width (`d`).
    public var channels = 128
    /// Attention heads; `channels` must be a multiple.
    public var heads = 4

    public init() {}

    public init(contextLength: Int, layers: Int, channels: Int, heads: Int) {
        self.contextLength = contextLength
        self.layers = layers
        self.channels = channels
        self.heads = heads
    }

    /// Errors in plain words, or nil when the shape is usable.
    public var problem: String? {
        if vocabularySize != 256 { return "vocabulary_size must be 256 (byte tokens), not \(vocabularySize)" }
        if contextLength < 1 || contextLength > 65536 { return "context length must be 1…65536, not \(contextLength)" }
        if layers < 1 || layers > 256 { return "layers must be 1…256, not \(layers)" }
        if channels < 1 || channels > 65536 { return "channels must be 1…65536, not \(channels)" }
        if heads < 1 || channels % heads != 0 { return "channels (\(channels)) must be a multiple of heads (\(heads))" }
        return nil
    }

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocabulary_size", contextLength = "context_length", layers, channels, heads
    }
}

/// One named parameter tensor inside the flat parameter buffer.
public struct ParameterTensor: Sendable, Equatable {
    /// PyTorch-style name (`h.0.attn.c_attn.weight`), the key in a safetensors checkpoint.
    public let name: String
    public let shape: [Int]
    /// Offset in floats from the start of the buffer.
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// AdamW applies weight decay to matrices and embeddings only, as GPT trainers do.
    public var decays: Bool { shape.count >= 2 }
}

/// Where every parameter lives in the one flat buffer that parameters, gradients and both AdamW moments share:
/// `wte`, `wpe`, then per layer `ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`, then
/// `ln_f`, each Linear weight stored (out, in) as PyTorch does.
public struct ParameterLayout: Sendable, Equatable {
    public let tensors: [ParameterTensor]
    public let count: Int
    /// Per layer, the offset of each of its twelve tensors, in the order above.
    let layerOffsets: [LayerOffsets]
    let wte: Int
    let wpe: Int
    let lnfWeight: Int
    let lnfBias: Int

    struct LayerOffsets: Sendable, Equatable {
        var ln1Weight = 0, ln1Bias = 0, qkvWeight = 0, qkvBias = 0, projWeight = 0, projBias = 0
        var ln2Weight = 0, ln2Bias = 0, fcWeight = 0, fcBias = 0, fcProjWeight = 0, fcProjBias = 0
    }

    public init(_ config: GPTConfiguration) {
        let c = config.channels
        var tensors: [ParameterTensor] = []
        var next = 0
        func add(_ name: String, _ shape: [Int]) -> Int {
            let tensor = ParameterTensor(name: name, shape: shape, offset: next)
            tensors.append(tensor)
            next += tensor.count
            return tensor.offset
        }
        wte = add("wte.weight", [config.vocabularySize, c])
        wpe = add("wpe.weight", [config.contextLength, c])
        var layers: [LayerOffsets] = []
        for l in 0..<config.layers {
            var o = LayerOffsets()
            o.ln1Weight = add("h.\(l).ln_1.weight", [c])
            o.ln1Bias = add("h.\(l).ln_1.bias", [c])
            o.qkvWeight = add("h.\(l).attn.c_attn.weight", [3 * c, c])
            o.qkvBias = add("h.\(l).attn.c_attn.bias", [3 * c])
            o.projWeight = add("h.\(l).attn.c_proj.weight", [c, c])
            o.projBias = add("h.\(l).attn.c_proj.bias", [c])
            o.ln2Weight = add("h.\(l).ln_2.weight", [c])
            o.ln2Bias = add("h.\(l).ln_2.bias", [c])
            o.fcWeight = add("h.\(l).mlp.c_fc.weight", [4 * c, c])
            o.fcBias = add("h.\(l).mlp.c_fc.bias", [4 * c])
            o.fcProjWeight = add("h.\(l).mlp.c_proj.weight", [c, 4 * c])
            o.fcProjBias = add("h.\(l).mlp.c_proj.bias", [c])
            layers.append(o)
        }
        lnfWeight = add("ln_f.weight", [c])
        lnfBias = add("ln_f.bias", [c])
        self.tensors = tensors
        self.layerOffsets = layers
        self.count = next
    }

    public func tensor(named name: String) -> ParameterTensor? { tensors.first { $0.name == name } }
}

/// A zero-filled, 64-byte aligned block of floats that lives as long as its owner.
final class FloatBuffer: @unchecked Sendable {
    // @unchecked: the owner (a model or a trainer) decides who writes when; kernels get disjoint ranges.
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<Float>.stride, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(1, count))
        pointer.initialize(repeating: 0, count: max(1, count))
    }

    deinit { pointer.deallocate() }

    func zero() { pointer.update(repeating: 0, count: count) }

    subscript(range: Range<Int>) -> UnsafeMutablePointer<Float> { pointer + range.lowerBound }
}
