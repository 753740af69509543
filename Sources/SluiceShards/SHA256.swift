internal import COpenSSL

/// Streaming SHA-256 (libcrypto EVP).
final class SHA256Digest {
    // One owner at a time: the shard writer that feeds it.
    private let context: OpaquePointer

    init() {
        context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    /// 64 lowercase hex digits.
    func finish() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &digest, &length)
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in digest {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// A SHA-256 digest held inline (no heap allocation): what each sample's index row keeps of its text.
public struct SHA256Value: Sendable, Equatable, Hashable {
    public var words: SIMD4<UInt64>

    /// The digest of `bytes`, in one call into libcrypto's SHA-256 (no algorithm lookup per call).
    public init(_ bytes: [UInt8]) {
        var words = SIMD4<UInt64>()
        withUnsafeMutableBytes(of: &words) { digest in
            bytes.withUnsafeBytes { source in
                sluice_sha256(source.baseAddress, source.count, digest.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        self.words = words
    }

    /// From 32 stored bytes; nil for another length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        var words = SIMD4<UInt64>()
        withUnsafeMutableBytes(of: &words) { $0.copyBytes(from: bytes) }
        self.words = words
    }

    public var bytes: [UInt8] { Swift.withUnsafeBytes(of: words) { Array($0) } }
    public var hex: String { hexString(bytes) }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: words, body)
    }
}

/// Lowercase hex digits of bytes.
public func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    text.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: text, as: UTF8.self)
}

/// The bytes of an even-length hex string; nil for anything else.
public func hexBytes(_ text: String) -> [UInt8]? {
    let digits = Array(text.utf8)
    guard digits.count % 2 == 0 else { return nil }
    func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(digits.count / 2)
    var i = 0
    while i < digits.count {
        guard let high = value(digits[i]), let low = value(digits[i + 1]) else { return nil }
        bytes.append(high << 4 | low)
        i += 2
    }
    return bytes
}

/// SHA-256 of a byte string as 64 lowercase hex digits.
public func sha256Hex(_ bytes: [UInt8]) -> String {
    let digest = SHA256Digest()
    bytes.withUnsafeBytes { digest.update($0) }
    return digest.finish()
}
