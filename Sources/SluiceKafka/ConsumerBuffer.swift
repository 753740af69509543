internal import Foundation

/// The bounded hand-off between a consumer's poll thread and the task iterating its events.
///
/// The poll thread stops polling while the buffer holds `capacity` records (flow control without pausing
/// partitions, which would discard librdkafka's prefetch). Rebalance events bypass the bound.
///
/// `@unchecked Sendable`: every mutable field is guarded by `condition`'s lock.
final class ConsumerBuffer: @unchecked Sendable {
    private let condition = NSCondition()
    private let capacity: Int
    private var events: [ConsumerEvent] = []
    private var waiter: CheckedContinuation<Void, Never>?
    private var finished = false
    private var terminalError: KafkaError?
    private var revocationAcknowledged = true

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    // MARK: Poll thread side

    /// Blocks the poll thread while the buffer is full, waking at least every 100 ms so it can serve commands.
    /// - Returns: how many more records fit.
    func waitForSpace(while keepWaiting: () -> Bool) -> Int {
        condition.lock()
        defer { condition.unlock() }
        while events.count >= capacity && !finished && keepWaiting() {
            _ = condition.wait(until: Date(timeIntervalSinceNow: 0.1))
        }
        return max(0, capacity - events.count)
    }

    /// Wakes the poll thread if it waits for space, so it can serve a command.
    func wake() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    /// Appends events from the poll thread.
    func append(contentsOf newEvents: [ConsumerEvent]) {
        var copy = newEvents
        append(moving: &copy)
    }

    /// Appends events from the poll thread. `newEvents` is left empty (with its capacity when the buffer was
    /// empty and the two arrays were swapped instead of copied).
    func append(moving newEvents: inout [ConsumerEvent]) {
        guard !newEvents.isEmpty else { return }
        condition.lock()
        if events.isEmpty {
            swap(&events, &newEvents)
        } else {
            events.append(contentsOf: newEvents)
            newEvents.removeAll(keepingCapacity: true)
        }
        let waiter = self.waiter
        self.waiter = nil
        condition.unlock()
        waiter?.resume()
    }

    /// Drops buffered records of `partitions`, then puts `event` first and waits until the application
    /// acknowledged it by asking for the next event, or `timeout` passes.
    ///
    /// - Returns: `true` when the application acknowledged in time.
    func deliverRevocation(_ event: ConsumerEvent, partitions: Set<TopicPartition>, waitUpTo timeout: TimeInterval)
        -> Bool
    {
        condition.lock()
        events.removeAll { event in
            if case .record(let record) = event { return partitions.contains(record.topicPartition) }
            return false
        }
        events.insert(event, at: 0)
        revocationAcknowledged = false
        let waiter = self.waiter
        self.waiter = nil
        if let waiter {
            condition.unlock()
            waiter.resume()
            condition.lock()
        }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while !revocationAcknowledged && !finished {
            if !condition.wait(until: deadline) { break }
        }
        let acknowledged = revocationAcknowledged
        revocationAcknowledged = true
        condition.unlock()
        return acknowledged
    }

    /// Drops buffered records of the given partitions (after a seek).
    func purge(_ partitions: Set<TopicPartition>) {
        condition.lock()
        events.removeAll { event in
            if case .record(let record) = event { return partitions.contains(record.topicPartition) }
            return false
        }
        condition.broadcast()
        condition.unlock()
    }

    /// Ends the sequence after the buffered events; with an error, the sequence throws it after them.
    func finish(error: KafkaError? = nil) {
        condition.lock()
        if !finished {
            finished = true
            terminalError = error
        }
        let waiter = self.waiter
        self.waiter = nil
        condition.broadcast()
        condition.unlock()
        waiter?.resume()
    }

    var isFinished: Bool {
        condition.lock()
        defer { condition.unlock() }
        return finished
    }

    // MARK: Application side

    func acknowledgeRevocation() {
        condition.lock()
        revocationAcknowledged = true
        condition.broadcast()
        condition.unlock()
    }

    private enum TakeOutcome {
        case took, ended(KafkaError?), empty
    }

    private func tryTake(into batch: inout [ConsumerEvent]) -> TakeOutcome {
        condition.lock()
        defer { condition.unlock() }
        if !events.isEmpty {
            swap(&events, &batch)
            condition.broadcast()
            return .took
        }
        if finished {
            defer { terminalError = nil }
            return .ended(terminalError)
        }
        return .empty
    }

    /// Parks `continuation` until events arrive; resumes it at once if some already did.
    private func park(_ continuation: CheckedContinuation<Void, Never>) {
        condition.lock()
        if events.isEmpty && !finished && !Task.isCancelled {
            waiter = continuation
            condition.unlock()
        } else {
            condition.unlock()
            continuation.resume()
        }
    }

    private func cancelWaiter() {
        condition.lock()
        let waiter = self.waiter
        self.waiter = nil
        condition.unlock()
        waiter?.resume()
    }

    /// Moves every buffered event into `batch`, suspending while there is none. Leaves `batch` empty at the end
    /// of the sequence or on task cancellation.
    func takeAll(into batch: inout [ConsumerEvent]) async throws(KafkaError) {
        while true {
            switch tryTake(into: &batch) {
            case .took: return
            case .ended(let error):
                if let error { throw error }
                return
            case .empty: break
            }
            if Task.isCancelled { return }
            await withTaskCancellationHandler {
                await withCheckedContinuation { park($0) }
            } onCancel: {
                cancelWaiter()
            }
        }
    }
}
