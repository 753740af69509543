/// A token-bucket rate limiter: `rate` requests per second on average, bursts up to `capacity`.
///
/// A value type with an injected clock reading (seconds), so it is deterministic to test.
public struct TokenBucket: Sendable {
    /// Tokens added per second.
    public let rate: Double
    /// The largest burst.
    public let capacity: Double
    private var tokens: Double
    private var lastRefill: Double

    /// A full bucket at time `now` (seconds on any monotonic clock).
    public init(rate: Double, capacity: Double, now: Double) {
        precondition(rate > 0 && capacity >= 1, "rate must be positive and capacity at least 1")
        self.rate = rate
        self.capacity = capacity
        tokens = capacity
        lastRefill = now
    }

    /// Takes `cost` tokens if available at `now`.
    /// - Returns: `nil` when admitted, otherwise the seconds to wait before retrying (for `Retry-After`).
    public mutating func take(_ cost: Double = 1, now: Double) -> Double? {
        if now > lastRefill {
            tokens = min(capacity, tokens + (now - lastRefill) * rate)
            lastRefill = now
        }
        if tokens >= cost {
            tokens -= cost
            return nil
        }
        return (cost - tokens) / rate
    }
}
