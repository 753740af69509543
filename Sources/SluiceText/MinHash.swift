/// How signatures are computed.
public enum MinHashScheme: String, Sendable, CaseIterable {
    /// One hash per shingle sorted into `hashCount` bins, empty bins filled by optimal densification
    /// (Shrivastava, ICML 2017). Each bin is a minwise hash with collision probability equal to the Jaccard
    /// similarity, like a permutation's, at the cost of one hash per shingle instead of one per shingle and
    /// permutation. The default.
    case oneHashing = "one-hashing"
    /// The textbook scheme: `hashCount` independent hash functions `a·x + b mod 2⁶⁴`, one minimum each. Same
    /// estimates, `hashCount` times the work; kept as the reference the fast scheme is tested against.
    case permutations
}

/// MinHash and LSH settings.
public struct MinHashConfiguration: Sendable, Equatable {
    /// Signature length. Default 112.
    public var hashCount = 112
    /// LSH bands × rows must not exceed ``hashCount``. Default 28 × 4 (see the docs for why not 14 × 8).
    public var bands = 28
    public var rows = 4
    /// Tokens per shingle. Default 5.
    public var shingleSize = 5
    public var scheme: MinHashScheme = .oneHashing
    /// Seeds every hash function; changing it changes every signature.
    public var seed: UInt64 = 0x5EED_51C3
    /// A candidate from the LSH index counts as a near duplicate when the signatures agree on at least this
    /// share of positions (the estimated Jaccard similarity). Default 0.65; 0 keeps every LSH candidate.
    public var threshold = 0.65

    public init() {}

    /// Checks the settings; the error names the key.
    public func validate() throws(TextConfigurationError) {
        guard hashCount >= 8 && hashCount <= 1024 else {
            throw TextConfigurationError(key: "dedup.hashes", reason: "must be 8…1024, is \(hashCount)")
        }
        guard bands >= 1, rows >= 1, bands * rows <= hashCount else {
            throw TextConfigurationError(
                key: "dedup.bands", reason: "bands × rows (\(bands) × \(rows)) must be at most hashes (\(hashCount))")
        }
        guard shingleSize >= 1 && shingleSize <= 16 else {
            throw TextConfigurationError(key: "dedup.shingle_size", reason: "must be 1…16, is \(shingleSize)")
        }
        guard threshold >= 0 && threshold <= 1 else {
            throw TextConfigurationError(key: "dedup.threshold", reason: "must be between 0 and 1, is \(threshold)")
        }
    }
}

/// Computes MinHash signatures (32-bit values) from shingle hashes.
public struct MinHasher: Sendable {
    public let configuration: MinHashConfiguration
    private let multipliers: [UInt64]
    private let offsets: [UInt64]
    private var bins: [UInt64] = []

    public init(_ configuration: MinHashConfiguration) {
        self.configuration = configuration
        var state = configuration.seed
        func next() -> UInt64 {
            state = state &+ 0x9E37_79B9_7F4A_7C15
            return Shingler.mix(state)
        }
        multipliers = (0..<configuration.hashCount).map { _ in next() | 1 }
        offsets = (0..<configuration.hashCount).map { _ in next() }
    }

    /// The signature of a set of shingle hashes; empty when there are none.
    public mutating func signature(of shingles: [UInt64], into signature: inout [UInt32]) {
        signature.removeAll(keepingCapacity: true)
        guard !shingles.isEmpty else { return }
        let k = configuration.hashCount
        switch configuration.scheme {
        case .oneHashing:
            bins.removeAll(keepingCapacity: true)
            bins.append(contentsOf: repeatElement(UInt64.max, count: k))
            let seed = configuration.seed
            let filled = bins.withUnsafeMutableBufferPointer { bins in
                shingles.withUnsafeBufferPointer { shingles in
                    for shingle in shingles {
                        let h = Shingler.mix(shingle ^ seed)
                        let bin = Int(h.multipliedFullWidth(by: UInt64(k)).high)
                        let value = h << 8 | h >> 56  // the low bits decide within the bin; the bin used the high bits
                        bins[bin] = min(bins[bin], value)  // no branch: which is smaller is a coin flip
                    }
                }
                var filled = 0
                for value in bins where value != UInt64.max { filled &+= 1 }
                return filled
            }
            signature.reserveCapacity(k)
            for i in 0..<k {
                var value = bins[i]
                if value == UInt64.max && filled < k {
                    // Optimal densification: borrow from the first non-empty bin of a per-bin pseudo-random probe
                    // sequence, the same for every document.
                    var attempt: UInt64 = 0
                    repeat {
                        attempt += 1
                        let probe = Shingler.mix(configuration.seed ^ UInt64(i) << 32 ^ attempt)
                        value = bins[Int(probe.multipliedFullWidth(by: UInt64(k)).high)]
                    } while value == UInt64.max
                }
                signature.append(UInt32(truncatingIfNeeded: value >> 32))
            }
        case .permutations:
            var minima = [UInt64](repeating: UInt64.max, count: k)
            multipliers.withUnsafeBufferPointer { a in
                offsets.withUnsafeBufferPointer { b in
                    minima.withUnsafeMutableBufferPointer { minima in
                        for shingle in shingles {
                            for i in 0..<k {
                                let v = a[i] &* shingle &+ b[i]
                                if v < minima[i] { minima[i] = v }
                            }
                        }
                    }
                }
            }
            signature.append(contentsOf: minima.map { UInt32(truncatingIfNeeded: $0 >> 32) })
        }
    }

    /// The share of positions where two signatures agree: an unbiased estimate of their Jaccard similarity.
    public static func similarity(_ a: UnsafeBufferPointer<UInt32>, _ b: UnsafeBufferPointer<UInt32>) -> Double {
        guard a.count == b.count, !a.isEmpty else { return 0 }
        var equal = 0
        for i in 0..<a.count where a[i] == b[i] { equal += 1 }
        return Double(equal) / Double(a.count)
    }
}
