internal import COpenBLAS

/// A dense row-major `Float` matrix whose products run in OpenBLAS.
public struct Matrix: Equatable, Sendable {
    public let rows: Int
    public let columns: Int
    /// Row-major elements, `rows * columns` of them.
    public var elements: [Float]

    /// A matrix from row-major elements.
    public init(rows: Int, columns: Int, elements: [Float]) {
        precondition(rows >= 0 && columns >= 0 && elements.count == rows * columns, "element count must be rows × columns")
        self.rows = rows
        self.columns = columns
        self.elements = elements
    }

    /// A zero matrix.
    public init(rows: Int, columns: Int) {
        self.init(rows: rows, columns: columns, elements: [Float](repeating: 0, count: rows * columns))
    }

    public subscript(row: Int, column: Int) -> Float {
        get { elements[row * columns + column] }
        set { elements[row * columns + column] = newValue }
    }

    /// The product `self × other` (single-precision GEMM).
    public func multiplied(by other: Matrix) -> Matrix {
        precondition(columns == other.rows, "inner dimensions must match")
        var result = Matrix(rows: rows, columns: other.columns)
        guard rows > 0, other.columns > 0, columns > 0 else { return result }
        elements.withUnsafeBufferPointer { a in
            other.elements.withUnsafeBufferPointer { b in
                result.elements.withUnsafeMutableBufferPointer { c in
                    cblas_sgemm(
                        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(other.columns), Int32(columns),
                        1, a.baseAddress, Int32(columns), b.baseAddress, Int32(other.columns), 0, c.baseAddress,
                        Int32(other.columns))
                }
            }
        }
        return result
    }
}
