internal import CSluiceScan

/// Removes what a reader cannot see but a model would learn: C0/C1 control characters (tab and line feed stay),
/// ANSI escape sequences, zero-width and bidirectional formatting characters, byte order marks and soft hyphens.
/// Line ends become `\n` (CRLF and lone CR), U+2028/U+2029 become `\n`, and a no-break space becomes a space.
///
/// A zero-width joiner between two emoji stays: it is part of one glyph (👩‍💻).
enum InvisibleCharacters {
    /// Cleans `input` into `output` and returns the number of characters removed or replaced, or 0 without
    /// touching `output` when there is nothing to do (the common case: one read-only pass).
    static func clean(_ input: UnsafeBufferPointer<UInt8>, into output: inout [UInt8]) -> Int {
        guard let first = firstChange(input) else { return 0 }
        output.removeAll(keepingCapacity: true)
        output.reserveCapacity(input.count)
        output.append(contentsOf: UnsafeBufferPointer(rebasing: input[0..<first]))
        var changes = 0
        var i = first
        let n = input.count
        while i < n {
            let b = input[i]
            if b >= 0x20 && b < 0x7F || b == 0x0A || b == 0x09 {
                output.append(b)
                i += 1
                continue
            }
            if b == 0x0D {
                output.append(0x0A)
                i += (i + 1 < n && input[i + 1] == 0x0A) ? 2 : 1
                changes += 1
                continue
            }
            if b == 0x1B {
                i = endOfEscape(input, at: i)
                changes += 1
                continue
            }
            if b < 0x80 {  // other C0 controls and DEL
                i += 1
                changes += 1
                continue
            }
            let (scalar, length) = decodeUTF8(input, at: i)
            switch action(for: scalar) {
            case .keep:
                output.append(contentsOf: UnsafeBufferPointer(rebasing: input[i..<i + length]))
            case .remove:
                if scalar == 0x200D && joinsEmoji(output, input, after: i + length) {
                    output.append(contentsOf: UnsafeBufferPointer(rebasing: input[i..<i + length]))
                } else {
                    changes += 1
                }
            case .space:
                output.append(0x20)
                changes += 1
            case .newline:
                output.append(0x0A)
                changes += 1
            }
            i += length
        }
        return max(changes, 1)
    }

    private enum Action { case keep, remove, space, newline }

    private static func action(for scalar: UInt32) -> Action {
        switch scalar {
        case 0x80...0x9F, 0xAD, 0x180E, 0x200B...0x200F, 0x202A...0x202E, 0x2060...0x2064, 0x2066...0x2069, 0xFEFF:
            return .remove
        case 0xA0:
            return .space
        case 0x2028, 0x2029:
            return .newline
        default:
            return .keep
        }
    }

    /// The first byte that may need a change; nil when the text is already clean.
    private static func firstChange(_ input: UnsafeBufferPointer<UInt8>) -> Int? {
        let n = input.count
        guard let base = input.baseAddress else { return nil }
        var i = 0
        while i < n {
            // Past the bytes that start nothing to change, sixteen at a time.
            i += sluice_invisible_candidate(base + i, n - i)
            guard i < n else { return nil }
            let b = input[i]
            if b < 0x80 { return i }
            // A lead byte 0xC2, 0xE1, 0xE2 or 0xEF (0xC0 and 0xC1 never start valid UTF-8): check the scalar.
            let (scalar, length) = decodeUTF8(input, at: i)
            if action(for: scalar) != .keep { return i }
            i += length
        }
        return nil
    }

    /// Skips an ANSI/VT escape: CSI (`ESC [ … final`), OSC (`ESC ] … BEL or ESC \`), or a two-byte escape.
    private static func endOfEscape(_ input: UnsafeBufferPointer<UInt8>, at start: Int) -> Int {
        let n = input.count
        var i = start + 1
        guard i < n else { return i }
        switch input[i] {
        case UInt8(ascii: "["):
            i += 1
            while i < n && input[i] >= 0x20 && input[i] <= 0x3F { i += 1 }  // parameters and intermediates
            return i < n && input[i] >= 0x40 && input[i] <= 0x7E ? i + 1 : i
        case UInt8(ascii: "]"):
            i += 1
            while i < n && i - start < 512 {
                if input[i] == 0x07 { return i + 1 }
                if input[i] == 0x1B && i + 1 < n && input[i + 1] == UInt8(ascii: "\\") { return i + 2 }
                i += 1
            }
            return start + 1
        case 0x40...0x5F:
            return i + 1
        default:
            return i
        }
    }

    /// Whether a zero-width joiner sits between two emoji (a supplementary-plane scalar or U+FE0F before it, one
    /// after it).
    private static func joinsEmoji(_ output: [UInt8], _ input: UnsafeBufferPointer<UInt8>, after index: Int) -> Bool {
        guard index < input.count, input[index] == 0xF0, output.count >= 3 else { return false }
        let tail = output.suffix(4)
        if tail.count == 4 && tail.first! == 0xF0 { return true }
        return output.suffix(3).elementsEqual([0xEF, 0xB8, 0x8F])
    }
}
