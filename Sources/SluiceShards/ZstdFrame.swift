internal import CZstd

/// Compresses and decompresses single zstd frames: the unit of a compressed shard's random access.
///
/// Each frame records its content size, so a reader can decompress one sample group from its frame offset
/// alone. Frames concatenate into a valid zstd stream.
public enum ZstdFrame {
    /// Compresses `input` into one frame at `level` (1…19, default 3).
    public static func compress(_ input: [UInt8], level: Int32 = 3) throws(ShardError) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var output = [UInt8](repeating: 0, count: bound)
        let written = output.withUnsafeMutableBytes { out in
            input.withUnsafeBytes { source in
                ZSTD_compress(out.baseAddress, bound, source.baseAddress, source.count, level)
            }
        }
        if ZSTD_isError(written) != 0 { throw ShardError.compression(zstdMessage(written)) }
        output.removeSubrange(written...)
        return output
    }

    /// Decompresses one complete frame.
    /// - Throws: ``ShardError`` when the frame is corrupt or does not record its content size.
    public static func decompress(_ frame: [UInt8]) throws(ShardError) -> [UInt8] {
        let size = frame.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        // ZSTD_CONTENTSIZE_UNKNOWN and ZSTD_CONTENTSIZE_ERROR are the two largest UInt64 values.
        guard size < UInt64.max - 1 else {
            throw ShardError.compression("not a zstd frame with a recorded content size")
        }
        var output = [UInt8](repeating: 0, count: Int(size))
        let written = output.withUnsafeMutableBytes { out in
            frame.withUnsafeBytes { source in
                ZSTD_decompress(out.baseAddress, out.count, source.baseAddress, source.count)
            }
        }
        if ZSTD_isError(written) != 0 { throw ShardError.compression(zstdMessage(written)) }
        return output
    }

    private static func zstdMessage(_ code: Int) -> String {
        String(cString: ZSTD_getErrorName(code))
    }
}

/// Decompresses a zstd stream chunk by chunk (any number of frames), for inputs read as they come.
public final class ZstdStreamDecoder {
    private let stream: OpaquePointer
    /// Bytes of output room offered to each decompression step.
    private let step = 1 << 20
    /// Whether the last chunk ended exactly at the end of a frame (a truncated stream does not).
    public private(set) var atFrameEnd = true

    public init() {
        stream = ZSTD_createDStream()
        ZSTD_initDStream(stream)
    }

    deinit { ZSTD_freeDStream(stream) }

    /// Whether `prefix` starts with the zstd frame magic number.
    public static func isZstd<Bytes: Collection<UInt8>>(_ prefix: Bytes) -> Bool {
        prefix.count >= 4 && prefix.prefix(4).elementsEqual([0x28, 0xB5, 0x2F, 0xFD])
    }

    /// Decompresses from `input[consumed...]` into `output` until either is used up; advances `consumed` and
    /// returns the bytes written. An `output` filled to the brim may leave decoded bytes inside the decoder: call
    /// again (with no new input) for them.
    /// - Throws: ``ShardError`` `.corrupt` when the bytes are not a valid zstd stream.
    public func decompress(
        _ input: UnsafeRawBufferPointer, consumed: inout Int, into output: UnsafeMutableRawBufferPointer
    ) throws(ShardError) -> Int {
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: consumed)
        var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        let result = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
        if ZSTD_isError(result) != 0 { throw ShardError.make(.corrupt, "not a valid zstd stream") }
        consumed = inBuffer.pos
        if outBuffer.pos > 0 || inBuffer.pos > 0 { atFrameEnd = result == 0 }
        return outBuffer.pos
    }

    /// Decompresses `chunk` and appends what it yields to `destination`, writing straight into its spare capacity.
    /// - Throws: ``ShardError`` `.corrupt` when the bytes are not a valid zstd stream.
    public func decompress(_ chunk: UnsafeRawBufferPointer, appendingTo destination: inout [UInt8]) throws(ShardError) {
        var consumed = 0
        while consumed < chunk.count || !atFrameEnd {
            let before = destination.count
            destination.append(contentsOf: repeatElement(0, count: step))
            var produced = 0
            var failure: ShardError?
            destination.withUnsafeMutableBytes { out in
                let room = UnsafeMutableRawBufferPointer(rebasing: out[before...])
                do throws(ShardError) { produced = try decompress(chunk, consumed: &consumed, into: room) } catch { failure = error }
            }
            destination.removeLast(step - produced)
            if let failure { throw failure }
            // All input used and the decoder holds nothing more to flush.
            if consumed == chunk.count && produced < step { break }
        }
    }
}
