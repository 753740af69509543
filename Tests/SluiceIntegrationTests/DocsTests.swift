import Foundation
import Testing

/// The generated documentation matches the code.
@Suite("documentation")
struct DocsTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func configurationReferenceIsGeneratedFromTheCode() async throws {
        let run = try await runProcess(sluiceExecutable.path, ["reference"])
        #expect(run.status == 0, "\(run.stderr)")
        let committed = try String(contentsOf: Self.repository.appendingPathComponent("docs/reference.md"), encoding: .utf8)
        #expect(run.stdout == committed, "docs/reference.md is stale: regenerate it with `sluice reference > docs/reference.md`")
        // The probes reached every file's sections and the loaders' typed keys.
        for key in ["`pipeline.seal_after_seconds` | integer 1…86400", "`dedup.hashes` | integer 8…1024", "`retrain.min_new_tokens`",
                    "`backpressure`", "### `sluice demo`", "`--duration`", "`output.quarantine_topic` | string"] {
            #expect(run.stdout.contains(key), "\(key)")
        }
    }

    @Test func topicCatalogueIsGeneratedFromTheDeclarations() async throws {
        let run = try await runProcess(sluiceExecutable.path, ["topics", "catalogue", "--dir", Self.repository.appendingPathComponent("topics").path])
        #expect(run.status == 0, "\(run.stderr)")
        let committed = try String(contentsOf: Self.repository.appendingPathComponent("docs/topics.md"), encoding: .utf8)
        #expect(run.stdout == committed, "docs/topics.md is stale: regenerate it with `sluice topics catalogue > docs/topics.md`")
        for topic in ["raw.web", "sluice.shards", "sluice.models", "sluice.dlq", "sluice.control"] { #expect(run.stdout.contains("## \(topic)\n")) }
    }

    @Test func everyCommandIsInTheCommandPage() async throws {
        let help = try await runProcess(sluiceExecutable.path, ["--help"])
        let page = try String(contentsOf: Self.repository.appendingPathComponent("docs/cli.md"), encoding: .utf8)
        var inSubcommands = false
        var names: [String] = []
        for line in help.stdout.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("SUBCOMMANDS:") { inSubcommands = true; continue }
            if inSubcommands, line.hasPrefix("  "), !line.hasPrefix("   "), let word = line.split(separator: " ").first, word != "See" {
                names.append(String(word))
            } else if inSubcommands, !line.hasPrefix(" ") && !line.isEmpty {
                inSubcommands = false
            }
        }
        #expect(names.count > 20, "\(help.stdout)")
        for name in names where name != "help" {
            #expect(page.contains("`sluice \(name)"), "docs/cli.md does not describe `sluice \(name)`")
        }
    }
}
