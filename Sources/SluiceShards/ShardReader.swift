internal import CZstd
public import Foundation

/// One sample read back from a shard.
public struct ShardSampleData: Sendable, Equatable {
    public var key: String
    public var text: [UInt8]
    public var json: [UInt8]
}

/// Reads shards: every sample in file order, or one sample by its index location.
///
/// Every member name is checked (no absolute paths, no `..`) and every tar header checksum; a truncated file,
/// a corrupt zstd frame or a bad header is a typed ``ShardError``, never a crash.
public enum ShardReader {
    /// The format a file name says.
    public static func format(of url: URL) -> ShardFormat? {
        if url.lastPathComponent.hasSuffix(".tar.zst") { return .tarZstd }
        if url.lastPathComponent.hasSuffix(".tar") { return .tar }
        return nil
    }

    /// The bytes of a shard file as stored.
    public static func fileBytes(of url: URL) throws(ShardError) -> [UInt8] {
        do { return [UInt8](try Data(contentsOf: url)) } catch {
            throw ShardError.make(.io, "cannot read \(url.lastPathComponent): \(error.localizedDescription)")
        }
    }

    /// Every sample of a shard, in file order (`<key>.txt` and `<key>.json` grouped by key).
    public static func samples(of url: URL) throws(ShardError) -> [ShardSampleData] {
        try samples(stored: try fileBytes(of: url), format: format(of: url) ?? .tar, name: url.lastPathComponent)
    }

    /// Every sample of a shard, after checking that the file's SHA-256 is `sha256` (64 hex digits).
    /// - Throws: ``ShardError`` `.checksumMismatch` when it is not; the usual read errors otherwise.
    public static func samples(of url: URL, expectingSHA256 sha256: String) throws(ShardError) -> [ShardSampleData] {
        let stored = try fileBytes(of: url)
        let digest = SHA256Digest()
        stored.withUnsafeBytes { digest.update($0) }
        let actual = digest.finish()
        guard actual == sha256.lowercased() else {
            throw ShardError.make(.checksumMismatch, "\(url.lastPathComponent): SHA-256 \(actual), announced \(sha256)")
        }
        return try samples(stored: stored, format: format(of: url) ?? .tar, name: url.lastPathComponent)
    }

    /// Every sample of a shard whose stored bytes are already read.
    public static func samples(stored: [UInt8], format: ShardFormat, name: String) throws(ShardError)
        -> [ShardSampleData]
    {
        let tar = format == .tarZstd ? try decompressFrames(stored, name: name) : stored
        let parsed = tar.withUnsafeBytes { raw in Result { () throws(ShardError) in try Tar.members(raw) } }
        let members = try parsed.get()
        var samples: [ShardSampleData] = []
        var positions: [String: Int] = [:]
        for member in members {
            guard let dot = member.name.firstIndex(of: ".") else { continue }
            let key = String(member.name[..<dot])
            let ext = member.name[member.name.index(after: dot)...]
            let data = Array(tar[member.dataOffset..<(member.dataOffset + member.size)])
            let index = positions[key] ?? {
                samples.append(ShardSampleData(key: key, text: [], json: []))
                positions[key] = samples.count - 1
                return samples.count - 1
            }()
            if ext == "txt" { samples[index].text = data } else if ext == "json" { samples[index].json = data }
        }
        return samples
    }

    /// One sample by its location (from ``ShardIndex/location(ofKey:)``): reads one frame, not the shard.
    public static func sample(at location: SampleLocation, in url: URL, format: ShardFormat) throws(ShardError)
        -> ShardSampleData
    {
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw ShardError.make(.io, "cannot open \(url.lastPathComponent)")
        }
        defer { try? handle.close() }
        func read(_ offset: Int, _ length: Int) throws(ShardError) -> [UInt8] {
            do {
                try handle.seek(toOffset: UInt64(offset))
                let data = try handle.read(upToCount: length) ?? Data()
                guard data.count == length else {
                    throw ShardError.make(.truncated, "\(url.lastPathComponent) ends before byte \(offset + length)")
                }
                return [UInt8](data)
            } catch let error as ShardError {
                throw error
            } catch {
                throw ShardError.make(.io, "reading \(url.lastPathComponent): \(error.localizedDescription)")
            }
        }
        let bytes: [UInt8]
        if format == .tarZstd {
            bytes = try decompressFrames(try read(location.frameOffset, location.frameLength), name: url.lastPathComponent)
        } else {
            let start = min(location.textOffset, location.jsonOffset) - Tar.block
            let end = max(location.textOffset + location.textLength, location.jsonOffset + location.jsonLength)
            let chunk = try read(start, end - start)
            return ShardSampleData(
                key: location.key,
                text: Array(chunk[(location.textOffset - start)..<(location.textOffset - start + location.textLength)]),
                json: Array(chunk[(location.jsonOffset - start)..<(location.jsonOffset - start + location.jsonLength)]))
        }
        guard location.textOffset + location.textLength <= bytes.count,
            location.jsonOffset + location.jsonLength <= bytes.count
        else { throw ShardError.make(.corrupt, "the index points past the frame of \(location.key)") }
        return ShardSampleData(
            key: location.key, text: Array(bytes[location.textOffset..<(location.textOffset + location.textLength)]),
            json: Array(bytes[location.jsonOffset..<(location.jsonOffset + location.jsonLength)]))
    }

    /// Decompresses a sequence of zstd frames.
    static func decompressFrames(_ bytes: [UInt8], name: String) throws(ShardError) -> [UInt8] {
        var output: [UInt8] = []
        var offset = 0
        while offset < bytes.count {
            let result = bytes.withUnsafeBytes { raw in
                frameAt(raw, offset)
            }
            switch result {
            case .failure(let error): throw ShardError.make(error.code, "\(name): \(error.message) at byte \(offset)")
            case .success(let (frame, consumed)):
                output.append(contentsOf: frame)
                offset += consumed
            }
        }
        return output
    }

    private static func frameAt(_ raw: UnsafeRawBufferPointer, _ offset: Int) -> Result<([UInt8], Int), FrameError> {
        let start = raw.baseAddress! + offset
        let remaining = raw.count - offset
        let compressedSize = ZSTD_findFrameCompressedSize(start, remaining)
        if ZSTD_isError(compressedSize) != 0 {
            let message = String(cString: ZSTD_getErrorName(compressedSize))
            return .failure(FrameError(message.contains("Src size") || message.contains("srcSize") ? .truncated : .corrupt, "zstd: \(message)"))
        }
        let contentSize = ZSTD_getFrameContentSize(start, remaining)
        guard contentSize != ZSTD_CONTENTSIZE_ERROR, contentSize != ZSTD_CONTENTSIZE_UNKNOWN, contentSize < 1 << 34 else {
            return .failure(FrameError(.corrupt, "zstd frame without a usable content size"))
        }
        var frame = [UInt8](repeating: 0, count: Int(contentSize))
        let written = frame.withUnsafeMutableBytes { destination in
            ZSTD_decompress(destination.baseAddress, destination.count, start, compressedSize)
        }
        if ZSTD_isError(written) != 0 {
            return .failure(FrameError(.corrupt, "zstd: \(String(cString: ZSTD_getErrorName(written)))"))
        }
        return .success((frame, compressedSize))
    }

    private struct FrameError: Error {
        var code: ShardError.Code
        var message: String
        init(_ code: ShardError.Code, _ message: String) {
            self.code = code
            self.message = message
        }
    }
}

