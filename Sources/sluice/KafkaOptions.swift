import ArgumentParser
import Foundation
import Logging
import SluiceKafka

/// Flags shared by every command that talks to Kafka.
struct KafkaOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Bootstrap servers (HOST:PORT[,HOST:PORT…]); default: $SLUICE_BOOTSTRAP.",
            valueName: "host:port"))
    var bootstrap: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A file of librdkafka properties (key=value lines, # comments): SASL, TLS, tuning.",
            valueName: "file"))
    var config: String?

    @Option(
        name: [.customShort("X"), .customLong("property")],
        help: ArgumentHelp("One librdkafka property, key=value (repeatable; wins over --config).", valueName: "key=value"))
    var properties: [String] = []

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = ProcessInfo.processInfo.environment["SLUICE_LOG_LEVEL"] ?? "warning"

    func validate() throws {
        for property in properties where property.firstIndex(of: "=").map({ $0 == property.startIndex }) ?? true {
            throw ValidationError("-X expects key=value, got '\(property)'")
        }
        _ = try bootstrapLevel()
    }

    private func bootstrapLevel() throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
            throw ValidationError("unknown log level '\(logLevel)'; use trace, debug, info, notice, warning, error or critical")
        }
        return level
    }

    /// The client configuration: --config, then -X, then --bootstrap (or $SLUICE_BOOTSTRAP).
    func kafkaConfiguration() throws -> KafkaConfiguration {
        var configuration = KafkaConfiguration()
        if let config {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                throw CommandError("cannot read the librdkafka properties file '\(config)'")
            }
            configuration = try KafkaConfiguration.parseProperties(text, origin: config)
        }
        for property in properties {
            guard let equals = property.firstIndex(of: "="), equals != property.startIndex else {
                throw ValidationError("-X expects key=value, got '\(property)'")
            }
            configuration[String(property[..<equals])] = String(property[property.index(after: equals)...])
        }
        if let bootstrap = bootstrap ?? ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"] {
            configuration.bootstrapServers = bootstrap
        }
        guard configuration.bootstrapServers != nil else {
            throw CommandError(
                "no Kafka cluster given: pass --bootstrap HOST:PORT (or set SLUICE_BOOTSTRAP, or bootstrap.servers in --config). "
                    + "For a local try-out, start one with `sluice broker`.")
        }
        return configuration
    }

    func bootstrapLogging() throws -> Logger {
        makeLogger(level: try bootstrapLevel())
    }
}

/// Bootstraps logging to standard error once and returns the command's logger.
func makeLogger(level: Logger.Level) -> Logger {
    LoggingBootstrap.once(level: level)
    var logger = Logger(label: "sluice")
    logger.logLevel = level
    return logger
}

enum LoggingBootstrap {
    private static let done = NSLock()
    nonisolated(unsafe) private static var bootstrapped = false

    static func once(level: Logger.Level) {
        // Guarded by `done`; only the process's first command bootstraps.
        done.lock()
        defer { done.unlock() }
        guard !bootstrapped else { return }
        bootstrapped = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Writes to standard output or standard error through unbuffered file descriptors.
enum Terminal {
    static func out(_ text: String) { write(1, text + "\n") }
    static func err(_ text: String) { write(2, text + "\n") }

    static func write(_ descriptor: Int32, _ text: String) {
        var text = text
        text.withUTF8 { writeAll(descriptor, $0) }
    }

    static func writeAll(_ descriptor: Int32, _ bytes: UnsafeBufferPointer<UInt8>) {
        var offset = 0
        while offset < bytes.count {
            let written = Foundation.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}

/// A failure the user can fix, printed as `Error: <message>` without a usage line.
struct CommandError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}
