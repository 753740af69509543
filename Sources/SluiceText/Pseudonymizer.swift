internal import COpenSSL

/// Keyed pseudonyms: HMAC-SHA256 (libcrypto) of the kind and the canonical value, truncated to 48 bits and
/// written as 12 hex digits. Stable across documents and processes for one key; without the key a pseudonym
/// cannot be linked back to its value.
struct Pseudonymizer: Sendable {
    private let key: [UInt8]

    init(key: [UInt8]) {
        self.key = key
    }

    /// `[EMAIL:3f9a2c1b7d04]` for the value bytes of one finding.
    func pseudonym(kind: PIIKind, value: UnsafeBufferPointer<UInt8>, into output: inout [UInt8]) {
        var message = Array(kind.rawValue.utf8)
        message.append(0x3A)
        canonicalize(kind: kind, value: value, into: &message)
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { messageBytes in
                _ = HMAC(
                    EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                    messageBytes.bindMemory(to: UInt8.self).baseAddress, messageBytes.count, &digest, &length)
            }
        }
        output.append(UInt8(ascii: "["))
        output.append(contentsOf: kind.label.utf8)
        output.append(UInt8(ascii: ":"))
        let hex = Array("0123456789abcdef".utf8)
        for byte in digest.prefix(6) {
            output.append(hex[Int(byte >> 4)])
            output.append(hex[Int(byte & 0x0F)])
        }
        output.append(UInt8(ascii: "]"))
    }

    /// One spelling per entity: e-mail addresses lowercased; numbers reduced to their digits (and X), so
    /// `138-0013-8000` and `13800138000` get one pseudonym.
    private func canonicalize(kind: PIIKind, value: UnsafeBufferPointer<UInt8>, into message: inout [UInt8]) {
        switch kind {
        case .email, .ipv6:
            for b in value { message.append(ByteClass.lower(b)) }
        case .phone, .bankCard, .ssn, .cnID:
            for b in value where ByteClass.isDigit(b) || b | 0x20 == UInt8(ascii: "x") {
                message.append(ByteClass.isDigit(b) ? b : UInt8(ascii: "X"))
            }
        default:
            message.append(contentsOf: value)
        }
    }
}
