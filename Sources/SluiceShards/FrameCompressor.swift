internal import CZstd
internal import Foundation

/// Compresses zstd frames on its own thread, so that a shard writer's thread only gathers and writes bytes.
///
/// Frames are numbered as they are submitted; a writer takes each back by its number and writes them in order.
/// One compressor can serve many writers (the streaming pipeline's partitions). ``close()`` stops the thread once
/// the frames submitted so far are done.
public final class FrameCompressor: @unchecked Sendable {
    // @unchecked: every mutable field is touched under `condition`; the zstd context only by the thread.
    private let condition = NSCondition()
    private var waiting: [(Int, [UInt8])] = []
    private let done = NumberedResults<Result<[UInt8], ShardError>>()
    private var next = 0
    private var closed = false
    private let level: Int32

    /// Starts the compressing thread; `level` is the zstd level of every frame.
    public init(level: Int32) {
        self.level = level
        let thread = Thread { [self] in run() }
        thread.name = "sluice.shards.zstd"
        thread.start()
    }

    /// Queues `bytes` for one frame and returns its number.
    func submit(_ bytes: [UInt8]) -> Int {
        condition.lock()
        defer { condition.unlock() }
        let ticket = next
        next += 1
        waiting.append((ticket, bytes))
        condition.broadcast()
        return ticket
    }

    /// The frame numbered `ticket`, once compressed (waiting for it when `wait`); nil when not done and not waiting.
    func take(_ ticket: Int, wait: Bool) -> Result<[UInt8], ShardError>? {
        done.take(ticket, wait: wait)
    }

    /// Stops the thread after the frames already submitted.
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    private func run() {
        let context = ZSTD_createCCtx()
        defer { ZSTD_freeCCtx(context) }
        var scratch: [UInt8] = []
        while true {
            condition.lock()
            while waiting.isEmpty && !closed { condition.wait() }
            if waiting.isEmpty {
                condition.unlock()
                return
            }
            let (ticket, bytes) = waiting.removeFirst()
            condition.unlock()
            let bound = ZSTD_compressBound(bytes.count)
            if scratch.count < bound { scratch = [UInt8](repeating: 0, count: bound) }
            let size = scratch.withUnsafeMutableBytes { destination in
                bytes.withUnsafeBytes { source in
                    ZSTD_compressCCtx(context, destination.baseAddress, bound, source.baseAddress, source.count, level)
                }
            }
            let result: Result<[UInt8], ShardError> =
                ZSTD_isError(size) != 0
                ? .failure(.compression(String(cString: ZSTD_getErrorName(size)))) : .success(Array(scratch[0..<size]))
            done.put(ticket, result)
        }
    }
}
