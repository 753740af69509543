import Foundation
import SluicePipeline
import Testing

@Suite("LineSource")
struct LineSourceTests {
    /// Lines of every length — empty, CRLF, many small ones across read and decompression steps, one longer than
    /// the reading buffer (it has to grow) and a last line without a newline — come back exactly, from a plain
    /// file and from a zstd stream of two frames, in batches of a few lines.
    @Test(arguments: [false, true])
    func linesComeBackExactlyAcrossBufferBoundaries(compressed: Bool) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-lines-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var lines: [[UInt8]] = [[], Array("first\r".utf8)]
        for i in 0..<40_000 { lines.append(Array(String(repeating: "line \(i) ", count: 1 + i % 37).utf8)) }
        lines.append([UInt8](repeating: UInt8(ascii: "x"), count: 40 << 20))  // longer than the 32 MiB buffer
        for i in 0..<1000 { lines.append(Array("after \(i)".utf8)) }
        lines.append(Array("no newline at the end".utf8))
        let half = lines.count / 2
        let first = Array(lines[..<half].joined(separator: [0x0A])) + [0x0A]
        let second = Array(lines[half...].joined(separator: [0x0A]))
        let plain = directory.appendingPathComponent("in.jsonl")
        var path = plain.path
        if compressed {
            // Two frames, the second starting mid-file: one stream, as concatenated .zst files are.
            try Data(first).write(to: plain)
            try run("/usr/bin/zstd", ["-q", "-f", plain.path, "-o", plain.path + ".1.zst"])
            try Data(second).write(to: plain)
            try run("/usr/bin/zstd", ["-q", "-f", plain.path, "-o", plain.path + ".2.zst"])
            let joined = try Data(contentsOf: URL(fileURLWithPath: plain.path + ".1.zst"))
                + Data(contentsOf: URL(fileURLWithPath: plain.path + ".2.zst"))
            path = plain.path + ".zst"
            try joined.write(to: URL(fileURLWithPath: path))
        } else {
            try Data(first + second).write(to: plain)
        }
        let source = try LineSource(path: path)
        var read: [[UInt8]] = []
        var expectedFirst = 1
        while let batch = try source.nextBatch(maximumLines: 3) {
            #expect(batch.firstLine == expectedFirst)
            #expect(batch.lines.count <= 3)
            expectedFirst += batch.lines.count
            for range in batch.lines { read.append(Array(batch.data[range])) }
        }
        #expect(read.count == lines.count)
        #expect(read == lines)
        #expect(source.linesRead == lines.count)
    }

    /// A zstd stream cut inside a frame is an error that says so, not a quietly shorter input.
    @Test func aTruncatedZstdStreamIsAnError() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-lines-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let plain = directory.appendingPathComponent("in.jsonl")
        var state: UInt64 = 1
        let text = (0..<200_000).map { _ -> String in
            state = state &* 6_364_136_223_846_793_005 &+ 1
            return "{\"id\":\"\(state >> 20)\",\"text\":\"\(state)\"}"
        }.joined(separator: "\n")
        try Data(text.utf8).write(to: plain)
        try run("/usr/bin/zstd", ["-q", "-f", plain.path, "-o", plain.path + ".zst"])
        let whole = try Data(contentsOf: URL(fileURLWithPath: plain.path + ".zst"))
        let cut = directory.appendingPathComponent("cut.jsonl.zst")
        try whole.prefix(whole.count * 2 / 3).write(to: cut)
        let source = try LineSource(path: cut.path)
        #expect {
            while try source.nextBatch(maximumLines: 1000) != nil {}
        } throws: { error in
            "\(error)".contains("ends in the middle of a frame")
        }
    }

    /// A pipe that hands over the zstd magic number one byte at a time is still read as zstd (the format is sniffed
    /// from the first four bytes, however many reads they take).
    @Test func zstdFromASlowPipeIsRecognised() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-lines-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let plain = directory.appendingPathComponent("in.jsonl")
        let lines = (0..<500).map { "{\"id\":\"d\($0)\",\"text\":\"line \($0)\"}" }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: plain)
        try run("/usr/bin/zstd", ["-q", "-f", plain.path, "-o", plain.path + ".zst"])
        let compressed = try Data(contentsOf: URL(fileURLWithPath: plain.path + ".zst"))
        let fifo = directory.appendingPathComponent("pipe").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let writer = Thread {
            guard let handle = FileHandle(forWritingAtPath: fifo) else { return }
            for byte in compressed.prefix(3) {
                handle.write(Data([byte]))
                Thread.sleep(forTimeInterval: 0.05)
            }
            handle.write(compressed.dropFirst(3))
            try? handle.close()
        }
        writer.start()
        let source = try LineSource(path: fifo)
        var read: [String] = []
        while let batch = try source.nextBatch(maximumLines: 64) {
            for range in batch.lines { read.append(String(decoding: batch.data[range], as: UTF8.self)) }
        }
        #expect(read == lines)
    }

    private func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(tool) \(arguments)")
    }
}
