import SluiceGateway
import Testing

@Suite("TokenBucket")
struct TokenBucketTests {
    @Test func admitsBurstsThenRefillsAtTheRate() {
        var bucket = TokenBucket(rate: 2, capacity: 3, now: 0)
        #expect(bucket.take(now: 0) == nil)
        #expect(bucket.take(now: 0) == nil)
        #expect(bucket.take(now: 0) == nil)
        let wait = bucket.take(now: 0)
        #expect(wait == 0.5)
        #expect(bucket.take(now: 0.5) == nil)
        #expect(bucket.take(now: 100) == nil)
        // Refill is capped at the capacity.
        #expect(bucket.take(2, now: 100) == nil)
        #expect(bucket.take(now: 100) != nil)
    }
}
