/// One document as the stage chain sees it: UTF-8 text bytes, the envelope fields, and the signals each stage
/// records.
///
/// A value type; stages take it `inout` and never re-encode the text between stages.
public struct Document: Sendable, Equatable {
    /// The document text as UTF-8 bytes (valid UTF-8, no NUL).
    public var text: [UInt8]
    /// The record id from the envelope; the driver fills in `<topic>/<partition>/<offset>` when absent.
    public var id: String?
    /// Where the record came from, e.g. `web`.
    public var source: String?
    /// The page URL.
    public var url: String?
    /// The document time as written in the envelope (RFC 3339, validated).
    public var timestamp: String?
    /// The envelope's `meta` object as raw JSON bytes, passed through unchanged.
    public var metaJSON: [UInt8]?
    /// What the stages measured and decided.
    public var signals: Signals
    /// XXH3 of the text as decoded, before any stage changed it (set by ``EnvelopeDecoder``): exact duplicates
    /// are found by it even when order-dependent cleaning made two copies differ.
    public var rawTextHash: UInt64?
    /// Set by the clean stage (``CleanerConfiguration/dedupKeepsBoilerplate``): the cleaned text with its
    /// boilerplate lines still in, which near-duplicate detection compares. Never written out; not desensitized.
    public var dedupText: [UInt8]?
    /// Set by the dedup stage on a dropped duplicate: the id of the kept document it duplicates.
    public var duplicateOf: String?
    /// Set by the quality stage: `en`, `zh` or `other` (the script of most letters).
    public var language: String?
    /// Envelope members other than text, id, source, url, ts and meta, by name (nil when there are none): what the
    /// data-quality assessment watches for schema drift.
    public var otherFields: [String]?

    public init(
        text: [UInt8], id: String? = nil, source: String? = nil, url: String? = nil, timestamp: String? = nil,
        metaJSON: [UInt8]? = nil, signals: Signals = Signals()
    ) {
        self.text = text
        self.id = id
        self.source = source
        self.url = url
        self.timestamp = timestamp
        self.metaJSON = metaJSON
        self.signals = signals
    }

    /// The text as a `String` (a copy).
    public var textString: String { String(decoding: text, as: UTF8.self) }
}

/// Signals the stages write: numeric measurements and counts by name, in insertion order.
public struct Signals: Sendable, Equatable {
    /// Named measurements, e.g. `quality.score`.
    public private(set) var values: [(name: String, value: Double)] = []

    public init() {}

    /// Sets a measurement, replacing an earlier value of the same name.
    public mutating func set(_ name: String, _ value: Double) {
        if let index = values.firstIndex(where: { $0.name == name }) {
            values[index].value = value
        } else {
            values.append((name, value))
        }
    }

    /// Adds to a count.
    public mutating func add(_ name: String, _ amount: Double = 1) {
        set(name, (self[name] ?? 0) + amount)
    }

    public subscript(name: String) -> Double? {
        values.first { $0.name == name }?.value
    }

    public static func == (lhs: Signals, rhs: Signals) -> Bool {
        lhs.values.count == rhs.values.count
            && zip(lhs.values, rhs.values).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}
