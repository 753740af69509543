internal import CXXHash

/// The near-duplicate index: signatures and LSH band keys of kept documents, in memory, in two layers.
///
/// Documents added since the last ``commitPending()`` are *pending*: later lookups see them (so duplicates inside
/// an open shard are caught), ``pendingEntries`` lists them for the durable store, and ``discardPending()`` (or a
/// crash, which never persisted them) forgets them. ``commitPending()`` is called once the store has made them
/// durable, in the transaction that seals the shard. A lookup that meets the document's own id is a replay, never
/// a duplicate. Pure: the durable store lives in `SluiceShards`.
public struct DedupIndex: Sendable {
    public let configuration: MinHashConfiguration
    private var idBytes: [UInt8] = []
    private var idEnds: [UInt32] = []
    /// The high 16 bits of each signature value (b-bit minwise hashing, b = 16: equal values by chance add
    /// (1 − J)/65,536 to an estimate) — half the memory of 32-bit values.
    private var signatures: [UInt16] = []
    private var scratch: [UInt16] = []
    private var exactHashes: [UInt64] = []
    private var rawHashes: [UInt64] = []
    /// Table 0 holds the raw hashes, table 1 the exact hashes.
    private var hashes = SlotTables(tables: 2)
    private var bands: SlotTables
    /// Documents below this number are durable.
    public private(set) var committedCount = 0
    /// The position of the document the last `.replay` answer matched.
    public private(set) var lastReplay: Int?

    public init(_ configuration: MinHashConfiguration) {
        self.configuration = configuration
        bands = SlotTables(tables: configuration.bands)
    }

    /// Documents in the index, durable and pending.
    public var count: Int { idEnds.count }
    public var pendingCount: Int { count - committedCount }

    /// What a lookup found.
    public enum Match: Sendable, Equatable {
        /// No earlier document is this similar.
        case none
        /// The document itself, seen before (a replay after a restart).
        case replay
        /// The same normalized text as the kept document `id`.
        case exact(id: String)
        /// A near duplicate of the kept document `id`, with the estimated Jaccard similarity.
        case near(id: String, similarity: Double)
    }

