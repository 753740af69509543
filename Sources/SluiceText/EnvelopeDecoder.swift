internal import CSluiceScan
/// Decodes raw record bytes into a ``Document``, or says precisely why not.
///
/// A JSON envelope is an object with a required string `text` and optional string (or null) `id`, `source`,
/// `url`, `ts` (RFC 3339) and an object `meta`; unknown fields are validated and ignored. A topic declared
/// `format: text` carries the text itself. Checks run cheapest first: size, raw NUL bytes, UTF-8 validity, then
/// the JSON grammar. Pure: no I/O, no allocation beyond the decoded text and fields.
public struct EnvelopeDecoder: Sendable {
    /// How record values are encoded.
    public enum Format: String, Sendable {
        /// A JSON envelope object.
        case json
        /// The whole value is the text.
        case text
    }

    /// What to do with NUL characters (raw `0x00` bytes or `\u0000` escapes).
    public enum NulPolicy: String, Sendable {
        /// Reject the record (the default): NULs break downstream C tools and tokenizers.
        case reject
        /// Remove them and keep the record.
        case strip
    }

    /// The value encoding. Default `.json`.
    public var format: Format = .json
    /// Records larger than this many bytes are rejected. Default 1 MiB.
    public var maximumBytes: Int = 1 << 20
    /// Default `.reject`.
    public var nulPolicy: NulPolicy = .reject

    public init() {}

    /// Decodes one record value.
    public func decode(_ bytes: [UInt8]) -> Result<Document, DecodeFailure> {
        bytes.withUnsafeBufferPointer { decode($0) }
    }

