internal import Foundation
internal import Dispatch

/// A small HTTP/1.1 server for `GET /metrics` (Prometheus text format) and `GET /healthz` (JSON; 503 when
/// failing), on its own thread. Enough for a scraper and a liveness probe; not a general web server.
public final class MetricsServer: @unchecked Sendable {
    // @unchecked: `listener` is set in init and closed once in `stop()`; the accept thread only reads it.
    public let port: Int
    private let listener: Int32
    private let metrics: @Sendable () -> String
    private let health: @Sendable () -> (healthy: Bool, json: String)
    private let stopped = NSLock()
    private var isStopped = false

    /// Binds `host:port` (port 0 picks a free one; see ``port``) and starts serving.
    /// - Throws: ``MetricsServerError`` naming the address and the OS error when it cannot listen.
    public init(
        host: String = "0.0.0.0", port: Int, metrics: @escaping @Sendable () -> String,
        health: @escaping @Sendable () -> (healthy: Bool, json: String)
    ) throws {
        self.metrics = metrics
        self.health = health
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Self.error("socket", host, port) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw MetricsServerError(description: "invalid metrics host \(host)")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let error = Self.error("bind", host, port)
            close(fd)
            throw error
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        listener = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "sluice-metrics"
        thread.start()
    }

    private static func error(_ call: String, _ host: String, _ port: Int) -> MetricsServerError {
        MetricsServerError(description: "cannot serve metrics on \(host):\(port): \(call): \(String(cString: strerror(errno)))")
    }

    /// Stops accepting connections.
    public func stop() {
        stopped.lock()
        defer { stopped.unlock() }
        guard !isStopped else { return }
        isStopped = true
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            DispatchQueue.global().async { [self] in serve(client) }
        }
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while request.count < 16_384 {
            let count = read(client, &buffer, buffer.count)
            if count <= 0 { break }
            request.append(contentsOf: buffer[0..<count])
            if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let method = parts.first.map(String.init) ?? ""
        let path = parts.count > 1 ? String(parts[1].split(separator: "?").first ?? "") : ""
        let (status, type, body): (String, String, String)
        switch (method, path) {
        case ("GET", "/metrics"), ("HEAD", "/metrics"):
            (status, type, body) = ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics())
        case ("GET", "/healthz"), ("HEAD", "/healthz"):
            let report = health()
            (status, type, body) = (report.healthy ? "200 OK" : "503 Service Unavailable", "application/json", report.json + "\n")
        case ("GET", _), ("HEAD", _):
            (status, type, body) = ("404 Not Found", "text/plain", "not found; try /metrics or /healthz\n")
        default:
            (status, type, body) = ("405 Method Not Allowed", "text/plain", "only GET\n")
        }
        var response = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        if method != "HEAD" { response += body }
        var bytes = Array(response.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(client, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { return }
            offset += written
        }
    }
}

/// Why the metrics server could not start.
public struct MetricsServerError: Error, CustomStringConvertible {
    public let description: String
}
