import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SluiceGateway
import SluiceTrain

/// `sluice.v1.ModelService` over the gateway's generation scheduler: the same continuous batching and model pool
/// as `POST /v1/completions`. Metadata keys: max_tokens, temperature, top_p, seed, stop.
public struct ModelServiceProvider: Sluice_V1_ModelService.SimpleServiceProtocol {
    let generator: GenerationScheduler
    let maxTokens: Int

    public init(generator: GenerationScheduler, maxTokens: Int) {
        self.generator = generator
        self.maxTokens = maxTokens
    }

    func submit(_ request: Sluice_V1_PredictRequest) throws -> AsyncStream<GenerationScheduler.Event> {
        let options = request.metadata
        let tokens = Int(options["max_tokens"] ?? "16") ?? -1
        guard tokens >= 1, tokens <= maxTokens else {
            throw RPCError(code: .invalidArgument, message: "max_tokens must be an integer from 1 to \(maxTokens)")
        }
        let temperature = Float(options["temperature"] ?? "1") ?? -1
        guard temperature >= 0, temperature <= 2 else { throw RPCError(code: .invalidArgument, message: "temperature must be 0…2") }
        let topP = Float(options["top_p"] ?? "1") ?? -1
        guard topP > 0, topP <= 1 else { throw RPCError(code: .invalidArgument, message: "top_p must be in (0, 1]") }
        let seed = options["seed"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        let stop = options["stop"].map { [Array($0.utf8)] } ?? []
        do {
            return try generator.submit(.init(
                prompt: Array(request.inputText.utf8), maxTokens: tokens,
                sampler: TokenSampler(temperature: temperature, topP: topP, seed: seed), stop: stop))
        } catch {
            throw RPCError(code: error.kind == .queueFull ? .resourceExhausted : .unavailable, message: error.reason)
        }
    }

    public func predict(request: Sluice_V1_PredictRequest, context: ServerContext) async throws -> Sluice_V1_PredictResponse {
        var response = Sluice_V1_PredictResponse()
        var bytes: [UInt8] = []
        for await event in try submit(request) {
            switch event {
            case .bytes(let chunk): bytes += chunk
            case .finished(let reason, _, _, let version, let confidence):
                response.finishReason = reason
                response.modelVersion = version
                response.confidenceScore = Float(confidence)
            }
        }
        response.outputTokens = bytes.map { String(decoding: [$0], as: UTF8.self) }
        return response
    }

    public func predictStream(
        request: Sluice_V1_PredictRequest, response: RPCWriter<Sluice_V1_PredictResponse>, context: ServerContext
    ) async throws {
        for await event in try submit(request) {
            var message = Sluice_V1_PredictResponse()
            switch event {
            case .bytes(let chunk): message.outputTokens = [String(decoding: chunk, as: UTF8.self)]
            case .finished(let reason, _, _, let version, let confidence):
                message.finishReason = reason
                message.modelVersion = version
                message.confidenceScore = Float(confidence)
            }
            try await response.write(message)
        }
    }
}

/// Runs the gRPC server (HTTP/2; TLS when given a PEM certificate chain and key, plaintext otherwise) until
/// cancelled; `onListening` gets the bound port.
public enum GRPCFrontend {
    public static func run(
        host: String, port: Int, provider: ModelServiceProvider, tls: (certificate: String, key: String)? = nil,
        onListening: @escaping @Sendable (Int) -> Void
    ) async throws {
        let security: HTTP2ServerTransport.Posix.TransportSecurity =
            if let tls {
                .tls(certificateChain: [.file(path: tls.certificate, format: .pem)], privateKey: .file(path: tls.key, format: .pem))
            } else {
                .plaintext
            }
        let server = GRPCServer(transport: .http2NIOPosix(address: .ipv4(host: host, port: port), transportSecurity: security), services: [provider])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await server.serve() }
            if let address = try await server.listeningAddress?.ipv4 { onListening(address.port) }
        }
    }
}
