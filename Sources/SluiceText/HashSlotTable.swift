internal import CSluiceScan

/// An open-addressing hash table from 32-bit keys (the high half of a 64-bit hash) to 32-bit document numbers
/// that keeps the first value stored for a key: 8 bytes a slot, linear probing, power-of-two capacity, at most
/// 70% full. Callers verify hits (a 32-bit key can collide); a lost collision costs one missed candidate in about
/// four billion.
struct HashSlotTable: Sendable {
    /// `key << 32 | (value + 1)`; 0 is an empty slot.
    private var slots: [UInt64]
    private(set) var count = 0
    private var mask: Int

    init(capacity: Int = 1024) {
        var size = 16
        while size < capacity * 10 / 7 { size <<= 1 }
        slots = [UInt64](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    private static func key(_ hash: UInt64) -> UInt64 { hash >> 32 }

    @inline(__always)
    private func start(_ key: UInt64) -> Int { Int(truncatingIfNeeded: key &* 0x9E37_79B9_7F4A_7C15 >> 20) & mask }

    func value(for hash: UInt64) -> UInt32? {
        let key = Self.key(hash)
        var slot = start(key)
        while true {
            let existing = slots[slot]
            if existing == 0 { return nil }
            if existing >> 32 == key { return UInt32(truncatingIfNeeded: existing) &- 1 }
            slot = (slot + 1) & mask
        }
    }

    /// Starts loading the slot where a lookup of `hash` begins into the cache (see ``DedupIndex``: a document's
    /// 30 lookups each miss the cache, and issued together their misses overlap).
    @inline(__always)
    func prefetch(_ hash: UInt64) {
        let slot = start(Self.key(hash))
        slots.withUnsafeBufferPointer { sluice_prefetch($0.baseAddress! + slot) }
    }

    /// Stores `value` unless the key is present.
    mutating func insert(_ hash: UInt64, _ value: UInt32) {
        if (count + 1) * 10 > slots.count * 7 { grow() }
        let key = Self.key(hash)
        var slot = start(key)
        while true {
            let existing = slots[slot]
            if existing == 0 {
                slots[slot] = key << 32 | UInt64(value &+ 1)
                count += 1
                return
            }
            if existing >> 32 == key { return }
            slot = (slot + 1) & mask
        }
    }

    private mutating func grow() {
        let old = slots
        slots = [UInt64](repeating: 0, count: old.count * 2)
        mask = slots.count - 1
        count = 0
        for entry in old where entry != 0 {
            let key = entry >> 32
            var slot = start(key)
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = entry
            count += 1
        }
    }

    var memoryBytes: Int { slots.capacity * 8 }
}

/// One ``HashSlotTable`` per LSH band, all of one size, in one array: band `b`'s slots are
/// `slots[b << shift ..< (b + 1) << shift]`. A lookup in every band reads one array (no per-band array to retain)
/// and the tables grow together (every document puts one key in each band).
struct BandSlotTables: Sendable {
    private var slots: [UInt64]
    private var shift: Int
    private var mask: Int
    let bands: Int
    /// Keys inserted per band, and in the fullest band.
    private var counts: [Int]
    private var fullest = 0

    init(bands: Int, capacity: Int = 1024) {
        self.bands = bands
        var shift = 4
        while 1 << shift < capacity * 10 / 7 { shift += 1 }
        self.shift = shift
        mask = (1 << shift) - 1
        slots = [UInt64](repeating: 0, count: bands << shift)
        counts = [Int](repeating: 0, count: bands)
    }

    @inline(__always)
    private func start(_ band: Int, _ key: UInt64) -> Int { Self.start(band, key, shift: shift, mask: mask) }

    @inline(__always)
    private static func start(_ band: Int, _ key: UInt64, shift: Int, mask: Int) -> Int {
        band << shift | Int(truncatingIfNeeded: key &* 0x9E37_79B9_7F4A_7C15 >> 20) & mask
    }

    /// Starts loading the slots where the lookups of `keys[b]` in band `b` begin, for every band (see
    /// ``HashSlotTable/prefetch(_:)``).
    func prefetch(_ keys: UnsafeMutableBufferPointer<UInt64>) {
        slots.withUnsafeBufferPointer { slots in
            for band in 0..<bands { sluice_prefetch(slots.baseAddress! + start(band, keys[band] >> 32)) }
        }
    }

    /// The value stored for `keys[b]` in band `b`, for every band, passed to `found` in band order.
    func values(for keys: UnsafeMutableBufferPointer<UInt64>, _ found: (UInt32) -> Void) {
        slots.withUnsafeBufferPointer { slots in
            for band in 0..<bands {
                let key = keys[band] >> 32
                var slot = start(band, key)
                let base = band << shift
                while true {
                    let existing = slots[slot]
                    if existing == 0 { break }
                    if existing >> 32 == key {
                        found(UInt32(truncatingIfNeeded: existing) &- 1)
                        break
                    }
                    slot = base | (slot + 1) & mask
                }
            }
        }
    }

    /// Stores `value` under `keys[b]` in band `b`, for every band, unless the key is present there.
    mutating func insert(_ keys: UnsafeMutableBufferPointer<UInt64>, _ value: UInt32) {
        if (fullest + 1) * 10 > (mask + 1) * 7 { grow() }
        let (shift, mask, bands) = (self.shift, self.mask, self.bands)
        var fullest = self.fullest
        counts.withUnsafeMutableBufferPointer { counts in
            slots.withUnsafeMutableBufferPointer { slots in
                for band in 0..<bands {
                    let key = keys[band] >> 32
                    let base = band << shift
                    var slot = Self.start(band, key, shift: shift, mask: mask)
                    while true {
                        let existing = slots[slot]
                        if existing == 0 {
                            slots[slot] = key << 32 | UInt64(value &+ 1)
                            counts[band] += 1
                            fullest = max(fullest, counts[band])
                            break
                        }
                        if existing >> 32 == key { break }
                        slot = base | (slot + 1) & mask
                    }
                }
            }
        }
        self.fullest = fullest
    }

    private mutating func grow() {
        let old = slots
        let oldShift = shift
        shift += 1
        mask = (1 << shift) - 1
        slots = [UInt64](repeating: 0, count: bands << shift)
        for band in 0..<bands {
            let base = band << shift
            for entry in old[(band << oldShift)..<((band + 1) << oldShift)] where entry != 0 {
                var slot = start(band, entry >> 32)
                while slots[slot] != 0 { slot = base | (slot + 1) & mask }
                slots[slot] = entry
            }
        }
    }

    var memoryBytes: Int { slots.capacity * 8 + counts.capacity * 8 }
}
