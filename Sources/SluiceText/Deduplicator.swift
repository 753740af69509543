/// The dedup stage: drops exact duplicates (same normalized text) and near duplicates (MinHash + LSH, verified
/// against the stored signature) of documents kept earlier.
///
/// Drop reasons: `duplicate` (exact) and `near_duplicate`; the dropped document's ``Document/duplicateOf`` names
/// the kept one and the signal `dedup.similarity` holds the estimated Jaccard similarity (1 for exact). Kept
/// documents enter the index as pending; the driver makes them durable when it seals the shard that holds them
/// (``index`` gives access). A document without an id is never taken for a replay. Shingles come from
/// ``Document/dedupText`` when the clean stage kept one (the text with its boilerplate lines), else the text.
public struct Deduplicator: TextStage {
    public let name = "dedup"
    public var index: DedupIndex
    private var shingler: Shingler
    private var hasher: MinHasher
    private var shingles: [UInt64] = []
    private var signature: [UInt32] = []

    /// - Throws: ``TextConfigurationError`` for impossible settings.
    public init(_ configuration: MinHashConfiguration = MinHashConfiguration(), index: DedupIndex? = nil)
        throws(TextConfigurationError)
    {
        try configuration.validate()
        if let index, index.configuration != configuration {
            throw TextConfigurationError(key: "dedup", reason: "the index was built with other MinHash settings")
        }
        self.index = index ?? DedupIndex(configuration)
        self.shingler = Shingler(size: configuration.shingleSize)
        self.hasher = MinHasher(configuration)
    }

    /// The signature and exact hash of a text, as the stage computes them (for evaluation tools).
    public mutating func fingerprint(_ text: [UInt8]) -> (exactHash: UInt64, signature: [UInt32], tokens: Int) {
        let set = shingler.shingles(text, into: &shingles)
        hasher.signature(of: shingles, into: &signature)
        return (set.exactHash, signature, set.tokenCount)
    }

    /// What parallel workers compute for the single-threaded index lookup (``decide(_:fingerprint:)``).
    public struct Fingerprint: Sendable {
        public var exactHash: UInt64
        public var signature: [UInt32]
        public var tokens: Int
    }

    /// Shingles and signature of a document, without touching the index: safe to run on any worker.
    public mutating func fingerprint(of document: Document) -> Fingerprint {
        let set = shingler.shingles(document.dedupText ?? document.text, into: &shingles)
        hasher.signature(of: shingles, into: &signature)
        return Fingerprint(exactHash: set.exactHash, signature: signature, tokens: set.tokenCount)
    }

    public mutating func process(_ document: inout Document) -> StageVerdict {
        let print = fingerprint(of: document)
        return decide(&document, fingerprint: print)
    }

    /// Starts loading what ``decide(_:fingerprint:)`` will probe for `fingerprint` (see
    /// ``DedupIndex/prefetch(exactHash:signature:)``).
    public func prefetch(_ fingerprint: Fingerprint) {
        guard fingerprint.tokens > 0 else { return }
        index.prefetch(exactHash: fingerprint.exactHash, signature: fingerprint.signature)
    }

    /// The index half of ``process(_:)`` for a fingerprint computed elsewhere.
    public mutating func decide(_ document: inout Document, fingerprint: Fingerprint) -> StageVerdict {
        let set = ShingleSet(tokenCount: fingerprint.tokens, exactHash: fingerprint.exactHash)
        let signature = fingerprint.signature
        let rawHash = document.rawTextHash ?? ContentHash(document.text).value
        // Without tokens (symbols only) there is no normalized text to compare: only identical copies match.
        let exactHash = set.tokenCount > 0 ? set.exactHash : rawHash
        switch index.lookupOrAdd(id: document.id, rawHash: rawHash, exactHash: exactHash, signature: signature) {
        case .none:
            return .keep
        case .replay:
            document.signals.set("dedup.replay", 1)
            return .keep
        case .exact(let id):
            document.duplicateOf = id
            document.signals.set("dedup.similarity", 1)
            return .drop(reason: "duplicate")
        case .near(let id, let similarity):
            document.duplicateOf = id
            document.signals.set("dedup.similarity", similarity)
            return .drop(reason: "near_duplicate")
        }
    }
}
