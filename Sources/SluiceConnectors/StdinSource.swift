internal import Foundation
internal import Synchronization

/// The `stdin` source: JSON Lines from standard input, for shell pipelines. Standard input cannot be replayed,
/// so there is nothing to checkpoint: the connector exits once every line read was acknowledged.
final class StdinSource: ConnectorSource, @unchecked Sendable {
    // @unchecked: `shaper` is used only by the source thread.
    let configuration: ConnectorConfiguration
    private var shaper: EnvelopeShaper
    private let stopFlag = Atomic<Bool>(false)
    private let lines = Atomic<Int>(0)

    init(configuration: ConnectorConfiguration) {
        self.configuration = configuration
        shaper = EnvelopeShaper(configuration: configuration)
    }

    func stop() { stopFlag.store(true, ordering: .relaxed) }

    func acknowledged(_ positions: [Int32: SourcePosition]) -> [String: Any] { [:] }

    var progressNote: String? { "\(lines.load(ordering: .relaxed)) lines read" }

    func run(emitter: Emitter, once: Bool) throws(ConnectorError) {
        var reader = LineReader(descriptor: 0)
        var number: Int64 = 0
        var failure: ConnectorError?
        while !stopFlag.load(ordering: .relaxed), !emitter.isStopping, failure == nil {
            let more = try reader.withNextLine { line -> Bool in
                number += 1
                lines.add(1, ordering: .relaxed)
                guard !line.isEmpty else { return true }
                let bytes = line.bindMemory(to: UInt8.self)
                do throws(ConnectorError) {
                    let outcome = try shaper.shapeJSON(bytes) { (key, value) throws(ConnectorError) in
                        try emitter.send(
                            key: key, value: value, position: .none,
                            origin: [("sluice.source.file", "stdin"), ("sluice.source.line", "\(number)")])
                    }
                    if case .bad(let reason, let detail) = outcome {
                        try emitter.sendToDLQ(
                            value: line, reason: reason, detail: detail,
                            origin: [("sluice.source.file", "stdin"), ("sluice.source.line", "\(number)")], position: .none)
                    }
                } catch {
                    failure = error
                }
                return true
            }
            if more == nil { break }
        }
        if let failure { throw failure }
    }
}