    /// Looks a document up; when nothing matches, adds it as pending and returns `.none`. A document without an
    /// id (`nil`) is never a replay.
    /// `rawHash` is the hash of the text as received (identical copies), `exactHash` of the normalized text;
    /// a document without tokens has an empty signature and is matched by its hashes only.
    public mutating func lookupOrAdd(id: String?, rawHash: UInt64, exactHash: UInt64, signature: [UInt32]) -> Match {
        let k = configuration.hashCount
        let bandCount = configuration.bands
        scratch.removeAll(keepingCapacity: true)
        for value in signature { scratch.append(UInt16(truncatingIfNeeded: value >> 16)) }
        let hasSignature = scratch.count == k
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: bandCount) { keys in
            // Every probe below misses the cache in tables of megabytes; start all the loads first.
            hashes.prefetch(0, rawHash)
            hashes.prefetch(1, exactHash)
            if hasSignature {
                scratch.withUnsafeBufferPointer { bandKeys($0, into: keys) }
                bands.prefetch(keys)
            }
            let rawMatch = hashes.value(0, rawHash).flatMap { rawHashes[Int($0)] == rawHash ? $0 : nil }
            let exactMatch = hashes.value(1, exactHash).flatMap { exactHashes[Int($0)] == exactHash ? $0 : nil }
            if let index = rawMatch ?? exactMatch {
                let other = self.id(at: Int(index))
                if id != nil && other == id {
                    lastReplay = Int(index)
                    return .replay
                }
                return .exact(id: other)
            }
            var best: (index: Int, similarity: Double)?
            var replay: Int?
            if hasSignature {
                scratch.withUnsafeBufferPointer { signature in
                    signatures.withUnsafeBufferPointer { all in
                        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 2 * bandCount) { checked in
                            var checkedCount = 0
                            func consider(_ candidate: UInt32) {
                                for c in 0..<checkedCount where checked[c] == candidate { return }
                                checked[checkedCount] = candidate
                                checkedCount += 1
                                if let id, idEquals(Int(candidate), id) {
                                    replay = Int(candidate)
                                    return
                                }
                                let start = Int(candidate) * k
                                let similarity = Self.similarity(
                                    signature, UnsafeBufferPointer(rebasing: all[start..<start + k]))
                                if similarity >= configuration.threshold && similarity > (best?.similarity ?? -1) {
                                    best = (Int(candidate), similarity)
                                }
                            }
                            bands.values(for: keys, consider)
                        }
                    }
                }
            }
            if let best { return .near(id: self.id(at: best.index), similarity: best.similarity) }
            if let replay {
                lastReplay = replay
                return .replay
            }
            add(id: id ?? "", rawHash: rawHash, exactHash: exactHash, signature: scratch)
            return .none
        }
    }

    /// Starts loading the table slots a later ``lookupOrAdd(id:rawHash:exactHash:signature:)`` of this exact hash
    /// and signature will probe: a driver calls it for the next document while it finishes the current one, so
    /// the cache misses of the two overlap. No effect on results.
    public func prefetch(exactHash: UInt64, signature: [UInt32]) {
        hashes.prefetch(1, exactHash)
        let k = configuration.hashCount
        let bandCount = configuration.bands
        guard signature.count == k else { return }
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: k) { short in
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: bandCount) { keys in
                for i in 0..<k { short[i] = UInt16(truncatingIfNeeded: signature[i] >> 16) }
                bandKeys(UnsafeBufferPointer(short), into: keys)
                bands.prefetch(keys)
            }
        }
    }

    /// One document as the durable store keeps it.
    public struct Entry: Sendable, Equatable {
        public var id: String
        public var rawHash: UInt64
        public var exactHash: UInt64
        /// The high 16 bits of each signature value; empty for a document without tokens.
        public var signature: [UInt16]

        public init(id: String, rawHash: UInt64, exactHash: UInt64, signature: [UInt16]) {
            self.id = id
            self.rawHash = rawHash
            self.exactHash = exactHash
            self.signature = signature
        }
    }

    /// The pending documents, in the order they were added.
    public var pendingEntries: [Entry] {
        entries(from: committedCount)
    }

    /// The documents from position `start` (at least ``committedCount``) on, in the order they were added: the
    /// pending documents not handed to the store yet, for a store that writes them as they come.
    public func entries(from start: Int) -> [Entry] {
        precondition(start >= committedCount && start <= count, "entries(from:) outside the pending documents")
        return (start..<count).map { entry(at: $0) }
    }

    /// Documents as the durable store keeps them, in flat storage: one allocation per array for many documents
    /// instead of an id string and a signature array each (see ``entryBlock(from:)``).
    public struct EntryBlock: Sendable {
        public let hashCount: Int
        private let idBytes: [UInt8]
        private let idEnds: [Int]
        private let rawHashes: [UInt64]
        private let exactHashes: [UInt64]
        /// `hashCount` values per document; all 0 for a document without tokens.
        private let signatures: [UInt16]

        init(hashCount: Int, idBytes: [UInt8], idEnds: [Int], rawHashes: [UInt64], exactHashes: [UInt64], signatures: [UInt16]) {
            self.hashCount = hashCount
            self.idBytes = idBytes
            self.idEnds = idEnds
            self.rawHashes = rawHashes
            self.exactHashes = exactHashes
            self.signatures = signatures
        }

        public var count: Int { idEnds.count }

        /// Calls `body` with each document's id (UTF-8), hashes and signature (nil for a document without
        /// tokens, as ``Entry/signature`` is empty then), in order.
        public func forEach(
            _ body: (_ id: UnsafeBufferPointer<UInt8>, _ rawHash: UInt64, _ exactHash: UInt64, _ signature: UnsafeBufferPointer<UInt16>?) throws -> Void
        ) rethrows {
            try idBytes.withUnsafeBufferPointer { ids in
                try signatures.withUnsafeBufferPointer { signatures in
                    var start = 0
                    for index in 0..<idEnds.count {
                        let signature = UnsafeBufferPointer(rebasing: signatures[(index * hashCount)..<((index + 1) * hashCount)])
                        try body(
                            UnsafeBufferPointer(rebasing: ids[start..<idEnds[index]]), rawHashes[index], exactHashes[index],
                            signature.contains(where: { $0 != 0 }) ? signature : nil)
                        start = idEnds[index]
                    }
                }
            }
        }
    }

    /// The documents from position `start` (at least ``committedCount``) on, as one ``EntryBlock``: what
    /// ``entries(from:)`` gives, for a store that writes them as they come.
    public func entryBlock(from start: Int) -> EntryBlock {
        precondition(start >= committedCount && start <= count, "entryBlock(from:) outside the pending documents")
        let k = configuration.hashCount
        let firstByte = start == 0 ? 0 : Int(idEnds[start - 1])
        return EntryBlock(
            hashCount: k, idBytes: Array(idBytes[firstByte...]), idEnds: idEnds[start...].map { Int($0) - firstByte },
            rawHashes: Array(rawHashes[start...]), exactHashes: Array(exactHashes[start...]),
            signatures: Array(signatures[(start * k)...]))
    }

    /// The document at `index` (0 ..< count).
    public func entry(at index: Int) -> Entry {
        let k = configuration.hashCount
        let signature = Array(signatures[(index * k)..<(index * k + k)])
        return Entry(
            id: id(at: index), rawHash: rawHashes[index], exactHash: exactHashes[index],
            signature: signature.allSatisfy { $0 == 0 } ? [] : signature)
    }

    /// Makes the pending documents durable in memory; call after the store has written ``pendingEntries``.
    /// Pending documents are in the lookup tables from the start, so this only moves the boundary.
    public mutating func commitPending() {
        committedCount = count
    }

    /// Forgets the pending documents (the open shard was abandoned): truncates them and rebuilds the lookup
    /// tables from the durable documents (rare: a lost shard, not a normal seal).
    public mutating func discardPending() {
        let k = configuration.hashCount
        idBytes.removeSubrange(Int(committedCount == 0 ? 0 : idEnds[committedCount - 1])...)
        idEnds.removeSubrange(committedCount...)
        exactHashes.removeSubrange(committedCount...)
        rawHashes.removeSubrange(committedCount...)
        signatures.removeSubrange((committedCount * k)...)
        hashes = SlotTables(tables: 2, capacity: count)
        bands = SlotTables(tables: configuration.bands, capacity: count)
        for index in 0..<count { insertKeys(index) }
    }

    /// Adds durable documents read back from the store. Only valid with no pending documents.
    public mutating func restore(_ entries: [Entry]) {
        precondition(pendingCount == 0, "restore with pending documents")
        for entry in entries {
            add(id: entry.id, rawHash: entry.rawHash, exactHash: entry.exactHash, signature: entry.signature)
        }
        committedCount = count
    }

    /// Bytes held in memory (capacities, not just counts).
    public var memoryBytes: Int {
        idBytes.capacity + idEnds.capacity * 4 + signatures.capacity * 2 + exactHashes.capacity * 8
            + rawHashes.capacity * 8 + hashes.memoryBytes + bands.memoryBytes

    }

    private mutating func add(id: String, rawHash: UInt64, exactHash: UInt64, signature: [UInt16]) {
        let index = UInt32(count)
        let hasSignature = signature.count == configuration.hashCount
        idBytes.append(contentsOf: id.utf8)
        idEnds.append(UInt32(idBytes.count))
        exactHashes.append(exactHash)
        rawHashes.append(rawHash)
        if hasSignature {
            signatures.append(contentsOf: signature)
        } else {
            signatures.append(contentsOf: repeatElement(0, count: configuration.hashCount))
        }
        insertKeys(Int(index))
    }

    /// Puts a document's raw, exact and band keys into the lookup tables.
    private mutating func insertKeys(_ index: Int) {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2) { keys in
            keys[0] = rawHashes[index]
            keys[1] = exactHashes[index]
            hashes.insert(keys, UInt32(index))
        }
        let k = configuration.hashCount
        let bandCount = configuration.bands
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: bandCount) { keys in
            let hasSignature = signatures.withUnsafeBufferPointer { all -> Bool in
                let signature = UnsafeBufferPointer(rebasing: all[(index * k)..<(index * k + k)])
                guard signature.contains(where: { $0 != 0 }) else { return false }
                bandKeys(signature, into: keys)
                return true
            }
            guard hasSignature else { return }
            bands.insert(keys, UInt32(index))
        }
    }

    private func idEquals(_ index: Int, _ id: String) -> Bool {
        let start = index == 0 ? 0 : Int(idEnds[index - 1])
        return idBytes[start..<Int(idEnds[index])].elementsEqual(id.utf8)
    }

    private func id(at index: Int) -> String {
        let start = index == 0 ? 0 : Int(idEnds[index - 1])
        return String(decoding: idBytes[start..<Int(idEnds[index])], as: UTF8.self)
    }

    /// Every band's LSH key of a (16-bit) signature.
    private func bandKeys(_ signature: UnsafeBufferPointer<UInt16>, into keys: UnsafeMutableBufferPointer<UInt64>) {
        for band in 0..<configuration.bands { keys[band] = bandKey(signature, band) }
    }

    private func bandKey(_ signature: UnsafeBufferPointer<UInt16>, _ band: Int) -> UInt64 {
        let rows = configuration.rows
        let start = band * rows
        if rows <= 4 {
            // Up to four 16-bit values fit in one word: pack and mix instead of hashing bytes.
            var packed: UInt64 = 0
            for row in 0..<rows { packed = packed << 16 | UInt64(signature[start + row]) }
            return Shingler.mix(packed ^ (UInt64(band + 1) &* 0x9E37_79B9_7F4A_7C15))
        }
        return XXH3_64bits_withSeed(UnsafeRawPointer(signature.baseAddress! + start), rows * 2, UInt64(band))
    }

    static func similarity(_ a: UnsafeBufferPointer<UInt16>, _ b: UnsafeBufferPointer<UInt16>) -> Double {
        guard a.count == b.count, !a.isEmpty else { return 0 }
        var equal = 0
        for i in 0..<a.count where a[i] == b[i] { equal += 1 }
        return Double(equal) / Double(a.count)
    }

}
