import Foundation
import GRDB
import Testing

/// A `sluice pipeline` child process; output goes to files.
final class PipelineProcess: @unchecked Sendable {
    // Set in init, then only read; `process` is thread-safe for signalling.
    let process = Process()
    let stdoutURL: URL
    let stderrURL: URL

    init(_ arguments: [String], shell: String? = nil, command: String = "pipeline", environment: [String: String] = [:]) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-pipeline-\(UUID().uuidString)")
        stdoutURL = base.appendingPathExtension("out")
        stderrURL = base.appendingPathExtension("err")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        if let shell {
            // e.g. "ulimit -f 300; exec": the pipeline runs under the shell's limits.
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            let quoted = ([sluiceExecutable.path, command] + arguments).map { "'\($0)'" }.joined(separator: " ")
            process.arguments = ["-c", "\(shell) \(quoted)"]
        } else {
            process.executableURL = sluiceExecutable
            process.arguments = [command] + arguments
        }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
    }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    /// SIGKILL: no cleanup of any kind. Waits by polling, never blocking a thread of the test's cooperative pool
    /// (`waitUntilExit` would, and can wait on another thread's run loop).
    func kill9() async {
        kill(process.processIdentifier, SIGKILL)
        _ = await waitForExit(timeout: .seconds(30))
    }

    /// SIGTERM, then waits up to `timeout` for the exit status (SIGKILL after it).
    func terminate(timeout: Duration = .seconds(60)) async -> Int32 {
        process.terminate()
        return await wait(timeout: timeout)
    }

    /// Waits for the process to exit by itself; SIGKILL after `timeout`. -1 when no status could be read.
    func wait(timeout: Duration) async -> Int32 {
        if !(await waitForExit(timeout: timeout)) { await kill9() }
        return process.isRunning ? -1 : process.terminationStatus
    }

    /// Polls until Foundation saw the exit, or the kernel shows the process gone or a zombie.
    private func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        let stat = "/proc/\(process.processIdentifier)/stat"
        while ContinuousClock.now < deadline {
            if !process.isRunning { return true }
            guard let state = try? String(contentsOfFile: stat, encoding: .utf8) else { break }
            if state.contains(") Z ") { break }
            try? await Task.sleep(for: .milliseconds(100))
        }
        // Dead in the kernel: give Foundation a moment to record the status.
        for _ in 0..<50 where process.isRunning { try? await Task.sleep(for: .milliseconds(100)) }
        return !process.isRunning || !FileManager.default.fileExists(atPath: stat)
            || ((try? String(contentsOfFile: stat, encoding: .utf8))?.contains(") Z ") ?? true)
    }

    /// The JSON summary the pipeline prints at a clean exit.
    var summary: [String: Any]? {
        stdout.split(separator: "\n").last.flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    func cleanUp() {
        try? FileManager.default.removeItem(at: stdoutURL)
        try? FileManager.default.removeItem(at: stderrURL)
    }
}

/// Synthetic raw records as `key|value` lines: English prose that passes the quality rules, exact copies under new ids (dedup drops),
/// short junk (quality drops) and undecodable lines (DLQ).
struct StreamCorpus {
    var lines: [String] = []
    /// Ids of the decodable records.
    var validIDs: [String] = []
    var undecodable = 0

