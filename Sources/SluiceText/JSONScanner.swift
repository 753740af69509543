internal import CSluiceScan
/// A strict JSON scanner over UTF-8 bytes that were already validated as UTF-8.
///
/// Follows RFC 8259: no comments, no trailing commas, no single quotes, no NaN. Decodes strings into UTF-8
/// bytes, rejecting unpaired surrogate escapes, and applies the NUL policy to `\u0000`.
struct JSONScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0
    let stripNul: Bool
    /// Validate UTF-8 inside strings while scanning them (bytes outside strings must be ASCII anyway), instead of
    /// a separate pass over the whole value.
    var validatesUTF8 = false
    static let maximumDepth = 64

    init(bytes: UnsafeBufferPointer<UInt8>, stripNul: Bool) {
        self.bytes = bytes
        self.stripNul = stripNul
    }

    var atEnd: Bool { position >= bytes.count }

    func failure(_ reason: DecodeFailure.Reason, _ what: String) -> DecodeFailure {
        DecodeFailure(reason, "byte \(position): \(what)")
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws(DecodeFailure) {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == byte else {
            throw failure(.invalidJSON, atEnd ? "unexpected end, expected \(what)" : "expected \(what)")
        }
        position += 1
    }

    /// Peeks the next non-whitespace byte.
    mutating func peek() -> UInt8? {
        skipWhitespace()
        return position < bytes.count ? bytes[position] : nil
    }

    /// Parses a string at the current position; appends its decoded UTF-8 to `output` when given.
    mutating func parseString(into output: inout [UInt8], decode: Bool) throws(DecodeFailure) {
        try expect(UInt8(ascii: "\""), "'\"'")
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                return
            }
            if byte == UInt8(ascii: "\\") {
                position += 1
                guard position < bytes.count else { break }
                let escape = bytes[position]
                position += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"):
                    if decode { output.append(escape) }
                case UInt8(ascii: "b"): if decode { output.append(0x08) }
                case UInt8(ascii: "f"): if decode { output.append(0x0C) }
                case UInt8(ascii: "n"): if decode { output.append(0x0A) }
                case UInt8(ascii: "r"): if decode { output.append(0x0D) }
                case UInt8(ascii: "t"): if decode { output.append(0x09) }
                case UInt8(ascii: "u"):
                    var scalar = try parseHex4()
                    if scalar >= 0xD800 && scalar <= 0xDBFF {
                        guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                            bytes[position + 1] == UInt8(ascii: "u")
                        else { throw failure(.loneSurrogate, "high surrogate escape without a low surrogate") }
                        position += 2
                        let low = try parseHex4()
                        guard low >= 0xDC00 && low <= 0xDFFF else {
                            throw failure(.loneSurrogate, "high surrogate escape followed by a non-low surrogate")
                        }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                        throw failure(.loneSurrogate, "low surrogate escape without a high surrogate")
                    }
                    if scalar == 0 {
                        guard stripNul else { throw failure(.nulCharacter, "escaped NUL character (\\u0000)") }
                        continue
                    }
                    if decode { appendUTF8(scalar, to: &output) }
                default:
                    throw failure(.invalidJSON, "invalid escape in string")
                }
                continue
            }
            if byte < 0x20 { throw failure(.invalidJSON, "unescaped control character in string") }
            let start = position
            let count = bytes.count
            guard let base = bytes.baseAddress else { break }
            // A run of plain bytes, copied at once; multi-byte UTF-8 sequences validated in place when asked.
            if validatesUTF8 {
                var invalid: Int32 = 0
                position += sluice_json_plain_run_utf8(base + position, count - position, &invalid)
                if invalid != 0 { throw failure(.invalidUTF8, "not valid UTF-8") }
            } else {
                position += sluice_json_plain_run(base + position, count - position, 0)
            }
            if decode { output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<position])) }
        }
        throw failure(.invalidJSON, "unterminated string")
    }

    private mutating func parseHex4() throws(DecodeFailure) -> UInt32 {
        guard position + 4 <= bytes.count else { throw failure(.invalidJSON, "truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw failure(.invalidJSON, "invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    /// Validates and skips any JSON value.
    mutating func skipValue(depth: Int = 0) throws(DecodeFailure) {
        guard depth < Self.maximumDepth else { throw failure(.invalidJSON, "nesting deeper than \(Self.maximumDepth)") }
        guard let byte = peek() else { throw failure(.invalidJSON, "unexpected end, expected a value") }
        switch byte {
        case UInt8(ascii: "\""):
            var ignored: [UInt8] = []
            try parseString(into: &ignored, decode: false)
        case UInt8(ascii: "{"):
            position += 1
            if peek() == UInt8(ascii: "}") {
                position += 1
                return
            }
            while true {
                var ignored: [UInt8] = []
                try parseString(into: &ignored, decode: false)
                try expect(UInt8(ascii: ":"), "':'")
                try skipValue(depth: depth + 1)
                guard let next = peek() else { throw failure(.invalidJSON, "unexpected end in object") }
                position += 1
                if next == UInt8(ascii: "}") { return }
                guard next == UInt8(ascii: ",") else { throw failure(.invalidJSON, "expected ',' or '}'") }
            }
        case UInt8(ascii: "["):
            position += 1
            if peek() == UInt8(ascii: "]") {
                position += 1
                return
            }
            while true {
                try skipValue(depth: depth + 1)
                guard let next = peek() else { throw failure(.invalidJSON, "unexpected end in array") }
                position += 1
                if next == UInt8(ascii: "]") { return }
                guard next == UInt8(ascii: ",") else { throw failure(.invalidJSON, "expected ',' or ']'") }
            }
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try skipNumber()
        default: throw failure(.invalidJSON, "unexpected character, expected a value")
        }
    }

    mutating func literal(_ word: StaticString) throws(DecodeFailure) {
        let count = word.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw failure(.invalidJSON, "invalid literal") }
        for index in 0..<count where bytes[position + index] != word.utf8Start[index] {
            throw failure(.invalidJSON, "invalid literal")
        }
        position += count
    }

    private mutating func skipNumber() throws(DecodeFailure) {
        func digits(_ scanner: inout JSONScanner) -> Int {
            let start = scanner.position
            while scanner.position < scanner.bytes.count,
                scanner.bytes[scanner.position] >= UInt8(ascii: "0"), scanner.bytes[scanner.position] <= UInt8(ascii: "9")
            {
                scanner.position += 1
            }
            return scanner.position - start
        }
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count else { throw failure(.invalidJSON, "truncated number") }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
        } else if digits(&self) == 0 {
            throw failure(.invalidJSON, "invalid number")
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard digits(&self) > 0 else { throw failure(.invalidJSON, "invalid fraction") }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard digits(&self) > 0 else { throw failure(.invalidJSON, "invalid exponent") }
        }
    }
}
