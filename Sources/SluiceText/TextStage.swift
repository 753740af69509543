/// One step of the stage chain: a value type that looks at a document, may rewrite its text, records its signals,
/// and says whether the document goes on.
///
/// Stages are pure: no I/O, no clocks, no global randomness. A stage may keep state across documents (the
/// boilerplate stage counts repeated lines), so `process` is `mutating`; one instance serves one worker.
public protocol TextStage: Sendable {
    /// The stage name used in drop reasons, metrics and metadata (`clean`, `desensitize`, …).
    var name: String { get }
    /// Processes one document in place.
    mutating func process(_ document: inout Document) -> StageVerdict
}

/// What a stage decided about a document.
public enum StageVerdict: Sendable, Equatable {
    /// The document goes on to the next stage.
    case keep
    /// The document is dropped; `reason` is a short stable identifier such as `too_short` or `pii:cn_id`.
    case drop(reason: String)

    /// Whether the document goes on.
    public var isKeep: Bool { self == .keep }
}
