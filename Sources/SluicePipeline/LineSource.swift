public import SluiceShards
internal import Foundation

/// Lines of a JSON Lines input, plain or zstd-compressed (detected by magic bytes), from a file or standard
/// input, read in batches with bounded memory.
public final class LineSource {
    public let name: String
    private let handle: FileHandle
    private var decompressor: ZstdStreamDecoder?
    private var pending: [UInt8] = []
    /// Bytes of `pending` already handed out.
    private var consumed = 0
    private var endOfFile = false
    public private(set) var linesRead = 0
    /// Bytes read from the file (compressed when it is).
    public private(set) var bytesRead = 0
    private var sniffed = false

    /// Opens `path`, or standard input for `-`.
    public init(path: String) throws(ShardError) {
        if path == "-" {
            handle = FileHandle.standardInput
            name = "stdin"
        } else {
            guard let opened = FileHandle(forReadingAtPath: path) else {
                throw ShardError.make(.io, "cannot read \(path): no such file or no permission")
            }
            handle = opened
            name = path
        }
    }

    /// The next batch of up to `maximumLines` lines; nil at the end.
    public func nextBatch(maximumLines: Int) throws(ShardError) -> LineBatch? {
        var lines: [Range<Int>] = []
        let base = consumed
        var start = consumed
        var scan = consumed
        while lines.count < maximumLines {
            let newline = pending.withUnsafeBytes { raw -> Int? in
                guard scan < raw.count, let hit = memchr(raw.baseAddress! + scan, 0x0A, raw.count - scan) else { return nil }
                return raw.baseAddress!.distance(to: UnsafeRawPointer(hit))
            }
            if let newline {
                lines.append((start - base)..<(newline - base))
                start = newline + 1
                scan = start
                continue
            }
            scan = pending.count
            if endOfFile { break }
            try fill()
        }
        if lines.count < maximumLines && endOfFile && start < pending.count {
            lines.append((start - base)..<(pending.count - base))
            start = pending.count
        }
        guard !lines.isEmpty else { return nil }
        let data = Array(pending[base..<start])
        consumed = start
        // Drop consumed bytes only now and then: one move per several batches, not per batch.
        if consumed > 8 << 20 && consumed * 2 > pending.count {
            pending.removeSubrange(0..<consumed)
            consumed = 0
        }
        let batch = LineBatch(data: data, lines: lines, firstLine: linesRead + 1, bytes: data.count)
        linesRead += lines.count
        return batch
    }

    private func fill() throws(ShardError) {
        let chunk: Data
        do { chunk = try handle.read(upToCount: 4 << 20) ?? Data() } catch {
            throw ShardError.make(.io, "reading \(name): \(error.localizedDescription)")
        }
        bytesRead += chunk.count
        if !sniffed {
            sniffed = true
            if ZstdStreamDecoder.isZstd(chunk) { decompressor = ZstdStreamDecoder() }
        }
        if chunk.isEmpty {
            endOfFile = true
            if let decompressor, !decompressor.atFrameEnd {
                throw ShardError.make(.truncated, "\(name): the zstd stream ends in the middle of a frame (truncated file?)")
            }
            return
        }
        guard let decompressor else {
            pending.append(contentsOf: chunk)
            return
        }
        let compressed = [UInt8](chunk)
        let failed = compressed.withUnsafeBytes { bytes in
            (try? decompressor.decompress(bytes, appendingTo: &pending)) == nil
        }
        if failed { throw ShardError.make(.corrupt, "\(name): not a valid zstd stream") }
    }
}

/// Lines as ranges into one contiguous buffer.
public struct LineBatch: Sendable {
    public var data: [UInt8]
    public var lines: [Range<Int>]
    /// 1-based number of the first line.
    public var firstLine: Int
    public var bytes: Int
}
