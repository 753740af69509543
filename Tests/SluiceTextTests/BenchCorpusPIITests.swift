import Foundation
import SluiceText
import Testing

/// The documents of the benchmark corpus that carry labelled PII or decoys, through decode, clean and
/// desensitize with the default settings: every type at 99% recall or better, every decoy type 99% preserved.
@Suite("Desensitizer on the benchmark corpus")
struct BenchCorpusPIITests {
    @Test(.enabled(if: FileManager.default.fileExists(atPath: benchDirectory.appendingPathComponent("truth.jsonl.zst").path)))
    func findsLabelledValuesAndKeepsDecoys() throws {
        let corpus = try zstdLines(benchDirectory.appendingPathComponent("corpus.jsonl.zst"))
        let truth = try zstdLines(benchDirectory.appendingPathComponent("truth.jsonl.zst"))
        let decoder = EnvelopeDecoder()
        var cleaner = Cleaner()
        var desensitizer = try Desensitizer()
        var recall: [String: (total: Int, found: Int)] = [:]
        var decoys: [String: (total: Int, kept: Int)] = [:]
        let marker = Data(#""value""#.utf8)
        for (index, labelLine) in truth.enumerated() where labelLine.range(of: marker) != nil {
            guard case .success(var document) = corpus[index].withUnsafeBytes({ decoder.decode($0.bindMemory(to: UInt8.self)) }),
                cleaner.process(&document) == .keep,
                let label = try JSONSerialization.jsonObject(with: labelLine) as? [String: Any]
            else { continue }
            let cleaned = document.textString
            _ = desensitizer.process(&document)
            let output = document.textString
            for item in label["pii"] as? [[String: String]] ?? [] {
                guard let type = item["type"], let value = item["value"] else { continue }
                let entry = recall[type, default: (0, 0)]
                recall[type] = (entry.total + 1, entry.found + (output.contains(value) ? 0 : 1))
            }
            for item in label["decoys"] as? [[String: String]] ?? [] {
                guard let type = item["type"], let value = item["value"], cleaned.contains(value) else { continue }
                let entry = decoys[type, default: (0, 0)]
                decoys[type] = (entry.total + 1, entry.kept + (output.contains(value) ? 1 : 0))
            }
        }
        #expect(recall.count == 9)
        for (type, entry) in recall {
            #expect(Double(entry.found) >= 0.99 * Double(entry.total), "\(type): \(entry.found) of \(entry.total)")
        }
        #expect(decoys.count == 6)
        for (type, entry) in decoys {
            #expect(Double(entry.kept) >= 0.99 * Double(entry.total), "\(type): \(entry.kept) of \(entry.total)")
        }
    }
}
