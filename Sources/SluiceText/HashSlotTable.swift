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
