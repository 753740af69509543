public import Foundation
internal import COpenBLAS

/// Weight-only INT8 quantization of a ``GPT``: every matrix (the token embedding, which is also the output head,
/// and the four Linear weights of each block) becomes int8 with one float scale per output row
/// (scale = max |w| / 127); positions, LayerNorm parameters and biases stay float. Stored as safetensors: an `I8`
/// tensor per matrix with a `<name>.scale` `F32` tensor, and `sluice.quantization: int8-rowwise` in the metadata.
public struct QuantizedWeights: @unchecked Sendable {
    // @unchecked: immutable after init; the buffers are only read.
    public struct Matrix: @unchecked Sendable {
        public let rows: Int
        public let columns: Int
        public let values: [Int8]
        public let scales: [Float]
    }

    /// By offset of the tensor in ``ParameterLayout``.
    public let matrices: [Int: Matrix]

    public static func isQuantized(_ tensor: ParameterTensor) -> Bool {
        tensor.shape.count == 2 && tensor.name != "wpe.weight"
    }

    /// Quantizes `model`'s matrices.
    public init(model: GPT) {
        var matrices: [Int: Matrix] = [:]
        for tensor in model.layout.tensors where Self.isQuantized(tensor) {
            let rows = tensor.shape[0], columns = tensor.shape[1]
            let w = model.parameters.pointer + tensor.offset
            var values = [Int8](repeating: 0, count: rows * columns), scales = [Float](repeating: 0, count: rows)
            for r in 0..<rows {
                var maximum: Float = 0
                for c in 0..<columns { maximum = max(maximum, abs(w[r * columns + c])) }
                let scale = maximum > 0 ? maximum / 127 : 1
                scales[r] = scale
                for c in 0..<columns { values[r * columns + c] = Int8(max(-127, min(127, (w[r * columns + c] / scale).rounded()))) }
            }
            matrices[tensor.offset] = Matrix(rows: rows, columns: columns, values: values, scales: scales)
        }
        self.matrices = matrices
    }

    init(matrices: [Int: Matrix]) { self.matrices = matrices }

    /// A float model whose matrices are the dequantized int8 ones (what the quantized model computes).
    public func dequantized(_ model: GPT) -> GPT {
        var values = model.allParameters
        for (offset, matrix) in matrices {
            for r in 0..<matrix.rows {
                for c in 0..<matrix.columns { values[offset + r * matrix.columns + c] = Float(matrix.values[r * matrix.columns + c]) * matrix.scales[r] }
            }
        }
        return GPT(configuration: model.configuration, parameters: values)
    }

    /// Writes the quantized model: int8 matrices with their scales, every other tensor as F32.
    public func save(_ model: GPT, to url: URL) throws(TrainError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let metadata = [
            "sluice.model": String(decoding: (try? encoder.encode(model.configuration)) ?? Data(), as: UTF8.self),
            "sluice.quantization": "int8-rowwise", "format": "pt",
        ]
        var keep: [[Int8]] = [], keepScales: [[Float]] = []
        for tensor in model.layout.tensors {
            if let matrix = matrices[tensor.offset] {
                keep.append(matrix.values)
                keepScales.append(matrix.scales)
            }
        }
        var sources: [SafeTensors.Source] = []
        var index = 0
        // Pointers into the arrays above stay valid while they are alive and unchanged (until the write ends).
        let int8Pointers = keep.map { array -> UnsafeMutableBufferPointer<Int8> in
            let pointer = UnsafeMutableBufferPointer<Int8>.allocate(capacity: array.count)
            _ = pointer.initialize(from: array)
            return pointer
        }
        let scalePointers = keepScales.map { array -> UnsafeMutableBufferPointer<Float> in
            let pointer = UnsafeMutableBufferPointer<Float>.allocate(capacity: array.count)
            _ = pointer.initialize(from: array)
            return pointer
        }
        defer {
            int8Pointers.forEach { $0.deallocate() }
            scalePointers.forEach { $0.deallocate() }
        }
        for tensor in model.layout.tensors {
            if matrices[tensor.offset] != nil {
                sources.append(.init(name: tensor.name, shape: tensor.shape, int8: UnsafeBufferPointer(int8Pointers[index])))
                sources.append(.init(name: tensor.name + ".scale", shape: [tensor.shape[0]], values: UnsafeBufferPointer(scalePointers[index])))
                index += 1
            } else {
                sources.append(.init(name: tensor.name, shape: tensor.shape, values: .init(start: model.parameters.pointer + tensor.offset, count: tensor.count)))
            }
        }
        try SafeTensors.write(sources, metadata: metadata, to: url)
    }

    /// Reads the int8 matrices of a quantized file (nil when the file is not quantized).
    static func load(_ tensors: SafeTensors, layout: ParameterLayout) throws(TrainError) -> QuantizedWeights? {
        guard tensors.metadata["sluice.quantization"] == "int8-rowwise" else { return nil }
        var matrices: [Int: Matrix] = [:]
        for tensor in layout.tensors where isQuantized(tensor) {
            let values = try tensors.int8s(tensor.name), scales = try tensors.floats(tensor.name + ".scale")
            guard values.count == tensor.count, scales.count == tensor.shape[0] else {
                throw TrainError("quantized tensor \(tensor.name) has the wrong size")
            }
            matrices[tensor.offset] = Matrix(rows: tensor.shape[0], columns: tensor.shape[1], values: values, scales: scales)
        }
        return QuantizedWeights(matrices: matrices)
    }
}

extension Kernels {
    /// y (rows × outputs) = x · (scales ⊙ q)ᵀ + bias, q int8 (outputs × inputs). The matrix is expanded to floats
    /// in `scratch` (a plain loop the compiler vectorises), then multiplied by `cblas_sgemv` or `cblas_sgemm`.
    static func int8Linear(
        _ y: FloatPointer, _ x: ConstFloatPointer, _ matrix: QuantizedWeights.Matrix, bias: ConstFloatPointer?, rows: Int,
        scratch: FloatPointer
    ) {
        let inputs = matrix.columns, outputs = matrix.rows
        matrix.values.withUnsafeBufferPointer { q in
            matrix.scales.withUnsafeBufferPointer { scales in
                for o in 0..<outputs {
                    let source = q.baseAddress! + o * inputs, target = scratch + o * inputs, scale = scales[o]
                    for i in 0..<inputs { target[i] = Float(source[i]) * scale }
                }
            }
        }
        for r in 0..<rows {
            if let bias { (y + r * outputs).update(from: bias, count: outputs) } else { (y + r * outputs).update(repeating: 0, count: outputs) }
        }
        if rows == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(outputs), Int32(inputs), 1, scratch, Int32(inputs), x, 1, 1, y, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outputs), Int32(inputs), 1, x, Int32(inputs),
                        scratch, Int32(inputs), 1, y, Int32(outputs))
        }
    }
}
