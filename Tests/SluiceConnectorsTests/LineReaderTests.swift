import Foundation
import SluiceConnectors
import Testing

@Suite("LineReader")
struct LineReaderTests {
    @Test(arguments: [4, 16, 65_536])
    func readsLinesAcrossBlockBoundaries(blockSize: Int) throws {
        let text = "first\nsecond line is longer than a block\n\n第三行\r\nlast without newline"
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lines-\(UUID().uuidString)")
        try Data(text.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var reader = LineReader(descriptor: handle.fileDescriptor, blockSize: blockSize)
        var lines: [String] = []
        while let line = try reader.nextLine() { lines.append(String(decoding: line, as: UTF8.self)) }
        #expect(lines == ["first", "second line is longer than a block", "", "第三行\r", "last without newline"])
    }
}

@Suite("LineReader limits")
struct LineReaderLimitTests {
    @Test func aLineWithoutEndBeyondTheLimitIsAnError() throws {
        let handle = try #require(FileHandle(forReadingAtPath: "/dev/zero"))
        defer { try? handle.close() }
        var reader = LineReader(descriptor: handle.fileDescriptor, blockSize: 1024, maximumLineLength: 1 << 16)
        #expect(throws: ConnectorError.self) { _ = try reader.nextLine() }
    }
}
