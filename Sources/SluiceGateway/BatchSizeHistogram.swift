/// Batch sizes in power-of-two buckets (1, 2, 4 … 256), for the `/metrics` histograms of scoring batches and
/// decoding steps.
public struct BatchSizeHistogram: Sendable, Equatable {
    public static let bounds: [Int] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    /// Observations at most each bound (not cumulative); sizes above the last bound count only in `count`.
    public private(set) var counts = [Int](repeating: 0, count: bounds.count)
    public private(set) var sum = 0
    public private(set) var count = 0

    public init() {}

    public mutating func observe(_ size: Int) {
        if let bucket = Self.bounds.firstIndex(where: { size <= $0 }) { counts[bucket] += 1 }
        sum += size
        count += 1
    }

    /// Prometheus histogram lines (cumulative buckets) for a metric `name`.
    public func lines(name: String) -> [String] {
        var lines = ["# TYPE \(name) histogram"]
        var cumulative = 0
        for (bound, observed) in zip(Self.bounds, counts) {
            cumulative += observed
            lines.append("\(name)_bucket{le=\"\(bound)\"} \(cumulative)")
        }
        lines += ["\(name)_bucket{le=\"+Inf\"} \(count)", "\(name)_sum \(sum)", "\(name)_count \(count)"]
        return lines
    }
}
