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

    /// Reads from `descriptor` (not closed by the reader), in blocks of `blockSize` bytes.
    public init(descriptor: Int32, blockSize: Int = 1 << 16) {
        self.descriptor = descriptor
        buffer = [UInt8](repeating: 0, count: max(blockSize, 16))
    }

    /// The next line without its `\n`, or `nil` at the end of input.
    /// - Throws: ``ConnectorError`` when reading fails.
    public mutating func nextLine() throws(ConnectorError) -> [UInt8]? {
        while true {
            if let newline = buffer[start..<end].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                return line
            }
            if atEOF {
                guard start < end else { return nil }
                let line = Array(buffer[start..<end])
                start = end
                return line
            }
            try fill()
        }
    }

    private mutating func fill() throws(ConnectorError) {
        if start > 0 {
            buffer.replaceSubrange(0..<(end - start), with: buffer[start..<end])
            end -= start
            start = 0
        }
        if end == buffer.count { buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count)) }
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
