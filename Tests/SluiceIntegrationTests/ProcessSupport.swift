import Foundation
import Testing

/// The built `sluice` executable, beside the test bundle.
let sluiceExecutable: URL = {
    let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [bundleDirectory, bundleDirectory.deletingLastPathComponent()].map { $0.appendingPathComponent("sluice") }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
}()

/// What a finished process printed.
struct ProcessResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion with `input` on standard input; output goes through temporary files so that
/// no pipe can fill up and deadlock.
func runProcess(_ executable: String, _ arguments: [String], input: String = "", timeout: Duration = .seconds(60))
    async throws -> ProcessResult
{
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-proc-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let inURL = directory.appendingPathComponent("in")
    let outURL = directory.appendingPathComponent("out")
    let errURL = directory.appendingPathComponent("err")
    try Data(input.utf8).write(to: inURL)
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardInput = try FileHandle(forReadingFrom: inURL)
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    let status: Int32 = try await withCheckedThrowingContinuation { continuation in
        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
        do { try process.run() } catch { continuation.resume(throwing: error) }
        let pid = process.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(timeout.components.seconds * 1000))) {
            if process.isRunning { kill(pid, SIGKILL) }
        }
    }
    return ProcessResult(
        status: status, stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
        stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
}

/// Resolves a program on PATH.
func which(_ name: String) -> String? {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
        let path = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// A `sluice broker` child process with a command channel on its standard input.
final class BrokerProcess: @unchecked Sendable {
    // Set in init, then only read; `process` is thread-safe for signalling.
    let process = Process()
    let bootstrap: String
    private let input = Pipe()
    private let output = Pipe()
    private let errorOutput: URL
    private var pendingOutput = Data()

    init(arguments: [String] = []) throws {
        errorOutput = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-broker-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errorOutput.path, contents: nil)
        process.executableURL = sluiceExecutable
        process.arguments = ["broker"] + arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = try FileHandle(forWritingTo: errorOutput)
        try process.run()
        var bootstrap = ""
        pendingOutput = Data()
        bootstrap = try Self.readLine(from: output.fileHandleForReading, buffer: &pendingOutput)
        self.bootstrap = bootstrap
    }

    /// Sends one fault-injection command and returns the broker's answer line.
    func command(_ line: String) throws -> String {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
        return try Self.readLine(from: output.fileHandleForReading, buffer: &pendingOutput)
    }

    private static func readLine(from handle: FileHandle, buffer: inout Data) throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer = Data(buffer[buffer.index(after: newline)...])
                return line
            }
            let chunk = handle.availableData
            if chunk.isEmpty { throw BrokerProcessError.exited }
            buffer.append(chunk)
        }
    }

    /// Stops the broker with SIGTERM and returns its exit status.
    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: errorOutput)
        return process.terminationStatus
    }

    enum BrokerProcessError: Error { case exited }
}
