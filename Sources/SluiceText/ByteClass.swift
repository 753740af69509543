/// Byte predicates for the hot text loops: ASCII only, branch-light.
@usableFromInline
enum ByteClass {
    @inlinable static func isDigit(_ b: UInt8) -> Bool { b &- 0x30 < 10 }
    @inlinable static func isLower(_ b: UInt8) -> Bool { b &- 0x61 < 26 }
    @inlinable static func isUpper(_ b: UInt8) -> Bool { b &- 0x41 < 26 }
    @inlinable static func isLetter(_ b: UInt8) -> Bool { (b | 0x20) &- 0x61 < 26 }
    @inlinable static func isAlnum(_ b: UInt8) -> Bool { isDigit(b) || isLetter(b) }
    @inlinable static func isWordByte(_ b: UInt8) -> Bool { isAlnum(b) || b == UInt8(ascii: "_") }
    @inlinable static func isHex(_ b: UInt8) -> Bool { isDigit(b) || (b | 0x20) &- 0x61 < 6 }
    @inlinable static func lower(_ b: UInt8) -> UInt8 { isUpper(b) ? b | 0x20 : b }
    /// Space or tab.
    @inlinable static func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
    @inlinable static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
    @inlinable static func hexValue(_ b: UInt8) -> Int? {
        if isDigit(b) { return Int(b &- 0x30) }
        let l = b | 0x20
        if l &- 0x61 < 6 { return Int(l &- 0x61) + 10 }
        return nil
    }
}

/// Appends the UTF-8 encoding of a scalar value.
@inlinable
func appendUTF8(_ scalar: UInt32, to output: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
        output.append(UInt8(scalar))
    case 0x80..<0x800:
        output.append(UInt8(0xC0 | (scalar >> 6)))
        output.append(UInt8(0x80 | (scalar & 0x3F)))
    case 0x800..<0x10000:
        output.append(UInt8(0xE0 | (scalar >> 12)))
        output.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        output.append(UInt8(0x80 | (scalar & 0x3F)))
    default:
        output.append(UInt8(0xF0 | (scalar >> 18)))
        output.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
        output.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        output.append(UInt8(0x80 | (scalar & 0x3F)))
    }
}

/// Writes the UTF-8 encoding of a scalar value at `out` (room for 4 bytes); returns its length.
@inlinable
func writeUTF8(_ scalar: UInt32, to out: UnsafeMutablePointer<UInt8>) -> Int {
    switch scalar {
    case 0..<0x80:
        out[0] = UInt8(scalar)
        return 1
    case 0x80..<0x800:
        out[0] = UInt8(0xC0 | (scalar >> 6))
        out[1] = UInt8(0x80 | (scalar & 0x3F))
        return 2
    case 0x800..<0x10000:
        out[0] = UInt8(0xE0 | (scalar >> 12))
        out[1] = UInt8(0x80 | ((scalar >> 6) & 0x3F))
        out[2] = UInt8(0x80 | (scalar & 0x3F))
        return 3
    default:
        out[0] = UInt8(0xF0 | (scalar >> 18))
        out[1] = UInt8(0x80 | ((scalar >> 12) & 0x3F))
        out[2] = UInt8(0x80 | ((scalar >> 6) & 0x3F))
        out[3] = UInt8(0x80 | (scalar & 0x3F))
        return 4
    }
}

/// Decodes the scalar at `i` of valid UTF-8 and returns it with its length in bytes.
@inlinable
func decodeUTF8(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (scalar: UInt32, length: Int) {
    let b0 = UInt32(bytes[i])
    if b0 < 0x80 { return (b0, 1) }
    // Documents hold valid UTF-8; a truncated sequence at the end still must not read past the buffer.
    let length = b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4
    if i + length > bytes.count || b0 < 0xC0 { return (0xFFFD, 1) }
    if b0 < 0xE0 { return (((b0 & 0x1F) << 6) | (UInt32(bytes[i + 1]) & 0x3F), 2) }
    if b0 < 0xF0 {
        return (((b0 & 0x0F) << 12) | ((UInt32(bytes[i + 1]) & 0x3F) << 6) | (UInt32(bytes[i + 2]) & 0x3F), 3)
    }
    return (
        ((b0 & 0x07) << 18) | ((UInt32(bytes[i + 1]) & 0x3F) << 12) | ((UInt32(bytes[i + 2]) & 0x3F) << 6)
            | (UInt32(bytes[i + 3]) & 0x3F), 4
    )
}
