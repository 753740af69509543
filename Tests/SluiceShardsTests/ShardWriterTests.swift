import Foundation
import GRDB
import SluiceShards
import SluiceText
import Testing

@Suite("Shard writer and reader")
struct ShardWriterTests {
    private func samples(_ count: Int) -> [ShardSample] {
        (0..<count).map { i in
            let key = i == 3 ? String(repeating: "k", count: 140) : String(format: "%010d", i)
            return ShardSample(
                key: key, text: Array("文档 \(i): some text that is long enough to compress. \(i * 7919)".utf8),
                json: Array("{\"id\":\"doc-\(i)\"}".utf8), id: "doc-\(i)", source: "web", language: "en", score: 0.9)
        }
    }

    /// Writes `count` samples; returns the sealed shards, recorded in an index.
    private func write(_ format: ShardFormat, _ count: Int, maximumSamples: Int? = nil, in directory: URL) throws
        -> (ShardIndex, [SealedShard])
    {
        var configuration = ShardWriterConfiguration()
        configuration.format = format
        configuration.maximumSamples = maximumSamples
        let writer = ShardWriter(directory: directory, configuration: configuration)
        let index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
        try index.registerDataset(name: "test", input: nil, config: nil, now: Date())
        var sealed: [SealedShard] = []
        for (i, sample) in samples(count).enumerated() {
            if let shard = try writer.add(sample, position: "test+\(String(format: "%010d", i + 1))", mtime: 1_700_000_000, now: 0) {
                sealed.append(shard)
            }
        }
        if let shard = try writer.seal(now: 0) { sealed.append(shard) }
        for shard in sealed { try index.record(shard, dataset: "test") }
        return (index, sealed)
    }

    /// A shard's time range is the least and greatest sample time as strings order them, whatever order the
    /// samples come in (16 orders): fractions of a second, offsets, and one time that is a prefix of another.
    @Test func aShardsTimeRangeIsItsLeastAndGreatestSampleTime() throws {
        let times = [
            "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.5Z", "2023-12-31T23:59:59+08:00", "2024-05-01T10:00:00.25Z",
            "2025-01-01T00:00:00Z", "2024-05-01T10:00:00", "2024-05-01T10:00:00Z", "2019-07-04T12:00:00-05:00",
        ]
        // Every rotation of the list, forwards and backwards: each time comes first and last at least once.
        let orders = times.indices.flatMap { start in
            let rotated = Array(times[start...] + times[..<start])
            return [rotated, rotated.reversed()]
        }
        for (round, order) in orders.enumerated() {
            try withTemporaryDirectory { directory in
                let writer = ShardWriter(directory: directory, configuration: ShardWriterConfiguration())
                for (i, time) in order.enumerated() {
                    var sample = samples(1)[0]
                    sample.key = "r\(round)s\(i)"
                    sample.timestamp = time
                    _ = try writer.add(sample, position: "t+\(round)", mtime: 1_700_000_000, now: 0)
                }
                let sealed = try #require(try writer.seal(now: 0))
                #expect(sealed.timestampRange == times.min()!...times.max()!, "order \(order)")
            }
        }
    }

    @Test(arguments: ShardFormat.allCases)
    func samplesRoundTripSequentiallyAndByKey(format: ShardFormat) throws {
        try withTemporaryDirectory { directory in
            let (index, sealed) = try write(format, 25, maximumSamples: 10, in: directory)
            #expect(sealed.map(\.name) == ["test+0000000001", "test+0000000011", "test+0000000021"])
            #expect(sealed.map(\.samples.count) == [10, 10, 5])
            let expected = samples(25)
            var read: [ShardSampleData] = []
            for shard in sealed {
                read += try ShardReader.samples(of: directory.appendingPathComponent(shard.fileName))
            }
            #expect(read.map(\.key) == expected.map(\.key))
            #expect(read.map(\.text) == expected.map(\.text))
            #expect(read.map(\.json) == expected.map(\.json))
            for sample in expected {
                let (shard, location) = try #require(try index.location(ofKey: sample.key))
                let one = try ShardReader.sample(at: location, in: directory.appendingPathComponent(shard.fileName), format: format)
                #expect(one.text == sample.text && one.json == sample.json)
            }
            #expect(try ShardVerifier.verify(directory: directory).problems.isEmpty)
        }
    }

