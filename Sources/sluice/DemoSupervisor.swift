import Foundation
import SluicePipeline

/// One supervised child process of `sluice demo`: the same `sluice` binary with a subcommand, its output appended to
/// a log file, restarted with exponential backoff when it exits while the demo runs.
final class DemoPart {
    let name: String
    let arguments: [String]
    let log: URL
    let pidFile: URL
    private(set) var process: Process?
    private(set) var starts = 0
    private(set) var restarts = 0
    private(set) var startedAt: ContinuousClock.Instant?
    /// When a part that exited may start again.
    private(set) var restartAt: ContinuousClock.Instant?
    private var backoff: Duration = .seconds(1)

    init(name: String, arguments: [String], directory: URL) {
        self.name = name
        self.arguments = arguments
        log = directory.appendingPathComponent("logs/\(name).log")
        pidFile = directory.appendingPathComponent("run/\(name).pid")
    }

    var isRunning: Bool { process?.isRunning ?? false }
    var pid: Int32? { isRunning ? process?.processIdentifier : nil }

    func start(executable: String, environment: [String: String]) throws {
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        try handle.seekToEnd()
        handle.write(Data("--- \(ISO8601DateFormatter().string(from: Date())) sluice \(arguments.joined(separator: " "))\n".utf8))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
        try? "\(process.processIdentifier)\n".write(to: pidFile, atomically: true, encoding: .utf8)
        self.process = process
        starts += 1
        startedAt = ContinuousClock.now
        restartAt = nil
    }

    /// Notices an exit: returns a description and schedules the restart, or nil while the part runs.
    func noticeExit(now: ContinuousClock.Instant) -> String? {
        guard let process, !process.isRunning, restartAt == nil else { return nil }
        let ran = startedAt.map { now - $0 } ?? .zero
        // A part that ran a minute is healthy again: its next crash restarts after one second.
        if ran > .seconds(60) { backoff = .seconds(1) }
        let how = process.terminationReason == .uncaughtSignal
            ? "was killed by signal \(process.terminationStatus)" : "exited with status \(process.terminationStatus)"
        restartAt = now + backoff
        let message = "\(name) \(how) after \(Int(ran.inSeconds)) s; restarting in \(Int(backoff.inSeconds)) s (see \(log.lastPathComponent))"
        backoff = min(backoff * 2, .seconds(30))
        restarts += 1
        return message
    }

    func signal(_ number: Int32) {
        if let pid { kill(pid, number) }
    }

    /// Sends SIGTERM and waits up to `grace`, then SIGKILL.
    func stop(grace: Duration) async {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(100)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: pidFile)
    }

    /// Kills a process left by an earlier demo that was itself killed (its pid file names a live `sluice`).
    static func killStale(pidFile: URL) {
        guard let text = try? String(contentsOf: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8), command.contains("sluice")
        else {
            try? FileManager.default.removeItem(at: pidFile)
            return
        }
        kill(pid, SIGKILL)
        try? FileManager.default.removeItem(at: pidFile)
    }
}

/// Reads a Prometheus text exposition into `name{labels}` → value.
enum PrometheusText {
    static func parse(_ text: String) -> [String: Double] {
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            values[String(line[..<space])] = value
        }
        return values
    }

    /// The sum of every series of `name`, whatever its labels.
    static func sum(_ values: [String: Double], _ name: String) -> Double {
        values.reduce(0) { $1.key == name || $1.key.hasPrefix(name + "{") ? $0 + $1.value : $0 }
    }

    /// Sums of `name` grouped by the value of `label`.
    static func byLabel(_ values: [String: Double], _ name: String, _ label: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for (key, value) in values where key.hasPrefix(name + "{") {
            guard let range = key.range(of: label + "=\"") else { continue }
            let rest = key[range.upperBound...]
            guard let end = rest.firstIndex(of: "\"") else { continue }
            result[String(rest[..<end]), default: 0] += value
        }
        return result
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (metrics scrapes and health checks of the demo's parts), and free ports.
enum LocalHTTP {
    static func get(port: Int, path: String, timeout: Double = 1) -> String? {
        withSocket(port: port, { descriptor, address in
            var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
            guard connect(descriptor, address, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 else { return nil }
            let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
            guard send(descriptor, request, request.count, 0) == request.count else { return nil }
            var response: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = recv(descriptor, &buffer, buffer.count, 0)
                if count <= 0 { break }
                response.append(contentsOf: buffer[0..<count])
            }
            let text = String(decoding: response, as: UTF8.self)
            guard text.hasPrefix("HTTP/1."), text.contains(" 200 "), let body = text.range(of: "\r\n\r\n") else { return nil }
            return String(text[body.upperBound...])
        }) ?? nil
    }

    /// A port that was free a moment ago (the kernel's choice for port 0).
    static func freePort() -> Int? {
        withSocket(port: 0) { descriptor, address in
            guard bind(descriptor, address, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 else { return nil }
            var bound = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &bound) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
            }
            return Int(UInt16(bigEndian: bound.sin_port))
        } ?? nil
    }

    static func isFree(port: Int) -> Bool {
        withSocket(port: port) { descriptor, address in bind(descriptor, address, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 } ?? false
    }

    /// A TCP socket and 127.0.0.1:`port` for `body`; nil when no socket could be made.
    private static func withSocket<T>(port: Int, _ body: (Int32, UnsafePointer<sockaddr>) -> T) -> T? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body(descriptor, $0) } }
    }
}

/// Parses `90`, `90s`, `2m`, `1h`, `1m30s` into seconds.
func parseDemoDuration(_ text: String) -> Double? {
    if let seconds = Double(text) { return seconds >= 0 ? seconds : nil }
    var total = 0.0
    var number = ""
    for character in text {
        if character.isNumber || character == "." {
            number.append(character)
            continue
        }
        guard let value = Double(number) else { return nil }
        switch character {
        case "s": total += value
        case "m": total += value * 60
        case "h": total += value * 3600
        default: return nil
        }
        number = ""
    }
    return number.isEmpty && !text.isEmpty ? total : nil
}
