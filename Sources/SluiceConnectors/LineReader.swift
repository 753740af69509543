internal import Foundation

/// Reads `\n`-terminated lines from a file descriptor in large blocks, without per-line system calls.
///
/// A trailing `\r` is kept (callers that treat text decide about it); a last line without `\n` is returned.
/// Not thread-safe: one reader per descriptor.
public struct LineReader: ~Copyable {
    private let descriptor: Int32
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var atEOF = false
    private let maximumLineLength: Int

    /// Reads from `descriptor` (not closed by the reader), in blocks of `blockSize` bytes; lines longer than
    /// `maximumLineLength` bytes (default 64 MiB) are an error rather than unbounded memory.
    public init(descriptor: Int32, blockSize: Int = 1 << 16, maximumLineLength: Int = 64 << 20) {
        self.descriptor = descriptor
        buffer = [UInt8](repeating: 0, count: max(blockSize, 16))
        self.maximumLineLength = maximumLineLength
    }

    /// The next line without its `\n`, or `nil` at the end of input.
    /// - Throws: ``ConnectorError`` when reading fails.
    public mutating func nextLine() throws(ConnectorError) -> [UInt8]? {
        try withNextLine { Array($0) }
    }

    /// Calls `body` with the next line (without its `\n`) in the reader's buffer, without copying it.
    ///
    /// The bytes are valid only inside `body`. Returns `nil` at the end of input.
    /// - Throws: ``ConnectorError`` when reading fails; rethrows nothing from `body`.
    public mutating func withNextLine<R>(_ body: (UnsafeRawBufferPointer) -> R) throws(ConnectorError) -> R? {
        while true {
            let found: (lineEnd: Int, next: Int)? = buffer.withUnsafeBytes { bytes in
                guard start < end else { return nil }
                let base = bytes.baseAddress! + start
                if let hit = memchr(base, Int32(UInt8(ascii: "\n")), end - start) {
                    let lineEnd = start + (UnsafeRawPointer(hit) - base)
                    return (lineEnd, lineEnd + 1)
                }
                return atEOF ? (end, end) : nil
            }
            if let found {
                let lineStart = start
                start = found.next
                return buffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[lineStart..<found.lineEnd])) }
            }
            if atEOF { return nil }
            try fill()
        }
    }

    private mutating func fill() throws(ConnectorError) {
        if start > 0 {
            buffer.replaceSubrange(0..<(end - start), with: buffer[start..<end])
            end -= start
            start = 0
        }
        if end == buffer.count {
            guard end < maximumLineLength else {
                throw ConnectorError(reason: "a line is longer than \(maximumLineLength) bytes", errno: nil)
            }
            buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count))
        }
        let count = buffer.withUnsafeMutableBytes { bytes in
            read(descriptor, bytes.baseAddress! + end, bytes.count - end)
        }
        if count < 0 {
            if errno == EINTR { return }
            throw ConnectorError(reason: "read failed: \(String(cString: strerror(errno)))", errno: errno)
        }
        if count == 0 { atEOF = true } else { end += count }
    }
}

/// The one error type of `SluiceConnectors`.
public struct ConnectorError: Error, Sendable, CustomStringConvertible {
    /// What happened and what to do.
    public let reason: String
    /// The system error number, when there is one.
    public let errno: Int32?

    public var description: String { "ConnectorError: \(reason)" }
}
