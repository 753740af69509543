/// An open-addressing hash table from 64-bit keys to 32-bit document numbers that keeps the first value stored
/// for a key. Linear probing, power-of-two capacity, at most 70% full: about 17 bytes per entry.
struct HashSlotTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt32]
    private(set) var count = 0
    private var mask: Int

    init(capacity: Int = 1024) {
        var size = 16
        while size < capacity * 10 / 7 { size <<= 1 }
        keys = [UInt64](repeating: 0, count: size)
        values = [UInt32](repeating: 0, count: size)
        mask = size - 1
    }

    /// Zero marks an empty slot, so key 0 is stored as 1.
    @inline(__always)
    private static func stored(_ key: UInt64) -> UInt64 { key == 0 ? 1 : key }

    func value(for key: UInt64) -> UInt32? {
        let key = Self.stored(key)
        var slot = Int(truncatingIfNeeded: key) & mask
        while true {
            let existing = keys[slot]
            if existing == key { return values[slot] }
            if existing == 0 { return nil }
            slot = (slot + 1) & mask
        }
    }

    /// Stores `value` unless the key is present.
    mutating func insert(_ key: UInt64, _ value: UInt32) {
        if (count + 1) * 10 > keys.count * 7 { grow() }
        let key = Self.stored(key)
        var slot = Int(truncatingIfNeeded: key) & mask
        while true {
            let existing = keys[slot]
            if existing == key { return }
            if existing == 0 {
                keys[slot] = key
                values[slot] = value
                count += 1
                return
            }
            slot = (slot + 1) & mask
        }
    }

    private mutating func grow() {
        let oldKeys = keys
        let oldValues = values
        keys = [UInt64](repeating: 0, count: oldKeys.count * 2)
        values = [UInt32](repeating: 0, count: oldKeys.count * 2)
        mask = keys.count - 1
        count = 0
        for i in 0..<oldKeys.count where oldKeys[i] != 0 { insert(oldKeys[i], oldValues[i]) }
    }

    var memoryBytes: Int { keys.capacity * 8 + values.capacity * 4 }
}
