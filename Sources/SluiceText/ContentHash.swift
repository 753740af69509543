internal import CXXHash

/// A 64-bit XXH3 hash of text bytes: the key of exact-duplicate detection and of MinHash shingles.
///
/// Pure and deterministic across runs and machines (XXH3 is specified byte-for-byte).
public struct ContentHash: Hashable, Sendable, CustomStringConvertible {
    /// The hash value.
    public let value: UInt64

    /// Hashes raw bytes with a seed (0 by default).
    public init(bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) {
        value = XXH3_64bits_withSeed(bytes.baseAddress, bytes.count, seed)
    }

    /// Hashes the UTF-8 bytes of a string without copying them when the string is native.
    public init(_ text: String, seed: UInt64 = 0) {
        var text = text
        value = text.withUTF8 { XXH3_64bits_withSeed($0.baseAddress, $0.count, seed) }
    }

    /// Hashes a byte array.
    public init(_ bytes: [UInt8], seed: UInt64 = 0) {
        value = bytes.withUnsafeBytes { XXH3_64bits_withSeed($0.baseAddress, $0.count, seed) }
    }

    /// 16 lowercase hex digits.
    public var description: String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
