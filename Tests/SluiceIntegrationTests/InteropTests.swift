import Foundation
import Testing

@Suite("sluice broker, produce and consume as processes, with kcat", .serialized, .timeLimit(.minutes(3)))
struct InteropTests {
    let kcat = which("kcat")

    @Test func kcatProducesAndSluiceConsumes() async throws {
        let kcat = try #require(kcat, "kcat is installed by make deps")
        let broker = try BrokerProcess(arguments: ["--topic", "interop.in:3"])
        defer { #expect(broker.stop() == 0, "SIGTERM stops the broker cleanly") }
        let lines = (0..<500).map { "key\($0):{\"n\":\($0),\"text\":\"héllo \($0) 你好\"}" }
        let produced = try await runProcess(
            kcat, ["-P", "-b", broker.bootstrap, "-t", "interop.in", "-K", ":"], input: lines.joined(separator: "\n") + "\n")
        #expect(produced.status == 0, "\(produced.stderr)")

        let consumed = try await runProcess(
            sluiceExecutable.path, ["consume", "--bootstrap", broker.bootstrap, "--topic", "interop.in", "--exit-at-end"])
        #expect(consumed.status == 0, "\(consumed.stderr)")
        let records = consumed.stdout.split(separator: "\n").map { line in
            try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        }
        #expect(records.count == 500)
        var keys = Set<String>()
        for record in records {
            let key = try #require(record["key"] as? String)
            let value = try #require(record["value"] as? String)
            let n = Int(key.dropFirst(3))!
            #expect(value == "{\"n\":\(n),\"text\":\"héllo \(n) 你好\"}")
            #expect(record["topic"] as? String == "interop.in")
            #expect(record["offset"] is Int && record["partition"] is Int)
            keys.insert(key)
        }
        #expect(keys.count == 500)
    }

    @Test func sluiceProducesAndKcatConsumes() async throws {
        let kcat = try #require(kcat, "kcat is installed by make deps")
        let broker = try BrokerProcess(arguments: ["--topic", "interop.out:2"])
        defer { #expect(broker.stop() == 0) }
        let lines = (0..<500).map { "{\"id\":\"doc-\($0)\",\"text\":\"record \($0)\"}" }
        let produced = try await runProcess(
            sluiceExecutable.path,
            ["produce", "--bootstrap", broker.bootstrap, "--topic", "interop.out", "--key-field", "id", "--header", "origin=test"],
            input: lines.joined(separator: "\n") + "\n")
        #expect(produced.status == 0, "\(produced.stderr)")
        #expect(produced.stderr.contains("produced 500 record(s)"))

        let consumed = try await runProcess(
            kcat, ["-C", "-b", broker.bootstrap, "-t", "interop.out", "-e", "-q", "-f", "%k\t%s\t%h\n"])
        #expect(consumed.status == 0, "\(consumed.stderr)")
        let rows = consumed.stdout.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        #expect(rows.count == 500)
        for row in rows {
            #expect(row.count == 3)
            let key = String(row[0])
            #expect(row[1] == "{\"id\":\"\(key)\",\"text\":\"record \(key.dropFirst(4))\"}")
            #expect(row[2] == "origin=test")
        }
        #expect(Set(rows.map { String($0[0]) }).count == 500)
    }

    @Test func faultsInjectedThroughTheBrokersStandardInputReachOtherProcesses() async throws {
        let broker = try BrokerProcess(arguments: ["--topic", "interop.fault:1"])
        defer { #expect(broker.stop() == 0) }
        #expect(try broker.command("topic interop.made 2") == "ok topic interop.made 2 (created)")
        let listed = try await runProcess(sluiceExecutable.path, ["topics", "list", "--bootstrap", broker.bootstrap])
        #expect(listed.stdout.contains("interop.made\t2 partitions"))

        // MESSAGE_TOO_LARGE (10) on the next Produce request: the record fails and produce exits non-zero.
        #expect(try broker.command("err 0 10") == "ok err 0 10")
        let failed = try await runProcess(
            sluiceExecutable.path, ["produce", "--bootstrap", broker.bootstrap, "--topic", "interop.fault"], input: "one\n")
        #expect(failed.status != 0)
        #expect(failed.stderr.contains("1 failed"))
        #expect(try broker.command("nonsense") .hasPrefix("error: "))

        let produced = try await runProcess(
            sluiceExecutable.path, ["produce", "--bootstrap", broker.bootstrap, "--topic", "interop.fault"], input: "two\n")
        #expect(produced.status == 0, "\(produced.stderr)")
    }

    @Test func topicsApplyAgainstTheEmbeddedBrokerSaysWhatToDo() async throws {
        let broker = try BrokerProcess()
        defer { #expect(broker.stop() == 0) }
        let topicsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("topics")
        let applied = try await runProcess(
            sluiceExecutable.path,
            ["topics", "apply", "--dir", topicsDirectory.path, "--bootstrap", broker.bootstrap, "--timeout", "2"])
        #expect(applied.status != 0)
        #expect(applied.stderr.contains("sluice broker --topics"))
        let checked = try await runProcess(
            sluiceExecutable.path, ["topics", "apply", "--dir", topicsDirectory.path, "--check"])
        #expect(checked.status == 0)
        #expect(checked.stdout.contains("sluice.shards\t1 partitions\tvalid"))
    }

    @Test func wrongUsageGivesClearErrors() async throws {
        let unknownFlag = try await runProcess(sluiceExecutable.path, ["consume", "--topic", "t", "--nope"])
        #expect(unknownFlag.status == 64)
        #expect(unknownFlag.stderr.contains("Unknown option '--nope'"))
        let noBootstrap = try await runProcess(sluiceExecutable.path, ["produce", "--topic", "t"])
        #expect(noBootstrap.status != 0)
        #expect(noBootstrap.stderr.contains("--bootstrap"))
        let badProperty = try await runProcess(
            sluiceExecutable.path, ["produce", "--bootstrap", "127.0.0.1:9", "--topic", "t", "-X", "no.such=1"])
        #expect(badProperty.status != 0)
        #expect(badProperty.stderr.contains("no.such"))
        let storedWithoutGroup = try await runProcess(
            sluiceExecutable.path, ["consume", "--bootstrap", "127.0.0.1:9", "--topic", "t", "--from", "stored"])
        #expect(storedWithoutGroup.status == 64)
    }
}