    @Test(arguments: ShardFormat.allCases)
    func gnuTarAndPythonReadTheShardsWithoutWarnings(format: ShardFormat) async throws {
        try withTemporaryDirectory { directory in
            let (_, sealed) = try write(format, 6, in: directory)
            let path = directory.appendingPathComponent(sealed[0].fileName).path
            let listing = format == .tar ? "tar -tvf '\(path)'" : "zstd -dc '\(path)' | tar -tv"
            let tar = try shell(listing)
            #expect(tar.status == 0 && tar.stderr.isEmpty, "\(tar.stderr)")
            #expect(tar.stdout.split(separator: "\n").count == 12)
            #expect(tar.stdout.contains("sluice/sluice"))
            let open = format == .tar ? "tarfile.open(sys.argv[1])" : "tarfile.open(fileobj=io.BytesIO(subprocess.run(['zstd','-dc',sys.argv[1]],capture_output=True).stdout))"
            let python = try shell("python3 -W error -c \"import io,sys,subprocess,tarfile; t=\(open); print(len(t.getnames())); print(max(len(n) for n in t.getnames()))\" '\(path)'")
            #expect(python.status == 0, "\(python.stderr)")
            #expect(python.stdout == "12\n145\n")  // the 140-character key needs a PAX record
        }
    }

    @Test func damagedShardsGiveTypedErrors() throws {
        try withTemporaryDirectory { directory in
            let (_, sealed) = try write(.tar, 4, in: directory)
            let url = directory.appendingPathComponent(sealed[0].fileName)
            let good = try Data(contentsOf: url)
            // A flipped byte in a header: bad checksum; and verify notices the SHA-256.
            var flipped = good
            flipped[10] ^= 0x20
            try flipped.write(to: url)
            #expect { try ShardReader.samples(of: url) } throws: { ($0 as? ShardError)?.code == .corrupt }
            #expect(try ShardVerifier.verify(directory: directory).problems.contains { $0.contains("SHA-256") })
            // Cut in the middle of a member.
            try good.prefix(700).write(to: url)
            #expect { try ShardReader.samples(of: url) } throws: { ($0 as? ShardError)?.code == .truncated }
            // A member that climbs out of the archive.
            let evil = directory.appendingPathComponent("evil.tar")
            let made = try shell("cd '\(directory.path)' && printf x > a && tar --absolute-names -cf evil.tar ../$(basename '\(directory.path)')/a")
            #expect(made.status == 0, "\(made.stderr)")
            #expect { try ShardReader.samples(of: evil) } throws: { ($0 as? ShardError)?.code == .unsafeMemberName }
        }
    }

