internal import Foundation
internal import Synchronization
internal import SluiceKafka

/// Where a record came from inside its source: a file slot and the byte offset and line just after it, a row
/// value, or a count. Positions only move forward within a slot.
public struct SourcePosition: Sendable, Equatable {
    /// The source's own numbering (a file, a table); -1 for records that need no checkpoint.
    public var slot: Int32
    public var offset: Int64
    public var line: Int64

    public init(slot: Int32, offset: Int64, line: Int64) {
        self.slot = slot
        self.offset = offset
        self.line = line
    }

    public static let none = SourcePosition(slot: -1, offset: 0, line: 0)
}

/// Follows every record from send to acknowledgement and releases positions in send order: a position is
/// checkpointable once its record and every record sent before it were acknowledged by the broker.
///
/// Sequence numbers double as the producer's delivery tags. A failed delivery (the producer gave up after its
/// retries) stops the prefix for good: nothing after it is ever checkpointed, so a restart re-sends it.
final class AckTracker: @unchecked Sendable {
    // @unchecked: all state is guarded by `condition`.
    private let condition = NSCondition()
    private var positions: [SourcePosition] = []
    private var acknowledged: [Bool] = []
    /// Index in the arrays of sequence number `base`.
    private var start = 0
    /// Sequence number of `positions[start]`: the first record not yet released.
    private var base: UInt64 = 1
    private var nextSequence: UInt64 = 1
    private var released: [Int32: SourcePosition] = [:]
    private var releasedCount = 0
    private var firstFailure: KafkaError?
    /// Set with `firstFailure`, read without the lock on every send.
    private let failed = Atomic<Bool>(false)

    /// The first delivery that failed for good, if any.
    var failure: KafkaError? {
        guard failed.load(ordering: .acquiring) else { return nil }
        condition.lock()
        defer { condition.unlock() }
        return firstFailure
    }

    /// Registers the next record and returns its sequence number (its delivery tag).
    func register(_ position: SourcePosition) -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        positions.append(position)
        acknowledged.append(false)
        defer { nextSequence += 1 }
        return nextSequence
    }

    /// Registers several records in order and returns the first one's sequence number (the rest follow it).
    func register(contentsOf newPositions: [SourcePosition]) -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        positions.append(contentsOf: newPositions)
        acknowledged.append(contentsOf: repeatElement(false, count: newPositions.count))
        defer { nextSequence += UInt64(newPositions.count) }
        return nextSequence
    }

    /// Records the broker's answer for `sequence`.
    func acknowledge(_ sequence: UInt64, error: KafkaError?) {
        condition.lock()
        defer { condition.unlock() }
        guard sequence >= base, sequence < nextSequence else { return }
        if let error {
            firstFailure = firstFailure ?? error
            failed.store(true, ordering: .releasing)
            condition.broadcast()
            return
        }
        acknowledged[start + Int(sequence - base)] = true
        guard sequence == base else { return }
        while start < positions.count, acknowledged[start] {
            let position = positions[start]
            if position.slot >= 0 { released[position.slot] = position }
            start += 1
            base += 1
            releasedCount += 1
        }
        if start > 4096, start * 2 > positions.count {
            positions.removeSubrange(0..<start)
            acknowledged.removeSubrange(0..<start)
            start = 0
        }
        condition.broadcast()
    }

    /// The newest released position per slot since the last call.
    func takeReleased() -> [Int32: SourcePosition] {
        condition.lock()
        defer { condition.unlock() }
        defer { released.removeAll(keepingCapacity: true) }
        return released
    }

    /// Records sent and not yet released (acknowledged in order).
    var outstanding: Int {
        condition.lock()
        defer { condition.unlock() }
        return Int(nextSequence - base)
    }

    /// Records released so far.
    var releasedTotal: Int {
        condition.lock()
        defer { condition.unlock() }
        return releasedCount
    }

    /// Blocks until every registered record is released, a delivery failed, or `deadline` passes.
    /// - Returns: whether everything was released.
    func waitUntilReleased(deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while base < nextSequence, firstFailure == nil {
            if !condition.wait(until: deadline) { break }
        }
        return base == nextSequence
    }
}
