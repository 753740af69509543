import SluiceGateway
import SluiceTrain
import Testing

@Suite("Generation scheduler")
struct GenerationSchedulerTests {
    @Test func aFullSchedulerRefusesAtOnce() throws {
        let model = GPT(configuration: GPTConfiguration(contextLength: 128, layers: 2, channels: 64, heads: 2), seed: 1)
        let scheduler = GenerationScheduler(model: model, version: "v", slots: 1, maxQueue: 0)
        defer { scheduler.stop() }
        let request = GenerationScheduler.Request(prompt: Array("a".utf8), maxTokens: 127, sampler: TokenSampler())
        // The first request's stream stays alive: a dropped stream cancels its request and frees the slot.
        let first = try scheduler.submit(request)
        // One slot, taken (or about to be) by the first request, and no queue: the second is refused, not queued.
        #expect(throws: GatewayError.self) { _ = try scheduler.submit(request) }
        withExtendedLifetime(first) {}
    }
}

@Suite("schedulers made and dropped at once")
struct SchedulerLifetimeTests {
    @Test func theirThreadsMayStartAfterTheyAreGone() {
        let model = GPT(configuration: GPTConfiguration(contextLength: 16, layers: 1, channels: 16, heads: 2), seed: 1)
        for _ in 0..<40 {
            GenerationScheduler(model: model, version: "v", slots: 1).stop()
            ScoreBatcher(model: model).stop()
        }
    }
}
