import Foundation
import SluiceKafka
@testable import SluiceTrain
import Testing

/// The Python client (`clients/python`) must yield the Swift loader's batches and share its resume state.
@Suite("Python client against the Swift loader")
struct PythonClientTests {
    static let clientDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("clients/python")

    /// The test interpreter: SLUICE_TEST_PYTHON (the venv `make test` prepares) or python3 on the PATH.
    static var python: String {
        if let configured = ProcessInfo.processInfo.environment["SLUICE_TEST_PYTHON"],
            FileManager.default.isExecutableFile(atPath: configured)
        {
            return configured
        }
        return "/usr/bin/python3"
    }

    static func runPython(_ script: String, _ arguments: [String], usePath: Bool = true) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script] + arguments
        var environment = ProcessInfo.processInfo.environment
        if usePath { environment["PYTHONPATH"] = clientDirectory.path }
        process.environment = environment
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TrainError("python failed (\(process.terminationStatus)): \(String(decoding: errorData, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func configuration() -> LoaderConfiguration {
        var c = LoaderConfiguration()
        c.rank = 1
        c.worldSize = 2
        c.seed = 5
        c.shuffleBuffer = 12
        c.contextLength = 32
        c.batchSize = 3
        c.holdout = 6
        return c
    }

    static let pythonOptions = "rank=1, world_size=2, seed=5, shuffle_buffer=12, context_length=32, batch_size=3, holdout=6, as_tensors=False"

    /// Concatenated inputs and targets of every batch.
    static func bytes(_ batches: [TrainingBatch]) -> Data { Data(batches.flatMap { $0.inputs + $0.targets }) }

    @Test func sameBatchesSameStateBothWays() throws {
        let directory = ShardStreamLoaderTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let announcements = try ShardStreamLoaderTests.writeShards(9, perShard: 20, in: directory)
        // One shard of this rank is damaged after sealing: both loaders must skip it the same way.
        let damaged = directory.appendingPathComponent(announcements[5].path)
        var corrupt = try Data(contentsOf: damaged)
        corrupt[corrupt.count / 2] ^= 0xFF
        try corrupt.write(to: damaged)

        let swiftBatches = ShardStreamLoaderTests.run(Self.configuration(), announcements, in: directory)
        #expect(swiftBatches.count > 10)
        // The Swift state after 5 batches, as JSON.
        var loader = ShardStreamLoader(configuration: Self.configuration(), baseDirectory: directory)
        for announcement in announcements { loader.offer(announcement) }
        loader.finish()
        for _ in 0..<5 { _ = loader.nextBatch() }
        let swiftState = directory.appendingPathComponent("swift-state.json")
        try JSONEncoder().encode(loader.state).write(to: swiftState)

        let full = directory.appendingPathComponent("full.bin"), resumed = directory.appendingPathComponent("resumed.bin")
        let pythonState = directory.appendingPathComponent("python-state.json")
        let script = """
            import json, sys
            from sluice_client import ShardStream
            directory, swift_state, full, resumed, python_state = sys.argv[1:6]
            def run(stream, limit=None):
                out = bytearray()
                for i, (x, y) in enumerate(stream):
                    if limit is not None and i >= limit: break
                    out += x + y
                return out
            stream = ShardStream.from_directory(directory, \(Self.pythonOptions))
            open(full, "wb").write(run(stream))
            assert [e[1] for e in stream.events] == ["\(announcements[5].name)"], stream.events
            stream = ShardStream.from_directory(directory, \(Self.pythonOptions))
            stream.load_state_dict(json.load(open(swift_state)))
            open(resumed, "wb").write(run(stream))
            stream = ShardStream.from_directory(directory, \(Self.pythonOptions))
            run(stream, limit=7)
            json.dump(stream.state_dict(), open(python_state, "w"))
            """
        _ = try Self.runPython(script, [directory.path, swiftState.path, full.path, resumed.path, pythonState.path])
        #expect(try Data(contentsOf: full) == Self.bytes(swiftBatches), "Python yields the Swift loader's batches")
        #expect(try Data(contentsOf: resumed) == Self.bytes(Array(swiftBatches.dropFirst(5))), "Python resumes from a Swift state")

        // The Python state, read by Swift, continues with the same batches. Python stopped after yielding 7
        // batches, and a generator computes one ahead, so its state is after 8.
        let state = try JSONDecoder().decode(LoaderState.self, from: Data(contentsOf: pythonState))
        var continued = ShardStreamLoader(configuration: Self.configuration(), baseDirectory: directory, state: state)
        var rest: [TrainingBatch] = []
        while let batch = continued.nextBatch() { rest.append(batch) }
        #expect(rest == Array(swiftBatches.dropFirst(state.batches)) && state.batches == 8)
    }

    @Test func installsWithPipAndFollowsTheShardsTopic() async throws {
        // Only where the test venv has the client installed (make test-venv) and confluent-kafka.
        guard (try? Self.runPython("import sluice_client, confluent_kafka", [], usePath: false)) != nil else {
            print("skipped: the test Python has no installed sluice_client or confluent_kafka (run make test-venv with network)")
            return
        }
        let directory = ShardStreamLoaderTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let announcements = try ShardStreamLoaderTests.writeShards(6, perShard: 20, in: directory)
        let expected = ShardStreamLoaderTests.run(Self.configuration(), announcements, in: directory)
        let (broker, kafka) = try ShardStreamLoaderTests.broker(topics: ["sluice.shards"])
        defer { broker.shutdown() }
        var events = announcements.map(ShardStreamLoaderTests.event)
        events.insert(events[0], at: 2)  // a repeat
        events.insert("not json", at: 4)  // and a bad event
        try await ShardStreamLoaderTests.publish(events, to: "sluice.shards", kafka: kafka)
        let output = directory.appendingPathComponent("topic.bin")
        let script = """
            import sys
            from sluice_client import ShardStream
            bootstrap, root, out = sys.argv[1:4]
            stream = ShardStream.from_topic({"bootstrap.servers": bootstrap}, shards_root=root, exit_at_end=True, \(Self.pythonOptions))
            data = bytearray()
            for x, y in stream: data += x + y
            open(out, "wb").write(data)
            assert stream.state_dict()["nextOffset"] == \(events.count), stream.state_dict()["nextOffset"]
            """
        _ = try Self.runPython(script, [broker.bootstrapServers, directory.path, output.path], usePath: false)
        #expect(try Data(contentsOf: output) == Self.bytes(expected), "the topic gives the directory's batches in Python too")
    }
}
