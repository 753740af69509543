/// Why a raw record could not be decoded into a ``Document``. Goes with the original bytes to the DLQ.
public struct DecodeFailure: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure, stable for metrics and the DLQ `sluice.reason` header.
    public enum Reason: String, Sendable, CaseIterable {
        case invalidJSON = "invalid_json"
        case notAnObject = "not_an_object"
        case missingText = "missing_text"
        case textWrongType = "text_wrong_type"
        case fieldWrongType = "field_wrong_type"
        case invalidUTF8 = "invalid_utf8"
        case loneSurrogate = "lone_surrogate"
        case nulCharacter = "nul_character"
        case oversize = "oversize"
        case emptyText = "empty_text"
        case invalidTimestamp = "invalid_timestamp"
    }

    /// The kind of failure.
    public let reason: Reason
    /// Where and what, without record content: e.g. `byte 17: expected ':'`.
    public let detail: String

    public init(_ reason: Reason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }

    public var description: String { "\(reason.rawValue): \(detail)" }
}
