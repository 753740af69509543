/// What a ``KafkaConsumer`` hands the application, in order.
public enum ConsumerEvent: Sendable {
    /// A record.
    case record(KafkaRecord)
    /// Partitions were assigned to this consumer; records from them follow.
    case assigned([TopicPartition])
    /// Partitions are being taken away. The revocation completes only when the application asks for the next
    /// event (or after ``KafkaConsumer/Options/revocationTimeout``): seal and commit what was read from them
    /// before that. Buffered, not yet delivered records of these partitions have been dropped; the next owner
    /// reads them from the committed offset. After the application is done, stored offsets are committed.
    case revoked([TopicPartition])
    /// Partitions were lost (the session expired): another consumer may already own them, so do not commit.
    case lost([TopicPartition])
    /// The consumer reached the current end of a partition (only with `enable.partition.eof=true`).
    case partitionEOF(TopicPartitionOffset)
    /// A non-fatal error, e.g. a subscribed topic that does not exist or a broker that is down. librdkafka
    /// keeps retrying; the sequence continues.
    case error(KafkaError)
}

/// The events of a consumer as an `AsyncSequence`. Iterate it from one task at a time.
///
/// Ends when the consumer is closed; throws ``KafkaError`` `.dataLostToRetention` when records between the
/// committed offset and the log start were deleted, and `.fatal` for fatal client errors.
public struct ConsumerEvents: AsyncSequence, Sendable {
    public typealias Element = ConsumerEvent
    let buffer: ConsumerBuffer

    public func makeAsyncIterator() -> Iterator {
        Iterator(buffer: buffer)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let buffer: ConsumerBuffer
        private var batch: [ConsumerEvent] = []
        private var batchIndex = 0
        private var holdsRevocation = false

        init(buffer: ConsumerBuffer) {
            self.buffer = buffer
        }

        /// Whether the next call returns without waiting: more events are already buffered in the iterator.
        /// Useful to flush output only when a burst ends.
        public var hasBufferedEvents: Bool { batchIndex < batch.count }

        public mutating func next() async throws -> ConsumerEvent? {
            try await next(isolation: nil)
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(any Error) -> ConsumerEvent? {
            if holdsRevocation {
                holdsRevocation = false
                buffer.acknowledgeRevocation()
            }
            if batchIndex == batch.count {
                batch.removeAll(keepingCapacity: true)
                batchIndex = 0
                try await buffer.takeAll(into: &batch)
                if batch.isEmpty { return nil }
            }
            let event = batch[batchIndex]
            batchIndex += 1
            switch event {
            case .revoked, .lost: holdsRevocation = true
            default: break
            }
            return event
        }
    }
}

/// Only the records of a consumer; rebalance and EOF events are acknowledged and skipped, non-fatal errors are
/// skipped after being logged by the consumer.
public struct ConsumerRecords: AsyncSequence, Sendable {
    public typealias Element = KafkaRecord
    let events: ConsumerEvents

    public func makeAsyncIterator() -> Iterator {
        Iterator(events: events.makeAsyncIterator())
    }

    public struct Iterator: AsyncIteratorProtocol {
        var events: ConsumerEvents.Iterator

        public mutating func next() async throws -> KafkaRecord? {
            while let event = try await events.next() {
                if case .record(let record) = event { return record }
            }
            return nil
        }
    }
}
