import Foundation
import GRDB
import SluiceShards
import SluiceText
import Testing

@Suite("DedupStore")
struct DedupStoreTests {
    private func withTemporaryDatabase(_ body: (String) throws -> Void) throws {
        try withTemporaryDirectory { try body($0.appendingPathComponent("index.sqlite").path) }
    }

    private func document(_ id: String, _ text: String) -> Document {
        var document = Document(text: Array(text.utf8), id: id)
        document.rawTextHash = ContentHash(text).value
        return document
    }

    private let texts = (0..<50).map { number in
        "Document \(number) talks about topic \(number * 7919 % 1000), with its own words: "
            + (0..<40).map { "w\(($0 * 31 + number * 17) % 997)" }.joined(separator: " ")
    }

    @Test func committedDocumentsSurviveARestart() throws {
        try withTemporaryDatabase { path in
            let configuration = MinHashConfiguration()
            do {
                let store = try DedupStore(writer: try ShardIndex(path: path).writer, configuration: configuration)
                var stage = try Deduplicator(configuration, index: try store.load())
                for (number, text) in texts.enumerated() {
                    var doc = document("doc-\(number)", text)
                    #expect(stage.process(&doc) == .keep)
                }
                try store.commit(&stage.index)
                #expect(try store.count() == 50)
            }
            let store = try DedupStore(writer: try ShardIndex(path: path).writer, configuration: configuration)
            var stage = try Deduplicator(configuration, index: try store.load())
            #expect(stage.index.count == 50)
            #expect(stage.index.pendingCount == 0)
            var copy = document("copy", texts[17])
            #expect(stage.process(&copy) == .drop(reason: "duplicate"))
            #expect(copy.duplicateOf == "doc-17")
            var near = document("near", texts[23] + " and one more sentence")
            #expect(stage.process(&near) == .drop(reason: "near_duplicate"))
            #expect(near.duplicateOf == "doc-23")
            var replay = document("doc-5", texts[5])
            #expect(stage.process(&replay) == .keep)
        }
    }

    @Test func pendingDocumentsAreGoneAfterACrash() throws {
        try withTemporaryDatabase { path in
            let configuration = MinHashConfiguration()
            do {
                let store = try DedupStore(writer: try ShardIndex(path: path).writer, configuration: configuration)
                var stage = try Deduplicator(configuration, index: try store.load())
                var first = document("first", texts[0])
                _ = stage.process(&first)
                try store.commit(&stage.index)
                // The open shard: processed, never sealed; the process dies here.
                for number in 1..<10 {
                    var doc = document("doc-\(number)", texts[number])
                    _ = stage.process(&doc)
                }
                #expect(stage.index.pendingCount == 9)
            }
            let store = try DedupStore(writer: try ShardIndex(path: path).writer, configuration: configuration)
            #expect(try store.count() == 1)
            var stage = try Deduplicator(configuration, index: try store.load())
            // The replayed records are new again, not duplicates of their lost selves.
            for number in 1..<10 {
                var doc = document("doc-\(number)", texts[number])
                #expect(stage.process(&doc) == .keep)
            }
        }
    }

    /// A block of entries (one allocation for many, as curate hands them to the index thread) stores and loads
    /// back exactly what the entries one by one do, a document without tokens (no signature) included.
    @Test func entryBlocksStoreWhatEntriesStore() throws {
        let configuration = MinHashConfiguration()
        var stage = try Deduplicator(configuration)
        for (number, text) in texts.prefix(20).enumerated() {
            var doc = document("doc-\(number)", text)
            #expect(stage.process(&doc) == .keep)
        }
        var symbols = document("symbols-only", "+++ --- *** ///")
        #expect(stage.process(&symbols) == .keep)
        let entries = stage.index.entries(from: 0)
        #expect(entries.last?.signature == [])
        var loaded: [[DedupIndex.Entry]] = []
        for useBlock in [false, true] {
            try withTemporaryDatabase { path in
                let index = try ShardIndex(path: path)
                let store = try DedupStore(writer: index.writer, configuration: configuration)
                if useBlock {
                    let block = stage.index.entryBlock(from: 0)
                    #expect(block.count == 21)
                    try index.writer.write { db in try DedupStore.write(block, in: db) }
                } else {
                    try index.writer.write { db in try DedupStore.write(entries, in: db) }
                }
                let restored = try store.load()
                loaded.append((0..<restored.count).map { restored.entry(at: $0) })
            }
        }
        #expect(loaded[0] == entries)
        #expect(loaded[1] == entries)
    }

    @Test func otherSettingsAreRefusedByName() throws {
        try withTemporaryDatabase { path in
            _ = try DedupStore(writer: try ShardIndex(path: path).writer, configuration: MinHashConfiguration())
            var other = MinHashConfiguration()
            other.hashCount = 128
            other.bands = 32
            #expect {
                _ = try DedupStore(writer: try ShardIndex(path: path).writer, configuration: other)
            } throws: { error in
                guard let error = error as? ShardError else { return false }
                return error.code == .settingsMismatch && error.reason.contains("hashes=112")
            }
        }
    }
}
