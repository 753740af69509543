internal import Foundation

/// JSON string escaping for the JSON documents Sluice writes by hand.
public enum JSONText {
    /// Appends UTF-8 bytes as a quoted JSON string (the bytes must be valid UTF-8).
    public static func appendString<Bytes: Sequence<UInt8>>(_ bytes: Bytes, to out: inout [UInt8]) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { appendString(contiguous: $0, to: &out) }
        if done != nil { return }
        out.append(0x22)
        for byte in bytes { appendEscaped(byte, to: &out) }
        out.append(0x22)
    }

    /// Runs of bytes that need no escape are appended whole.
    private static func appendString(contiguous bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.append(0x22)
        var start = 0
        for index in 0..<bytes.count where bytes[index] < 0x20 || bytes[index] == 0x22 || bytes[index] == 0x5C {
            if index > start { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index])) }
            appendEscaped(bytes[index], to: &out)
            start = index + 1
        }
        if bytes.count > start { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...])) }
        out.append(0x22)
    }

    private static func appendEscaped(_ byte: UInt8, to out: inout [UInt8]) {
        switch byte {
        case 0x22: out.append(contentsOf: [0x5C, 0x22])
        case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
        case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
        case 0x0D: out.append(contentsOf: [0x5C, 0x72])
        case 0x09: out.append(contentsOf: [0x5C, 0x74])
        case 0..<0x20:
            let hex: StaticString = "0123456789abcdef"
            out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hex.utf8Start[Int(byte >> 4)], hex.utf8Start[Int(byte & 15)]])
        default: out.append(byte)
        }
    }

    /// Appends `value` as a JSON string.
    public static func appendString(_ value: String, to out: inout [UInt8]) {
        appendString(value.utf8, to: &out)
    }

    /// `value` as a quoted JSON string.
    public static func string(_ value: String) -> String {
        var out: [UInt8] = []
        appendString(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `value` with `digits` (0…6) decimals, the text C's `printf("%.<digits>f")` writes, without going through it.
    ///
    /// Foundation's `String(format:)` costs microseconds a call (locale lookup, argument boxing), which adds up
    /// for a score written per rejected record. The scaled value is rounded to nearest, ties to even, as printf
    /// rounds the exact binary value; whenever that cannot be decided from the scaled double (an inexact product
    /// that rounded onto a tie), and for negative, huge or non-finite values, the answer comes from
    /// `String(format:)` itself.
    public static func fixed(_ value: Double, digits: Int) -> String {
        precondition((0...6).contains(digits), "fixed(_:digits:) takes 0 to 6 digits")
        var power = 1.0
        for _ in 0..<digits { power *= 10 }
        let scaled = value * power
        // Below 2^52 the ulp is at most 1/2; -0.0 prints "-0.000".
        guard value.sign == .plus, scaled < 4.0e15 else { return slowFixed(value, digits: digits) }
        let rounded = scaled.rounded(.toNearestOrEven)
        let exact = (-scaled).addingProduct(value, power) == 0  // value × power is a double: no rounding hid a tie
        // A tie (n + 0.5) is then a double, so rounding never carries an inexact product across one: it lands on
        // the tie or stays on its side. Only one that lands on it (or, for margin, within a millionth) is undecided.
        if !exact && abs(abs(scaled - rounded) - 0.5) < 1e-6 { return slowFixed(value, digits: digits) }
        var units = UInt64(rounded)
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: 24)
        var end = out.count
        var written = 0
        while units > 0 || written <= digits {
            if written == digits && digits > 0 {
                end -= 1
                out[end] = UInt8(ascii: ".")
            }
            end -= 1
            out[end] = UInt8(ascii: "0") + UInt8(units % 10)
            units /= 10
            written += 1
        }
        return String(decoding: out[end...], as: UTF8.self)
    }

    private static func slowFixed(_ value: Double, digits: Int) -> String {
        String(format: "%.\(digits)f", value)
    }
}

/// A connector's look at one JSON Lines record before it goes to a raw topic: is it an envelope the pipeline can
/// decode (a JSON object with a string `text`), what is its key, and does it name its source.
///
/// Cheaper than ``EnvelopeDecoder``: nothing is unescaped or copied except the key.
public enum EnvelopeLine {
    /// What ``inspect(_:keyField:)`` found.
    public struct Inspection: Sendable {
        /// Where the key field's value lies in the inspected bytes (a string without escapes, between its quotes;
        /// numbers and literals as written); `nil` when absent, null, or decoded into `decodedKey`.
        public var keyRange: Range<Int>?
        /// The key field's string value when it had escapes.
        public var decodedKey: [UInt8]?
        /// Whether the object has a non-null `source` member.
        public var hasSource: Bool
    }

