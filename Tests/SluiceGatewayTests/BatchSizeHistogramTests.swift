import SluiceGateway
import Testing

@Suite("batch-size histogram")
struct BatchSizeHistogramTests {
    @Test func bucketsAreCumulativeInTheExposition() {
        var histogram = BatchSizeHistogram()
        for size in [1, 1, 3, 32, 33, 300] { histogram.observe(size) }
        let lines = histogram.lines(name: "m")
        #expect(lines.contains("m_bucket{le=\"1\"} 2"))
        #expect(lines.contains("m_bucket{le=\"4\"} 3"))
        #expect(lines.contains("m_bucket{le=\"32\"} 4"))
        #expect(lines.contains("m_bucket{le=\"64\"} 5"))
        #expect(lines.contains("m_bucket{le=\"256\"} 5"))
        #expect(lines.contains("m_bucket{le=\"+Inf\"} 6"))
        #expect(lines.contains("m_sum 370") && lines.contains("m_count 6"))
    }
}
