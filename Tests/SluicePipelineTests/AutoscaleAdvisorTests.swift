import SluicePipeline
import Testing

@Suite("autoscaling signal")
struct AutoscaleAdvisorTests {
    @Test func demandOverCapacityNeverAboveThePartitions() {
        // 2 cores at 80%: one replica handles 1.6 CPU-s per second; 1 ms of CPU per record → 1,600 records/s.
        var advisor = AutoscaleAdvisor(cores: 2, drainSeconds: 100, targetUtilization: 0.8)
        #expect(advisor.observe(.init(time: 0, lag: 0, consumed: 0, cpuSeconds: 0), assignedPartitions: 2, totalPartitions: 8) == nil)
        // 10 s: consumed 16,000 records (1,600/s) using 16 CPU-s, and the lag grew by 16,000: demand 3,200/s + 160/s to drain.
        let busy = advisor.observe(.init(time: 10, lag: 16_000, consumed: 16_000, cpuSeconds: 16), assignedPartitions: 2, totalPartitions: 8)
        #expect(busy?.cpuSecondsPerRecord == 0.001)
        #expect(busy.map { abs($0.share - 2.1) < 1e-9 } == true, "\(String(describing: busy))")
        #expect(busy?.replicas == 8, "2.1 replicas for 2 of 8 partitions → 8.4 for the group, capped at 8")
        // Idle and drained: one replica, and the cost is remembered.
        let idle = advisor.observe(.init(time: 20, lag: 0, consumed: 16_000, cpuSeconds: 16.1), assignedPartitions: 2, totalPartitions: 8)
        #expect(idle?.replicas == 1 && idle?.cpuSecondsPerRecord == 0.001)
    }
}
