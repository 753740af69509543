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
