internal import AsyncHTTPClient
internal import Foundation
internal import Hummingbird
internal import NIOCore
internal import NIOHTTP1
internal import Synchronization

/// An OpenAI-compatible backend beside the built-in model: vLLM, TGI, Triton's OpenAI frontend or another
/// `sluice serve`.
public struct UpstreamConfiguration: Sendable, Equatable {
    public var name: String
    /// Base URL, e.g. `http://10.0.0.5:8000` (paths `/v1/…` are appended).
    public var url: String
    /// Share of traffic against the other healthy backends (the built-in model has `localWeight`).
    public var weight: Double = 1
    /// A bearer token for the upstream.
    public var apiKey: String?
    public init(name: String, url: String, weight: Double = 1, apiKey: String? = nil) {
        self.name = name
        self.url = url
        self.weight = weight
        self.apiKey = apiKey
    }

    /// Parses `NAME=URL[,weight=W][,key=K]`.
    public static func parse(_ text: String) throws -> UpstreamConfiguration {
        let parts = text.split(separator: ",").map(String.init)
        guard let first = parts.first, let equals = first.firstIndex(of: "="), equals != first.startIndex else {
            throw GatewayError(.invalid, "an upstream is NAME=URL[,weight=W][,key=K], not '\(text)'")
        }
        var upstream = UpstreamConfiguration(name: String(first[..<equals]), url: String(first[first.index(after: equals)...]))
        guard upstream.url.hasPrefix("http://") || upstream.url.hasPrefix("https://") else {
            throw GatewayError(.invalid, "upstream \(upstream.name): the URL must start with http:// or https://")
        }
        for part in parts.dropFirst() {
            if part.hasPrefix("weight="), let weight = Double(part.dropFirst(7)), weight >= 0 {
                upstream.weight = weight
            } else if part.hasPrefix("key=") {
                upstream.apiKey = String(part.dropFirst(4))
            } else {
                throw GatewayError(.invalid, "upstream \(upstream.name): unknown setting '\(part)' (weight=W or key=K)")
            }
        }
        return upstream
    }
}

/// A circuit breaker: closed while requests succeed; open (no traffic) for `openSeconds` after the error rate of
/// the last `window` outcomes reaches `errorRate` (with at least `minimum` of them) — a request slower than
/// `slowSeconds` counts as an error; then half-open: one probe, which closes it on success or opens it again.
struct CircuitBreaker: Sendable {
    enum State: String, Sendable { case closed, open, halfOpen = "half_open" }
    var state = State.closed
    var window = 20, minimum = 5, errorRate = 0.5, openSeconds = 5.0, slowSeconds = 10.0
    private var outcomes: [Bool] = []
    private var openedAt = 0.0
    private var probing = false

    /// Whether a request may go now (a half-open breaker lets one probe through).
    mutating func allow(now: Double) -> Bool {
        switch state {
        case .closed: return true
        case .open:
            guard now - openedAt >= openSeconds else { return false }
            state = .halfOpen
            probing = true
            return true
        case .halfOpen:
            if probing { return false }
            probing = true
            return true
        }
    }

    mutating func record(success: Bool, seconds: Double, now: Double) {
        let ok = success && seconds <= slowSeconds
        if state == .halfOpen {
            probing = false
            if ok {
                state = .closed
                outcomes.removeAll()
            } else {
                state = .open
                openedAt = now
            }
            return
        }
        outcomes.append(ok)
        if outcomes.count > window { outcomes.removeFirst(outcomes.count - window) }
        let failures = outcomes.filter { !$0 }.count
        if outcomes.count >= minimum && Double(failures) / Double(outcomes.count) >= errorRate {
            state = .open
            openedAt = now
            outcomes.removeAll()
        }
    }
}

/// Routes `/v1/completions` and `/v1/score` between the built-in model and upstreams by weight, over healthy
/// backends with a closed (or probing) breaker; retries an idempotent call once on another backend, and falls back
/// to the built-in model when no upstream can take it.
final class UpstreamRouter: @unchecked Sendable {
    // @unchecked: `state` guards the breakers and health; the HTTP client is thread-safe.
    struct Backend: Sendable {
        var configuration: UpstreamConfiguration
        var breaker = CircuitBreaker()
        var healthy = true
        var requests = 0
        var failures = 0
    }

    let localWeight: Double
    private let client = HTTPClient(eventLoopGroupProvider: .singleton)
    private let state: Mutex<[Backend]>
    private var healthTask: Task<Void, Never>?

