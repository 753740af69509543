internal import Foundation

/// Results handed from one thread to another by number, taken in the order the taker chooses (submission order):
/// the workers' batches in the drivers, the frames of ``FrameCompressor``.
package final class NumberedResults<Value>: @unchecked Sendable {
    // @unchecked: every access goes through `condition`; a value is handed over once.
    private let condition = NSCondition()
    private var ready: [Int: Value] = [:]

    package init() {}

    package func put(_ number: Int, _ value: Value) {
        condition.lock()
        ready[number] = value
        condition.broadcast()
        condition.unlock()
    }

    /// The value numbered `number`, waiting for it when `wait`; nil when it is not there and not waiting.
    package func take(_ number: Int, wait: Bool) -> Value? {
        condition.lock()
        defer { condition.unlock() }
        while ready[number] == nil {
            guard wait else { return nil }
            condition.wait()
        }
        return ready.removeValue(forKey: number)
    }
}
