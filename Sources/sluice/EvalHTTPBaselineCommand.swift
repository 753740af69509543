import ArgumentParser
import Foundation
import Logging
import SluiceGateway

extension EvalCommand {
    struct HTTPBaseline: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "http-baseline",
            abstract: "Run a bare Hummingbird server with only GET /healthz, to compare the gateway's /healthz against.",
            discussion: "Prints its address first, like sluice serve; stops on SIGINT/SIGTERM.")

        @Option(help: "Address to listen on.") var host = "127.0.0.1"
        @Option(help: "Port (0: any free port).") var port = 8081

        func run() async throws {
            let logger = makeLogger(level: .warning)
            let (host, port) = (self.host, self.port)
            let server = Task { try await BareHTTPServer.run(host: host, port: port, logger: logger) { Terminal.out("http://\(host):\($0)") } }
            let sources = stopOnSignals("stopping") { server.cancel() }
            defer { sources.forEach { $0.cancel() } }
            do { try await server.value } catch is CancellationError {}
        }
    }
}
