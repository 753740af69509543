import Foundation
import SluiceShards
import Testing

@Suite("SHA256")
struct SHA256Tests {
    /// The per-sample digest (one call) and the streaming digest (shards, deletion requests) agree with each other
    /// and with the FIPS 180-2 test vectors, across block boundaries.
    @Test func digestsMatchTheStandardVectorsAndEachOther() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
        ]
        for (text, expected) in vectors {
            #expect(SHA256Value(Array(text.utf8)).hex == expected)
            #expect(sha256Hex(Array(text.utf8)) == expected)
        }
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256Value(million).hex == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        for length in [55, 56, 63, 64, 65, 127, 128, 4097] {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            #expect(SHA256Value(bytes).hex == sha256Hex(bytes), "length \(length)")
        }
    }
}
