internal import Foundation

/// The replica count a worker recommends for its consumer group, from consumer lag and measured cost per record.
///
/// Each refresh (of the lag metrics) gives the advisor the worker's assigned partitions, their summed lag, the
/// records it has consumed and the CPU time it has used so far. From two refreshes it derives:
/// - demand (records/s): the rate it consumed, plus the rate its lag grew, plus the backlog spread over
///   `drainSeconds`;
/// - capacity of one replica (records/s): its cores × `targetUtilization` ÷ CPU seconds per record;
/// - its share of the group's need, `demand ÷ capacity` (in replicas; summed over workers it is the group's
///   need, which is what a horizontal autoscaler's Pods metric with an average target of 1 computes);
/// - its recommendation for the whole group: that share scaled by total ÷ assigned partitions, rounded up, never
///   below 1 nor above the partition count.
public struct AutoscaleAdvisor: Sendable {
    public struct Sample: Sendable, Equatable {
        public var time: Double
        public var lag: Int64
        public var consumed: Int64
        public var cpuSeconds: Double

        public init(time: Double, lag: Int64, consumed: Int64, cpuSeconds: Double) {
            self.time = time
            self.lag = lag
            self.consumed = consumed
            self.cpuSeconds = cpuSeconds
        }
    }

    public struct Advice: Sendable, Equatable {
        /// This worker's share of the group's need, in replicas.
        public var share: Double
        /// The group's replica count this worker recommends (1…partitions).
        public var replicas: Int
        public var demandPerSecond: Double
        public var cpuSecondsPerRecord: Double
    }

    public var cores: Int
    public var drainSeconds: Double
    public var targetUtilization: Double
    private var previous: Sample?
    /// The last measured cost, kept while no records flow.
    private var cost: Double?

    public init(cores: Int? = nil, drainSeconds: Double = 300, targetUtilization: Double = 0.8) {
        self.cores = max(1, cores ?? ProcessInfo.processInfo.activeProcessorCount)
        self.drainSeconds = drainSeconds
        self.targetUtilization = targetUtilization
    }

    /// Advice from a new sample; nil for the first one (rates need two).
    public mutating func observe(_ sample: Sample, assignedPartitions: Int, totalPartitions: Int) -> Advice? {
        defer { previous = sample }
        guard let previous, sample.time > previous.time else { return nil }
        let elapsed = sample.time - previous.time
        let consumed = Double(max(0, sample.consumed - previous.consumed))
        if consumed > 0 { cost = max(0, sample.cpuSeconds - previous.cpuSeconds) / consumed }
        let demand = consumed / elapsed + Double(sample.lag - previous.lag) / elapsed + Double(max(0, sample.lag)) / drainSeconds
        let share: Double
        if let cost, cost > 0 {
            share = max(0, demand) * cost / (Double(cores) * targetUtilization)
        } else {
            share = 0
        }
        let scale = Double(max(1, totalPartitions)) / Double(max(1, assignedPartitions))
        let replicas = min(max(1, Int((share * scale).rounded(.up))), max(1, totalPartitions))
        return Advice(share: share, replicas: replicas, demandPerSecond: max(0, demand), cpuSecondsPerRecord: cost ?? 0)
    }
}
