import Testing

@testable import SluiceText

@Suite("SmallKeyIndex")
struct SmallKeyIndexTests {
    /// Every key is found at its first position, whatever slots it shares (keys that differ only in the bits the
    /// slot ignores crowd into one run of slots); keys not in the list are not found.
    @Test func findsEveryKeyAtItsFirstPositionAndNothingElse() {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<200 {
            let count = round % 33
            var keys = (0..<count).map { _ in UInt64.random(in: 0...UInt64.max, using: &generator) }
            if round % 3 == 0 { keys = keys.indices.map { UInt64($0) } }  // small keys: neighbouring slots
            if count > 2 { keys[count - 1] = keys[0] }  // a repeat keeps the first position
            let index = SmallKeyIndex(keys)
            for (position, key) in keys.enumerated() {
                #expect(index.position(of: key) == keys.firstIndex(of: key), "key \(key) at \(position)")
            }
            for _ in 0..<100 {
                let other = UInt64.random(in: 0...UInt64.max, using: &generator)
                if !keys.contains(other) { #expect(index.position(of: other) == nil) }
            }
        }
    }

    @Test func stopWordsAreCountedOncePerWord() {
        var filter = QualityFilter()
        #expect(filter.measurements(Array("the cat and the dog have to be with that of".utf8))["stop_words"] == 8)
        #expect(filter.measurements(Array("我的书是在这里了，他们和你也有".utf8))["stop_words"]! >= 8)
        #expect(filter.measurements(Array("the the the".utf8))["stop_words"] == 1)
    }
}