    init(upstreams: [UpstreamConfiguration], localWeight: Double, healthInterval: Double = 2) {
        self.localWeight = localWeight
        state = Mutex(upstreams.map { Backend(configuration: $0) })
        guard !upstreams.isEmpty else { return }
        healthTask = Task { [weak self] in
            while !Task.isCancelled {
                await self?.checkHealth()
                try? await Task.sleep(for: .seconds(healthInterval))
            }
        }
    }

    func shutdown() async {
        healthTask?.cancel()
        try? await client.shutdown()
    }

    var isEmpty: Bool { state.withLock { $0.isEmpty } }

    /// Backends in the order to try: a weighted draw first (nil is the built-in model), then the others.
    func plan(now: Double) -> [Int?] {
        state.withLock { backends in
            var candidates: [(Int?, Double)] = localWeight > 0 ? [(nil, localWeight)] : []
            for (index, backend) in backends.enumerated() where backend.healthy && backend.configuration.weight > 0 && backend.breaker.state != .open {
                candidates.append((index, backend.configuration.weight))
            }
            // An open breaker past its wait becomes half-open on the first allow().
            for (index, backend) in backends.enumerated() where backend.healthy && backend.breaker.state == .open && backend.configuration.weight > 0 {
                var breaker = backend.breaker
                if breaker.allow(now: now) {
                    backends[index].breaker = breaker
                    candidates.append((index, backend.configuration.weight))
                }
            }
            let total = candidates.reduce(0) { $0 + $1.1 }
            guard total > 0 else { return localWeight > 0 ? [nil] : [] }
            var pick = Double.random(in: 0..<total)
            var first = candidates.count - 1
            for (position, candidate) in candidates.enumerated() {
                pick -= candidate.1
                if pick < 0 {
                    first = position
                    break
                }
            }
            return [candidates[first].0] + candidates.enumerated().filter { $0.offset != first }.map { $0.element.0 }
        }
    }

    /// Whether the breaker lets a request go to `index` now.
    func allow(_ index: Int, now: Double) -> Bool {
        state.withLock { backends in
            var breaker = backends[index].breaker
            let allowed = breaker.state == .closed || breaker.allow(now: now)
            backends[index].breaker = breaker
            return allowed
        }
    }

    /// Sends a request to upstream `index`; nil on a connection error or a 5xx (the breaker records it).
    func forward(_ index: Int, path: String, body: ByteBuffer, timeout: Double) async -> (status: Int, headers: [(String, String)], body: ByteBuffer)? {
        let backend = state.withLock { $0[index].configuration }
        var request = HTTPClientRequest(url: backend.url + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key = backend.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(body)
        let start = Date()
        var result: (Int, [(String, String)], ByteBuffer)?
        do {
            let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
            let collected = try await response.body.collect(upTo: 64 << 20)
            if response.status.code < 500 {
                result = (Int(response.status.code), response.headers.map { ($0.name, $0.value) }, collected)
            }
        } catch {
            result = nil
        }
        let seconds = Date().timeIntervalSince(start), now = Date().timeIntervalSince1970
        state.withLock { backends in
            backends[index].requests += 1
            if result == nil { backends[index].failures += 1 }
            backends[index].breaker.record(success: result != nil, seconds: seconds, now: now)
        }
        return result
    }

    private func checkHealth() async {
        let targets = state.withLock { $0.map(\.configuration.url) }
        for (index, url) in targets.enumerated() {
            var request = HTTPClientRequest(url: url + "/healthz")
            request.method = .GET
            let healthy = ((try? await client.execute(request, timeout: .seconds(2)))?.status.code).map { $0 < 500 } ?? false
            state.withLock { backends in if index < backends.count { backends[index].healthy = healthy } }
        }
    }

    /// Prometheus lines: per upstream, requests, failures, health and breaker state.
    func metricLines() -> [String] {
        state.withLock { backends in
            var lines = ["# TYPE sluice_gateway_upstream_requests_total counter"]
            for backend in backends {
                let name = backend.configuration.name
                lines.append("sluice_gateway_upstream_requests_total{upstream=\"\(name)\"} \(backend.requests)")
                lines.append("sluice_gateway_upstream_failures_total{upstream=\"\(name)\"} \(backend.failures)")
                lines.append("sluice_gateway_upstream_healthy{upstream=\"\(name)\"} \(backend.healthy ? 1 : 0)")
                lines.append("sluice_gateway_upstream_breaker_open{upstream=\"\(name)\"} \(backend.breaker.state == .closed ? 0 : 1)")
            }
            return lines
        }
    }

    func name(_ index: Int) -> String { state.withLock { $0[index].configuration.name } }
}
