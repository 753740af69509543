import Foundation
import SluiceShards
import Testing

@Suite("ZstdFrame")
struct ZstdFrameTests {
    @Test func roundTripsAndConcatenatedFramesFormOneValidStream() throws {
        let first = Array(String(repeating: "sample one 样本 ", count: 200).utf8)
        let second = Array(String(repeating: "sample two ", count: 300).utf8)
        let a = try ZstdFrame.compress(first, level: 3)
        let b = try ZstdFrame.compress(second, level: 19)
        #expect(a.count < first.count / 5)
        #expect(try ZstdFrame.decompress(a) == first)
        #expect(try ZstdFrame.decompress(b) == second)

        // The zstd command-line tool reads the concatenation as one stream.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zstd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("frames.zst")
        try Data(a + b).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/zstd")
        process.arguments = ["-d", "-q", "-f", file.path, "-o", directory.appendingPathComponent("out").path]
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(try Data(contentsOf: directory.appendingPathComponent("out")) == Data(first + second))
    }

    @Test func corruptFramesAreErrorsNotCrashes() {
        #expect(throws: ShardError.self) { _ = try ZstdFrame.decompress([1, 2, 3, 4, 5, 6, 7, 8]) }
        #expect(throws: ShardError.self) { _ = try ZstdFrame.decompress([]) }
    }
}