    /// Checks that `bytes` are valid UTF-8 holding one JSON object with a string member `text`, and extracts the
    /// member `keyField` (a top-level name) when given.
    public static func inspect(_ bytes: UnsafeBufferPointer<UInt8>, keyField: [UInt8]?) -> Result<Inspection, DecodeFailure> {
        var inspection = Inspection(keyRange: nil, decodedKey: nil, hasSource: false)
        var ignored: [UInt8] = []
        var hasText = false
        let result = members(bytes) { (name, scanner) throws(DecodeFailure) in
            let start = scanner.position
            let first = scanner.peek()
            if let keyField, name.elementsEqual(keyField), first != UInt8(ascii: "n") {
                if first == UInt8(ascii: "\"") {
                    try scanner.parseString(into: &ignored, decode: false)
                    let inner = (start + 1)..<(scanner.position - 1)
                    if bytes[inner].contains(UInt8(ascii: "\\")) {
                        var value: [UInt8] = []
                        var decoder = JSONScanner(bytes: bytes, stripNul: false)
                        decoder.position = start
                        try decoder.parseString(into: &value, decode: true)
                        inspection.decodedKey = value
                    } else {
                        inspection.keyRange = inner
                    }
                    if name.elementsEqual("text".utf8) { hasText = true }
                    if name.elementsEqual("source".utf8) { inspection.hasSource = true }
                    return
                }
                try scanner.skipValue(depth: 1)
                inspection.keyRange = start..<scanner.position
                return
            }
            if name.elementsEqual("text".utf8) {
                guard first == UInt8(ascii: "\"") else {
                    throw DecodeFailure(.textWrongType, "text must be a string")
                }
                hasText = true
            } else if name.elementsEqual("source".utf8), first != UInt8(ascii: "n") {
                inspection.hasSource = true
            }
            try scanner.skipValue(depth: 1)
        }
        if case .failure(let failure) = result {
            // Strings were checked while scanned; a non-ASCII byte elsewhere is reported as what it is.
            if failure.reason == .invalidJSON, let offset = UTF8Validation.firstInvalidByte(bytes) {
                return .failure(DecodeFailure(.invalidUTF8, "byte \(offset): not valid UTF-8"))
            }
            return .failure(failure)
        }
        guard hasText else { return .failure(DecodeFailure(.missingText, "no \"text\" field")) }
        return .success(inspection)
    }

    /// Rewrites one JSON object: members named in `renames` (input name → envelope name) get their new names;
    /// `additions` (name, JSON value) are appended when the object has no member of that name after renaming.
    /// Member values are copied byte for byte.
    public static func rewrite(
        _ bytes: UnsafeBufferPointer<UInt8>, renames: [String: String], additions: [(String, [UInt8])],
        into out: inout [UInt8]
    ) -> Result<Void, DecodeFailure> {
        var present = Set<String>()
        out.append(UInt8(ascii: "{"))
        let result = members(bytes) { (name, scanner) throws(DecodeFailure) in
            let start = scanner.position
            try scanner.skipValue(depth: 1)
            let original = String(decoding: name, as: UTF8.self)
            let renamed = renames[original] ?? original
            // A renamed member wins over an input member that already had the envelope name.
            if present.contains(renamed) { return }
            present.insert(renamed)
            if out.count > 1 { out.append(UInt8(ascii: ",")) }
            JSONText.appendString(renamed, to: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<scanner.position]))
        }
        if case .failure(let failure) = result { return .failure(failure) }
        for (name, value) in additions where !present.contains(name) {
            if out.count > 1 { out.append(UInt8(ascii: ",")) }
            JSONText.appendString(name, to: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: value)
        }
        out.append(UInt8(ascii: "}"))
        return .success(())
    }

    /// Walks the members of one top-level JSON object; `body` gets each member's name (decoded only when it has
    /// escapes) and must consume the member's value from the scanner.
    private static func members(
        _ bytes: UnsafeBufferPointer<UInt8>,
        _ body: (UnsafeBufferPointer<UInt8>, inout JSONScanner) throws(DecodeFailure) -> Void
    ) -> Result<Void, DecodeFailure> {
        var scanner = JSONScanner(bytes: bytes, stripNul: false)
        scanner.validatesUTF8 = true
        var ignored: [UInt8] = []
        do throws(DecodeFailure) {
            guard scanner.peek() == UInt8(ascii: "{") else {
                if scanner.atEnd { throw DecodeFailure(.invalidJSON, "empty line") }
                var probe = scanner
                if (try? probe.skipValue()) != nil, probe.peek() == nil {
                    throw DecodeFailure(.notAnObject, "the value is JSON but not an object")
                }
                throw scanner.failure(.invalidJSON, "expected '{'")
            }
            scanner.position += 1
            if scanner.peek() == UInt8(ascii: "}") {
                scanner.position += 1
            } else {
                while true {
                    guard scanner.peek() == UInt8(ascii: "\"") else { throw scanner.failure(.invalidJSON, "expected '\"'") }
                    let nameStart = scanner.position + 1
                    try scanner.parseString(into: &ignored, decode: false)
                    let raw = UnsafeBufferPointer(rebasing: bytes[nameStart..<(scanner.position - 1)])
                    try scanner.expect(UInt8(ascii: ":"), "':'")
                    guard scanner.peek() != nil else { throw scanner.failure(.invalidJSON, "unexpected end, expected a value") }
                    if raw.contains(UInt8(ascii: "\\")) {
                        var decoded: [UInt8] = []
                        var nameScanner = JSONScanner(bytes: bytes, stripNul: false)
                        nameScanner.position = nameStart - 1
                        try nameScanner.parseString(into: &decoded, decode: true)
                        try decoded.withUnsafeBufferPointer { (name) throws(DecodeFailure) in try body(name, &scanner) }
                    } else {
                        try body(raw, &scanner)
                    }
                    guard let next = scanner.peek() else { throw scanner.failure(.invalidJSON, "unexpected end in object") }
                    scanner.position += 1
                    if next == UInt8(ascii: "}") { break }
                    guard next == UInt8(ascii: ",") else { throw scanner.failure(.invalidJSON, "expected ',' or '}'") }
                }
            }
            if scanner.peek() != nil { throw scanner.failure(.invalidJSON, "data after the JSON object") }
            return .success(())
        } catch {
            return .failure(error)
        }
    }
}
