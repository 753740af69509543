import SluiceTrain
import Testing

@Suite("Matrix")
struct MatrixTests {
    @Test func multipliesLikeTheTextbook() {
        let a = Matrix(rows: 2, columns: 3, elements: [1, 2, 3, 4, 5, 6])
        let b = Matrix(rows: 3, columns: 2, elements: [7, 8, 9, 10, 11, 12])
        #expect(a.multiplied(by: b) == Matrix(rows: 2, columns: 2, elements: [58, 64, 139, 154]))
    }

    @Test func largerProductMatchesANaiveLoop() {
        var a = Matrix(rows: 33, columns: 17)
        var b = Matrix(rows: 17, columns: 29)
        for i in 0..<33 { for k in 0..<17 { a[i, k] = Float((i * 7 + k * 3) % 11) - 5 } }
        for k in 0..<17 { for j in 0..<29 { b[k, j] = Float((k * 5 + j) % 13) - 6 } }
        let product = a.multiplied(by: b)
        for i in 0..<33 {
            for j in 0..<29 {
                var sum: Float = 0
                for k in 0..<17 { sum += a[i, k] * b[k, j] }
                #expect(product[i, j] == sum)
            }
        }
    }
}