    /// Decodes one record value from borrowed bytes.
    public func decode(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<Document, DecodeFailure> {
        guard bytes.count <= maximumBytes else {
            return .failure(DecodeFailure(.oversize, "\(bytes.count) bytes, limit \(maximumBytes)"))
        }
        if let base = bytes.baseAddress, case let nul = sluice_first_nul(base, bytes.count), nul < bytes.count {
            guard nulPolicy == .strip else {
                return .failure(DecodeFailure(.nulCharacter, "byte \(nul): raw NUL byte"))
            }
            let stripped = bytes.filter { $0 != 0 }
            return stripped.withUnsafeBufferPointer { decodeValidated($0) }
        }
        return decodeValidated(bytes)
    }

    private func decodeValidated(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<Document, DecodeFailure> {
        switch format {
        case .text:
            if let offset = UTF8Validation.firstInvalidByte(bytes) {
                return .failure(DecodeFailure(.invalidUTF8, "byte \(offset): not valid UTF-8"))
            }
            guard TextChecks.hasVisibleContent(bytes) else { return .failure(DecodeFailure(.emptyText, "text is empty")) }
            var document = Document(text: Array(bytes))
            document.rawTextHash = ContentHash(bytes: UnsafeRawBufferPointer(bytes)).value
            return .success(document)
        case .json:
            // UTF-8 is validated inside strings while they are scanned (outside them only ASCII is valid JSON);
            // a failure is reported as invalid UTF-8 when the record has any, as a separate first pass would.
            do {
                return .success(try decodeJSON(bytes))
            } catch {
                if error.reason != .invalidUTF8, let offset = UTF8Validation.firstInvalidByte(bytes) {
                    return .failure(DecodeFailure(.invalidUTF8, "byte \(offset): not valid UTF-8"))
                }
                return .failure(error)
            }
        }
    }

    private func decodeJSON(_ bytes: UnsafeBufferPointer<UInt8>) throws(DecodeFailure) -> Document {
        var scanner = JSONScanner(bytes: bytes, stripNul: nulPolicy == .strip)
        scanner.validatesUTF8 = true
        guard scanner.peek() == UInt8(ascii: "{") else {
            if scanner.atEnd { throw DecodeFailure(.invalidJSON, "empty record") }
            if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF {
                throw DecodeFailure(.invalidJSON, "byte 0: byte-order mark before the JSON value")
            }
            // Tell "valid JSON of the wrong shape" from "not JSON".
            var probe = scanner
            if (try? probe.skipValue()) != nil, probe.peek() == nil {
                throw DecodeFailure(.notAnObject, "the value is JSON but not an object")
            }
            throw scanner.failure(.invalidJSON, "expected '{'")
        }
        scanner.position += 1
        var text: [UInt8]?
        var textType: String?
        var id: String?
        var source: String?
        var url: String?
        var timestamp: String?
        var meta: [UInt8]?
        var otherFields: [String] = []
        if scanner.peek() == UInt8(ascii: "}") {
            scanner.position += 1
        } else {
            while true {
                var key: [UInt8] = []
                try scanner.parseString(into: &key, decode: true)
                try scanner.expect(UInt8(ascii: ":"), "':'")
                switch Field(key) {
                case .text:
                    if scanner.peek() == UInt8(ascii: "\"") {
                        var value: [UInt8] = []
                        value.reserveCapacity(bytes.count)
                        try scanner.parseString(into: &value, decode: true)
                        text = value
                        textType = nil
                    } else {
                        textType = Self.typeName(of: scanner.peek())
                        try scanner.skipValue(depth: 1)
                        text = nil
                    }
                case .id: id = try optionalString(&scanner, field: "id")
                case .source: source = try optionalString(&scanner, field: "source")
                case .url: url = try optionalString(&scanner, field: "url")
                case .ts: timestamp = try optionalString(&scanner, field: "ts")
                case .meta:
                    let next = scanner.peek()
                    let start = scanner.position
                    try scanner.skipValue(depth: 1)
                    if next == UInt8(ascii: "{") {
                        meta = Array(UnsafeBufferPointer(rebasing: bytes[start..<scanner.position]))
                    } else if next == UInt8(ascii: "n") {
                        meta = nil
                    } else {
                        throw DecodeFailure(.fieldWrongType, "meta must be an object, found \(Self.typeName(of: next))")
                    }
                case .other:
                    try scanner.skipValue(depth: 1)
                    if otherFields.count < 16 { otherFields.append(String(decoding: key, as: UTF8.self)) }
                }
                guard let next = scanner.peek() else { throw scanner.failure(.invalidJSON, "unexpected end in object") }
                scanner.position += 1
                if next == UInt8(ascii: "}") { break }
                guard next == UInt8(ascii: ",") else { throw scanner.failure(.invalidJSON, "expected ',' or '}'") }
            }
        }
        if scanner.peek() != nil { throw scanner.failure(.invalidJSON, "data after the JSON object") }
        if let textType { throw DecodeFailure(.textWrongType, "text must be a string, found \(textType)") }
        guard let text else { throw DecodeFailure(.missingText, "no \"text\" field") }
        guard TextChecks.hasVisibleContent(text) else {
            throw DecodeFailure(.emptyText, "text is empty or only whitespace")
        }
        if let timestamp, !RFC3339.isValid(timestamp.utf8) {
            throw DecodeFailure(.invalidTimestamp, "ts is not an RFC 3339 timestamp")
        }
        var document = Document(text: text, id: id, source: source, url: url, timestamp: timestamp, metaJSON: meta)
        document.rawTextHash = ContentHash(text).value
        if !otherFields.isEmpty { document.otherFields = otherFields }
        return document
    }

    private enum Field {
        case text, id, source, url, ts, meta, other

        // Built once: comparing against literals would allocate an array per key per record.
        private static let names: [([UInt8], Field)] = [
            (Array("text".utf8), .text), (Array("id".utf8), .id), (Array("source".utf8), .source),
            (Array("url".utf8), .url), (Array("ts".utf8), .ts), (Array("meta".utf8), .meta),
        ]

        init(_ key: [UInt8]) {
            self = Self.names.first { $0.0 == key }?.1 ?? .other
        }
    }

    private func optionalString(_ scanner: inout JSONScanner, field: String) throws(DecodeFailure) -> String? {
        let next = scanner.peek()
        if next == UInt8(ascii: "\"") {
            var value: [UInt8] = []
            try scanner.parseString(into: &value, decode: true)
            return String(decoding: value, as: UTF8.self)
        }
        if next == UInt8(ascii: "n") {
            try scanner.literal("null")
            return nil
        }
        throw DecodeFailure(.fieldWrongType, "\(field) must be a string, found \(Self.typeName(of: next))")
    }

    private static func typeName(of byte: UInt8?) -> String {
        switch byte {
        case UInt8(ascii: "\""): "a string"
        case UInt8(ascii: "{"): "an object"
        case UInt8(ascii: "["): "an array"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): "a boolean"
        case UInt8(ascii: "n"): "null"
        case nil: "nothing"
        default: "a number"
        }
    }
}
