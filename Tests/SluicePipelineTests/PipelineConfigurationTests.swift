import SluiceConfig
import Foundation
import SluiceKafka
import SluicePipeline
import SluiceText
import SluiceTrain
import Testing

@Suite("PipelineConfiguration")
struct PipelineConfigurationTests {
    let repositoryConfig = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("config/pipeline.yaml")

    @Test func theExampleFileLoadsWithEnvironmentDefaults() throws {
        let text = try String(contentsOf: repositoryConfig, encoding: .utf8)
        let configuration = try PipelineConfiguration.load(yaml: text, file: "pipeline.yaml", environment: [:])
        #expect(configuration.kafka.bootstrapServers == "127.0.0.1:9092")
        #expect(configuration.kafka["session.timeout.ms"] == "10000")
        #expect(configuration.groupID == "sluice-curate")
        #expect(configuration.topics == ["raw.web", "raw.forum", "raw.docs"])
        #expect(configuration.formats["raw.docs"] == .json)
        #expect(configuration.sealAfterSeconds == 60)
        #expect(configuration.metricsPort == 9464)
        #expect(configuration.stages.workers == 2)
        try configuration.validate(file: "pipeline.yaml")

        let fromEnvironment = try PipelineConfiguration.load(
            yaml: text, file: "pipeline.yaml", environment: ["SLUICE_BOOTSTRAP": "kafka-1:9093"])
        #expect(fromEnvironment.kafka.bootstrapServers == "kafka-1:9093")
    }

    @Test func noBootstrapMeansTheEmbeddedBroker() throws {
        let configuration = try PipelineConfiguration.load(
            yaml: "input: { topics: [raw.web, \"^raw\\\\..*\", { name: raw.notes, format: text }] }", file: "p.yaml",
            environment: [:])
        #expect(configuration.usesEmbeddedBroker)
        #expect(configuration.topics == ["raw.web", "^raw\\..*", "raw.notes"])
        #expect(configuration.formats["raw.notes"] == .text)
        try configuration.validate(file: "p.yaml")
    }

    @Test(arguments: [
        ("kafka: { bootstrap.servers: ${MISSING} }", "", "MISSING is not set"),
        ("input: { topics: raw.web }", "input.topics", "expected a list"),
        ("input: { topics: [{ name: raw.web, format: xml }] }", "input.topics[0].format", "json or text"),
        ("input: { topics: [{ name: raw.web, fmt: text }] }", "input.topics[0].fmt", "unknown key"),
        ("output: { directory: 3 }", "output.directory", "non-empty string"),
        ("pipeline: { seal_after_seconds: 0 }", "pipeline.seal_after_seconds", "integer"),
        ("pipeline: { on_data_loss: ignore }", "pipeline.on_data_loss", "fail, skip"),
        ("metrics: { port: 70000 }", "metrics.port", "integer"),
        ("kafka: { bootstrap.servers: [a, b] }", "kafka.bootstrap.servers", "scalar"),
        ("clean: { normalisation: nfc }", "clean.normalisation", "unknown key"),
        ("sinks: {}", "sinks", "unknown section"),
        ("perplexity: { max_ratio: 1.2 }", "perplexity", "name a model"),
        ("perplexity: { model: m, max_ratio: -1 }", "perplexity.max_ratio", "positive number"),
        ("perplexity: { model: m, ratio: 2 }", "perplexity.ratio", "unknown key"),
    ])
    func errorsNameTheirPath(_ yaml: String, _ path: String, _ reason: String) {
        let error = #expect(throws: ConfigError.self) {
            _ = try PipelineConfiguration.load(yaml: yaml, file: "p.yaml", environment: [:])
        }
        #expect(error?.path == path)
        #expect(error?.reason.contains(reason) == true, "\(error?.reason ?? "")")
    }

    @Test func thePerplexitySectionReadsEveryKey() throws {
        let configuration = try PipelineConfiguration.load(
            yaml: "perplexity: { models_topic: sluice.models, max_ratio: 1.5, max_bytes: 128, reference_perplexity: 20 }",
            file: "p.yaml", environment: [:])
        let perplexity = try #require(configuration.stages.perplexity)
        #expect(perplexity.modelsTopic == "sluice.models" && perplexity.model == nil)
        #expect(perplexity.maxRatio == 1.5 && perplexity.maxBytes == 128 && perplexity.referencePerplexity == 20)
    }

    @Test func validationCatchesWhatOnlyShowsAfterFlags() throws {
        var configuration = PipelineConfiguration()
        #expect(throws: ConfigError.self) { try configuration.validate(file: "flags") }  // no topics
        configuration.topics = ["raw web"]
        #expect(throws: ConfigError.self) { try configuration.validate(file: "flags") }
        configuration.topics = ["^raw[", "raw.web"]
        #expect(throws: ConfigError.self) { try configuration.validate(file: "flags") }
        configuration.topics = ["raw.web"]
        configuration.kafka["enable.auto.commit"] = "true"
        let error = #expect(throws: ConfigError.self) { try configuration.validate(file: "flags") }
        #expect(error?.path == "kafka.enable.auto.commit")
    }
}