    init(count: Int, seed: UInt64) {
        var random = SplitMix(seed: seed)
        let words = """
            the of and to that with have be river stone garden morning window letter market village teacher winter \
            harbor engine careful quiet bright travel history kitchen season mountain forest signal station bridge \
            library student question answer paper record music evening summer simple common public private \
            measure number between because through during before after under across behind beyond within \
            people family friend doctor farmer painter writer reader sailor driver worker builder singer keeper \
            green yellow silver golden heavy light early later often always rarely seldom almost nearly
            """.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        var texts: [String] = []
        for n in 0..<count {
            let id = String(format: "r-%06d", n)
            if n % 211 == 7 {
                lines.append("\(id)|{\"id\": \"\(id)\", \"text\": unquoted words}")
                undecodable += 1
                continue
            }
            let text: String
            if n % 53 == 5 {
                text = "ok thanks"
            } else if n % 19 == 3 && !texts.isEmpty {
                text = texts[Int(random.next() % UInt64(texts.count))]
            } else {
                var sentences: [String] = []
                for _ in 0..<(6 + Int(random.next() % 5)) {
                    var sentence = (0..<(9 + Int(random.next() % 8))).map { _ in words[Int(random.next() % UInt64(words.count))] }
                    sentence[0] = sentence[0].prefix(1).uppercased() + sentence[0].dropFirst()
                    sentences.append(sentence.joined(separator: " ") + ".")
                }
                text = sentences.joined(separator: " ")
                texts.append(text)
            }
            lines.append("\(id)|{\"id\": \"\(id)\", \"source\": \"test\", \"text\": \"\(text)\"}")
            validIDs.append(id)
        }
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Reads the streaming index of an output directory.
struct StreamIndexReader {
    let pool: DatabasePool

    init(directory: URL) throws {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        // The worker creates the index at start; wait for it (read-only opening cannot create it).
        let path = directory.appendingPathComponent("index.sqlite").path
        for _ in 0..<300 where !FileManager.default.fileExists(atPath: path) { usleep(100_000) }
        var opened: DatabasePool?
        for attempt in 0..<50 {
            do {
                opened = try DatabasePool(path: path, configuration: configuration)
                break
            } catch where attempt < 49 {
                usleep(100_000)
            }
        }
        pool = opened!
    }

    /// Offsets covered by checkpoints, over all partitions.
    func accounted() -> Int {
        (try? pool.read { db in try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(next_offset - first_offset), 0) FROM checkpoints") ?? 0 }) ?? 0
    }

    /// Fails the test unless every valid id is in exactly one sample or one rejected row, every undecodable record
    /// has one decode row, and each partition's checkpoints tile its offsets from 0 without gap or overlap.
    func expectExactlyOnce(_ corpus: StreamCorpus, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try pool.read { db in
            let sampleIDs = try String.fetchAll(db, sql: "SELECT id FROM samples")
            let rejectedIDs = try String?.fetchAll(db, sql: "SELECT id FROM rejected WHERE stage != 'decode'")
            let decodeRows = try Int.fetchOne(db, sql: "SELECT count(*) FROM rejected WHERE stage = 'decode'") ?? 0
            var seen: [String: Int] = [:]
            for id in sampleIDs { seen[id, default: 0] += 1 }
            for id in rejectedIDs { seen[id ?? "", default: 0] += 1 }
            let lost = corpus.validIDs.filter { seen[$0] == nil }
            let duplicated = seen.filter { $0.value > 1 }.map(\.key).sorted()
            let lostCount = lost.count
            let duplicatedCount = duplicated.count
            #expect(lostCount == 0, "lost: \(lost.prefix(10))", sourceLocation: sourceLocation)
            #expect(duplicatedCount == 0, "duplicated: \(duplicated.prefix(10))", sourceLocation: sourceLocation)
            #expect(Set(sampleIDs).count == sampleIDs.count, sourceLocation: sourceLocation)
            #expect(decodeRows == corpus.undecodable, sourceLocation: sourceLocation)
            #expect(sampleIDs.count > corpus.validIDs.count / 2, "most records are kept", sourceLocation: sourceLocation)
            let rows = try Row.fetchAll(
                db, sql: "SELECT topic, partition, first_offset, next_offset FROM checkpoints ORDER BY topic, partition, first_offset")
            var next: [String: Int64] = [:]
            for row in rows {
                let key = "\(row["topic"] as String)/\(row["partition"] as Int)"
                let first: Int64 = row["first_offset"]
                #expect(first == next[key] ?? 0, "checkpoints of \(key) tile the offsets", sourceLocation: sourceLocation)
                next[key] = row["next_offset"]
            }
            #expect(next.values.reduce(0, +) == Int64(corpus.lines.count), sourceLocation: sourceLocation)
        }
    }
}

/// Waits until `condition` holds, polling every 200 ms; false after `timeout`.
func waitUntil(timeout: Duration, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(200))
    }
    return condition()
}

/// Produces `key|value` lines with `sluice produce`: keys spread the records evenly over the partitions (the
/// embedded broker keeps at most 5 MiB per partition).
func produce(_ lines: [String], topic: String, bootstrap: String) async throws {
    let result = try await runProcess(
        sluiceExecutable.path, ["produce", "--bootstrap", bootstrap, "--topic", topic, "--key-delimiter", "|"],
        input: lines.joined(separator: "\n") + "\n", timeout: .seconds(120))
    #expect(result.status == 0, "\(result.stderr)")
}

/// A fresh output directory under the temporary directory.
func temporaryOutput(_ name: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(name)-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A plain HTTP/1.1 GET to 127.0.0.1 over a socket: the status code and the body.
func httpGet(port: Int, path: String) async throws -> (Int, String) {
    let (status, _, body) = try await httpRequest(port: port, method: "GET", path: path)
    return (status, body)
}

/// One HTTP/1.1 request to 127.0.0.1 over a socket: the status code, the response head and the body.
func httpRequest(port: Int, method: String, path: String, headers: [String: String] = [:], body: [UInt8] = [])
    async throws -> (Int, String, String)
{
    try await Task.detached {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPTestError.connect }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw HTTPTestError.connect }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if method != "GET" { head += "Content-Length: \(body.count)\r\n" }
        let request = Array((head + "\r\n").utf8) + body
        var sent = 0
        while sent < request.count {
            let count = request.withUnsafeBytes { write(fd, $0.baseAddress! + sent, $0.count - sent) }
            if count <= 0 { break }
            sent += count
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            response.append(contentsOf: buffer[0..<count])
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let headerEnd = text.range(of: "\r\n\r\n"), let status = Int(text.split(separator: " ").dropFirst().first ?? "")
        else { throw HTTPTestError.malformed }
        return (status, String(text[..<headerEnd.lowerBound]), String(text[headerEnd.upperBound...]))
    }.value
}

enum HTTPTestError: Error { case connect, malformed }

/// Runs async work from a synchronous polling condition (the test's own thread blocks meanwhile).
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let result = LockedBox<Result<T, any Error>?>(nil)
    Task.detached {
        let value: Result<T, any Error>
        do { value = .success(try await body()) } catch { value = .failure(error) }
        result.set(value)
        done.signal()
    }
    done.wait()
    return try result.get()!.get()
}

final class LockedBox<T: Sendable>: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func set(_ newValue: T) { lock.withLock { value = newValue } }
    func get() -> T { lock.withLock { value } }
    func mutate(_ body: (inout T) -> Void) { lock.withLock { body(&value) } }
}
