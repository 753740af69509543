internal import CSluiceScan

/// Open-addressing hash tables, all of one size, in one array, from 32-bit keys (the high half of a 64-bit hash)
/// to 32-bit document numbers: table `t`'s slots are `slots[t << shift ..< (t + 1) << shift]`, 8 bytes a slot
/// (`key << 32 | (value + 1)`; 0 is empty), linear probing, at most 70% full. A table keeps the first value stored
/// for a key; callers verify hits (a 32-bit key can collide; a lost collision costs one missed candidate in about
/// four billion).
///
/// The dedup index keeps its 28 LSH bands in one of these and its raw and exact hashes in another: a lookup in
/// every band reads one array (no per-table array to retain), and the tables grow together, since every document
/// puts one key in each.
struct SlotTables: Sendable {
    private var slots: [UInt64]
    private var shift: Int
    private var mask: Int
    let tables: Int
    /// Keys inserted per table, and in the fullest one.
    private var counts: [Int]
    private var fullest = 0

    init(tables: Int, capacity: Int = 1024) {
        self.tables = tables
        var shift = 4
        while 1 << shift < capacity * 10 / 7 { shift += 1 }
        self.shift = shift
        mask = (1 << shift) - 1
        slots = [UInt64](repeating: 0, count: tables << shift)
        counts = [Int](repeating: 0, count: tables)
    }

    @inline(__always)
    private static func start(_ table: Int, _ key: UInt64, shift: Int, mask: Int) -> Int {
        table << shift | Int(truncatingIfNeeded: key &* 0x9E37_79B9_7F4A_7C15 >> 20) & mask
    }

    /// The value stored for `hash` in `table`, probing `slots`.
    @inline(__always)
    private static func probe(
        _ slots: UnsafeBufferPointer<UInt64>, _ table: Int, _ hash: UInt64, shift: Int, mask: Int
    ) -> UInt32? {
        let key = hash >> 32
        let base = table << shift
        var slot = start(table, key, shift: shift, mask: mask)
        while true {
            let existing = slots[slot]
            if existing == 0 { return nil }
            if existing >> 32 == key { return UInt32(truncatingIfNeeded: existing) &- 1 }
            slot = base | (slot + 1) & mask
        }
    }

    /// Starts loading the slot where the lookup of `keys[t]` in table `t` begins, for every table: a document's
    /// lookups each miss the cache in tables of megabytes, and issued together their misses overlap.
    func prefetch(_ keys: UnsafeMutableBufferPointer<UInt64>) {
        let (shift, mask) = (self.shift, self.mask)
        slots.withUnsafeBufferPointer { slots in
            for table in 0..<tables {
                sluice_prefetch(slots.baseAddress! + Self.start(table, keys[table] >> 32, shift: shift, mask: mask))
            }
        }
    }

    /// Starts loading the slot where the lookup of `hash` in `table` begins.
    func prefetch(_ table: Int, _ hash: UInt64) {
        let slot = Self.start(table, hash >> 32, shift: shift, mask: mask)
        slots.withUnsafeBufferPointer { sluice_prefetch($0.baseAddress! + slot) }
    }

    /// The value stored for `hash` in `table`, or nil.
    func value(_ table: Int, _ hash: UInt64) -> UInt32? {
        let (shift, mask) = (self.shift, self.mask)
        return slots.withUnsafeBufferPointer { Self.probe($0, table, hash, shift: shift, mask: mask) }
    }

    /// The value stored for `keys[t]` in table `t`, for every table that has one, passed to `found` in table order.
    func values(for keys: UnsafeMutableBufferPointer<UInt64>, _ found: (UInt32) -> Void) {
        let (shift, mask) = (self.shift, self.mask)
        slots.withUnsafeBufferPointer { slots in
            for table in 0..<tables {
                if let value = Self.probe(slots, table, keys[table], shift: shift, mask: mask) { found(value) }
            }
        }
    }

    /// Stores `value` under `keys[t]` in table `t`, for every table, unless the key is present there.
    mutating func insert(_ keys: UnsafeMutableBufferPointer<UInt64>, _ value: UInt32) {
        if (fullest + 1) * 10 > (mask + 1) * 7 { grow() }
        let (shift, mask, tables) = (self.shift, self.mask, self.tables)
        var fullest = self.fullest
        counts.withUnsafeMutableBufferPointer { counts in
            slots.withUnsafeMutableBufferPointer { slots in
                for table in 0..<tables {
                    let key = keys[table] >> 32
                    let base = table << shift
                    var slot = Self.start(table, key, shift: shift, mask: mask)
                    while true {
                        let existing = slots[slot]
                        if existing == 0 {
                            slots[slot] = key << 32 | UInt64(value &+ 1)
                            counts[table] += 1
                            fullest = max(fullest, counts[table])
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
        slots = [UInt64](repeating: 0, count: tables << shift)
        for table in 0..<tables {
            let base = table << shift
            for entry in old[(table << oldShift)..<((table + 1) << oldShift)] where entry != 0 {
                var slot = Self.start(table, entry >> 32, shift: shift, mask: mask)
                while slots[slot] != 0 { slot = base | (slot + 1) & mask }
                slots[slot] = entry
            }
        }
    }

    var memoryBytes: Int { slots.capacity * 8 + counts.capacity * 8 }
}
