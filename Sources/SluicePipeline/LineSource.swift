public import SluiceShards
internal import Foundation

/// Lines of a JSON Lines input, plain or zstd-compressed (detected by magic bytes), from a file or standard
/// input, read in batches with bounded memory.
public final class LineSource {
    public let name: String
    private let handle: FileHandle
    private var decompressor: ZstdStreamDecoder?
    /// Read (and decompressed) bytes: `[consumed, end)` are not handed out yet. Raw memory, so that reading and
    /// decompressing write straight into it without zeroing it first.
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var consumed = 0
    private var end = 0
    /// Compressed bytes read from the file: `[inputUsed, inputCount)` are not decompressed yet.
    private var input: UnsafeMutableRawPointer
    private var inputUsed = 0
    private var inputCount = 0
    /// The decompressor filled all the room it was given last time, so it may hold more without new input.
    private var decoderMayHoldMore = false
    private var endOfFile = false
    public private(set) var linesRead = 0
    /// Bytes read from the file (compressed when it is).
    public private(set) var bytesRead = 0
    private var sniffed = false
    /// Bytes read from the file, or decompressed, per step.
    private static let step = 1 << 20
    private static let inputCapacity = 4 << 20

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
        // Room for several batches: the unread tail moves to the front only when the end is reached.
        capacity = 32 << 20
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        input = UnsafeMutableRawPointer.allocate(byteCount: Self.inputCapacity, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        input.deallocate()
    }

    /// The next batch of up to `maximumLines` lines; nil at the end.
    public func nextBatch(maximumLines: Int) throws(ShardError) -> LineBatch? {
        var lines: [Range<Int>] = []
        lines.reserveCapacity(min(maximumLines, 1 << 16))
        var start = consumed
        var scan = consumed
        while lines.count < maximumLines {
            if scan < end, let hit = memchr(buffer + scan, 0x0A, end - scan) {
                let newline = UnsafeRawPointer(buffer).distance(to: UnsafeRawPointer(hit))
                lines.append((start - consumed)..<(newline - consumed))
                start = newline + 1
                scan = start
                continue
            }
            scan = end
            if endOfFile { break }
            // Filling may move the unread bytes to the front of the buffer; the lines found are relative to them.
            let moved = try fill()
            start -= moved
            scan -= moved
        }
        if lines.count < maximumLines && endOfFile && start < end {
            lines.append((start - consumed)..<(end - consumed))
            start = end
        }
        guard !lines.isEmpty else { return nil }
        let data = [UInt8](UnsafeRawBufferPointer(start: buffer + consumed, count: start - consumed))
        consumed = start
        let batch = LineBatch(data: data, lines: lines, firstLine: linesRead + 1, bytes: data.count)
        linesRead += lines.count
        return batch
    }

    /// Adds bytes at `end` (or sets `endOfFile`); returns how far the unread bytes moved towards the front.
    private func fill() throws(ShardError) -> Int {
        let moved = makeRoom()
        if !sniffed {
            sniffed = true
            try readInput()
            // A pipe may hand over fewer bytes than the magic number at first: read on until there are four.
            while inputCount > 0 && inputCount < 4 {
                let more = try read(into: input + inputCount, count: Self.inputCapacity - inputCount)
                if more == 0 { break }
                inputCount += more
            }
            if inputCount >= 4 && ZstdStreamDecoder.isZstd(UnsafeRawBufferPointer(start: input, count: 4)) {
                decompressor = ZstdStreamDecoder()
            } else {
                (buffer + end).copyMemory(from: input, byteCount: inputCount)
                end += inputCount
                endOfFile = inputCount == 0
                inputCount = 0
                return moved
            }
        }
        guard let decompressor else {
            let count = try read(into: buffer + end, count: capacity - end)
            end += count
            endOfFile = count == 0
            return moved
        }
        while true {
            if inputUsed == inputCount && !decoderMayHoldMore {
                try readInput()
                if inputCount == 0 {
                    endOfFile = true
                    if !decompressor.atFrameEnd {
                        throw ShardError.make(.truncated, "\(name): the zstd stream ends in the middle of a frame (truncated file?)")
                    }
                    return moved
                }
            }
            let room = UnsafeMutableRawBufferPointer(start: buffer + end, count: min(Self.step, capacity - end))
            let produced: Int
            do {
                produced = try decompressor.decompress(
                    UnsafeRawBufferPointer(start: input, count: inputCount), consumed: &inputUsed, into: room)
            } catch {
                throw ShardError.make(.corrupt, "\(name): not a valid zstd stream")
            }
            decoderMayHoldMore = produced == room.count
            end += produced
            if produced > 0 { return moved }
        }
    }

    /// Makes room for a step at `end`: moves the unread bytes to the front when the buffer's end is near, and
    /// grows the buffer only when they fill most of it (a very long line).
    private func makeRoom() -> Int {
        guard capacity - end < Self.step else { return 0 }
        let moved = consumed
        if consumed > 0 {
            buffer.copyMemory(from: buffer + consumed, byteCount: end - consumed)  // memmove: may overlap
            end -= consumed
            consumed = 0
        }
        if capacity - end < Self.step {
            let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 16)
            grown.copyMemory(from: buffer, byteCount: end)
            buffer.deallocate()
            buffer = grown
            capacity *= 2
        }
        return moved
    }

    /// Reads the next compressed chunk into `input`.
    private func readInput() throws(ShardError) {
        inputCount = try read(into: input, count: Self.inputCapacity)
        inputUsed = 0
    }

    /// One read(2) of up to `count` bytes; 0 at the end of the file.
    private func read(into destination: UnsafeMutableRawPointer, count: Int) throws(ShardError) -> Int {
        while true {
            let n = Foundation.read(handle.fileDescriptor, destination, count)
            if n >= 0 {
                bytesRead += n
                return n
            }
            if errno == EINTR { continue }
            throw ShardError.make(.io, "reading \(name): \(String(cString: strerror(errno)))")
        }
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