    @Test func corruptZstdFramesAreReported() throws {
        try withTemporaryDirectory { directory in
            let (_, sealed) = try write(.tarZstd, 3, in: directory)
            let url = directory.appendingPathComponent(sealed[0].fileName)
            var data = try Data(contentsOf: url)
            data[data.count / 2] ^= 0xFF
            data[data.count / 2 + 1] ^= 0xFF
            try data.write(to: url)
            #expect { try ShardReader.samples(of: url) } throws: { error in
                let code = (error as? ShardError)?.code
                return code == .corrupt || code == .truncated
            }
            try Data(try Data(contentsOf: url).prefix(40)).write(to: url)
            #expect { try ShardReader.samples(of: url) } throws: { ($0 as? ShardError) != nil }
        }
    }

    @Test func anUnsealedShardIsNeverVisible() throws {
        try withTemporaryDirectory { directory in
            let index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
            do {
                let writer = ShardWriter(directory: directory)
                for sample in samples(5) { _ = try writer.add(sample, position: "test+0000000001", mtime: 0, now: 0) }
                // The process dies here: no seal, nothing recorded.
                let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
                #expect(names.contains { $0.hasPrefix(".test+0000000001.") && $0.hasSuffix(".tmp") })
                #expect(!names.contains { $0.hasSuffix(".tar.zst") })
            }
            #expect(try index.shards().isEmpty)
            ShardWriter.removeTemporaryFiles(in: directory)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).allSatisfy { !$0.hasSuffix(".tmp") })
        }
    }

    /// Frames group samples up to `frameBytes`: prepared and plain samples, compressed on the caller's thread or
    /// in the background, land in the same bytes, and every sample is read back by key from its frame.
    @Test(arguments: [false, true])
    func framesGroupSamplesUpToTheirSize(background: Bool) throws {
        try withTemporaryDirectory { directory in
            var configuration = ShardWriterConfiguration()
            configuration.frameBytes = 4096
            let compressor = background ? FrameCompressor(level: configuration.compressionLevel) : nil
            defer { compressor?.close() }
            let writer = ShardWriter(directory: directory, configuration: configuration, compressor: compressor)
            let encoder = SampleEncoder(configuration: configuration)
            let index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
            try index.registerDataset(name: "test", input: nil, config: nil, now: Date())
            let all = samples(60)
            for (i, sample) in all.enumerated() {
                // Every third sample the plain way, the others prepared (as the workers do).
                let sealed =
                    i % 3 == 0
                    ? try writer.add(sample, position: "test+0000000001", mtime: 1_700_000_000, now: 0)
                    : try writer.add(try encoder.prepare(sample, mtime: 1_700_000_000), position: "test+0000000001", now: 0)
                #expect(sealed == nil)
            }
            let shard = try #require(try writer.seal(now: 0))
            try index.record(shard, dataset: "test")
            let frames = Set(shard.samples.map(\.frameOffset))
            // Each sample is 2 KiB of tar members (two headers, two padded members): two per 4 KiB frame.
            #expect(frames.count >= 25 && frames.count <= 30, "\(frames.count) frames for 60 samples")
            #expect(Dictionary(grouping: shard.samples, by: \.frameOffset).values.allSatisfy { $0.count <= 2 })
            #expect(shard.samples.allSatisfy { $0.frameLength > 0 })
            let url = directory.appendingPathComponent(shard.fileName)
            #expect(try ShardReader.samples(of: url).map(\.text) == all.map(\.text))
            for sample in all {
                let (found, location) = try #require(try index.location(ofKey: sample.key))
                let one = try ShardReader.sample(at: location, in: directory.appendingPathComponent(found.fileName), format: .tarZstd)
                #expect(one.text == sample.text && one.json == sample.json)
            }
            #expect(try ShardVerifier.verify(directory: directory).problems.isEmpty)
            // One sample per frame is still available, compressed by the encoder.
            configuration.samplesPerFrame = 1
            let single = ShardWriter(directory: directory, configuration: configuration)
            let singleEncoder = SampleEncoder(configuration: configuration)
            for sample in all.prefix(4) {
                _ = try single.add(try singleEncoder.prepare(sample, mtime: 0), position: "single+0000000001", now: 0)
            }
            let one = try #require(try single.seal(now: 0))
            #expect(Set(one.samples.map(\.frameOffset)).count == 4)
            #expect(try ShardReader.samples(of: directory.appendingPathComponent(one.fileName)).map(\.text) == all.prefix(4).map(\.text))
        }
    }

    /// Samples handed over while the shard is open (by move) and those left at the seal are, together, exactly the
    /// samples, with the same places, that a writer nobody took from reports; the shard counts all of them.
    @Test(arguments: [(ShardFormat.tarZstd, false), (.tarZstd, true), (.tar, false)])
    func takenSamplesAndTheRestAreTheWholeShard(format: ShardFormat, background: Bool) throws {
        try withTemporaryDirectory { directory in
            var configuration = ShardWriterConfiguration()
            configuration.format = format
            configuration.frameBytes = 4096
            let compressor = background ? FrameCompressor(level: configuration.compressionLevel) : nil
            defer { compressor?.close() }
            let encoder = SampleEncoder(configuration: configuration)
            func run(taking: Bool, name: String) throws -> (taken: [SampleLocation], sealed: SealedShard) {
                let writer = ShardWriter(directory: directory, configuration: configuration, compressor: compressor)
                var taken: [SampleLocation] = []
                for (i, sample) in samples(40).enumerated() {
                    let sealed =
                        i % 4 == 0
                        ? try writer.add(sample, position: name, mtime: 1_700_000_000, now: 0)
                        : try writer.add(try encoder.prepare(sample, mtime: 1_700_000_000), position: name, now: 0)
                    #expect(sealed == nil)
                    if taking && i % 7 == 3, let (shard, samples) = writer.takePlacedSamples() {
                        #expect(shard == name)
                        taken += samples
                    }
                }
                return (taken, try #require(try writer.seal(now: 0)))
            }
            let whole = try run(taking: false, name: "whole+0000000001")
            let split = try run(taking: true, name: "split+0000000001")
            #expect(whole.taken.isEmpty && whole.sealed.samples.count == 40 && whole.sealed.sampleCount == 40)
            #expect(!split.taken.isEmpty, "nothing was placed before the seal")
            #expect(split.sealed.sampleCount == 40)
            #expect(split.taken + split.sealed.samples == whole.sealed.samples)
            // The index counts the taken samples too.
            let index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
            try index.registerDataset(name: "test", input: nil, config: nil, now: Date())
            let recorder = ShardRecorder(index: index, dataset: "test")
            defer { recorder.close() }
            let writer = ShardWriter(directory: directory, configuration: configuration, compressor: compressor)
            for (i, sample) in samples(40).enumerated() {
                _ = try writer.add(sample, position: "recorded+0000000001", mtime: 0, now: 0)
                if i % 5 == 0 { recorder.update(from: writer) }
            }
            try recorder.finish(try #require(try writer.seal(now: 0)))
            #expect(try index.shards().first?.samples == 40)
            for sample in samples(40) { #expect(try index.location(ofKey: sample.key)?.shard.name == "recorded+0000000001") }
        }
    }

    /// The recorder writes an open shard's rows as they come and commits them with the shard's row at the seal;
    /// rows of a shard never sealed are rolled back.
    @Test func theRecorderCommitsAtTheSealAndRollsBackAnUnsealedShard() throws {
        try withTemporaryDirectory { directory in
            let index = try ShardIndex(path: directory.appendingPathComponent("index.sqlite").path)
            try index.registerDataset(name: "test", input: nil, config: nil, now: Date())
            var configuration = ShardWriterConfiguration()
            configuration.frameBytes = 2048
            let writer = ShardWriter(directory: directory, configuration: configuration)
            let recorder = ShardRecorder(index: index, dataset: "test")
            for sample in samples(30) {
                _ = try writer.add(sample, position: "test+0000000001", mtime: 0, now: 0)
                recorder.update(from: writer)
            }
            // Other rows of the shard (its dedup entries) join the same transaction.
            let entry = DedupIndex.Entry(id: "doc-0", rawHash: 1, exactHash: 2, signature: [])
            recorder.append { db in try DedupStore.write([entry], in: db) }
            // Rows already went in, uncommitted: a reader sees nothing yet.
            #expect(try index.location(ofKey: samples(1)[0].key) == nil)
            let shard = try #require(try writer.seal(now: 0))
            try recorder.finish(shard)
            #expect(try index.shards().map(\.name) == ["test+0000000001"])
            let store = try DedupStore(writer: index.writer, configuration: MinHashConfiguration())
            #expect(try store.count() == 1)
            for sample in samples(30) { #expect(try index.location(ofKey: sample.key)?.shard.name == "test+0000000001") }
            // A second shard whose writer dies before the seal: its rows never become visible.
            let more = (0..<5).map { i in
                ShardSample(key: "later\(i)", text: Array("later \(i)".utf8), json: Array("{}".utf8), id: "later-\(i)")
            }
            for sample in more {
                _ = try writer.add(sample, position: "test+0000000031", mtime: 0, now: 0)
                recorder.update(from: writer)
            }
            recorder.append { db in try DedupStore.write([DedupIndex.Entry(id: "later-0", rawHash: 3, exactHash: 4, signature: [])], in: db) }
            recorder.close()
            Thread.sleep(forTimeInterval: 0.2)
            #expect(try index.location(ofKey: "later0") == nil)
            #expect(try store.count() == 1)
            #expect(try index.shards().count == 1)
            try index.registerDataset(name: "after", input: nil, config: nil, now: Date())  // the writer is free again
        }
    }

    /// Every commit of the index syncs its WAL (a shard recorded before its offsets are committed to Kafka must
    /// survive a power loss; entering WAL mode would leave NORMAL). A new index takes the page size asked for
    /// (curate's bulk load asks for 16 KiB, everything else gets SQLite's 4 KiB); an existing one keeps its own.
    @Test func theIndexSyncsEveryCommitAndTakesItsPageSizeWhenNew() throws {
        func settings(_ index: ShardIndex) throws -> (synchronous: Int?, pageSize: Int?, journal: String?) {
            try index.writer.writeWithoutTransaction { db in
                (
                    try Int.fetchOne(db, sql: "PRAGMA synchronous"), try Int.fetchOne(db, sql: "PRAGMA page_size"),
                    try String.fetchOne(db, sql: "PRAGMA journal_mode")
                )
            }
        }
        try withTemporaryDirectory { directory in
            let plain = try settings(ShardIndex(path: directory.appendingPathComponent("plain.sqlite").path))
            #expect(plain.synchronous == 2)
            #expect(plain.pageSize == 4096)
            #expect(plain.journal == "wal")
            let bulkPath = directory.appendingPathComponent("bulk.sqlite").path
            let bulk = try ShardIndex(path: bulkPath, pageSize: 16384)
            try bulk.registerDataset(name: "test", input: nil, config: nil, now: Date())
            #expect(try settings(bulk).synchronous == 2)
            #expect(try settings(bulk).pageSize == 16384)
            // Reopened with another page size, the existing file keeps its own.
            let reopened = try ShardIndex(path: bulkPath)
            #expect(try settings(reopened).pageSize == 16384)
            #expect(try reopened.shards().isEmpty)
            #expect(throws: ShardError.self) { _ = try ShardIndex(path: directory.appendingPathComponent("odd.sqlite").path, pageSize: 3000) }
        }
    }

    private func shell(_ command: String) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }
}
