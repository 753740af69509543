import Foundation
import Testing
import Yams

/// `deploy/`: the Kubernetes manifests are parsed and cross-checked against the code and the repository, so a
/// renamed flag, port, route or config file breaks this test rather than a cluster.
@Suite("deploy manifests")
struct DeployTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func documents() throws -> [(file: String, object: [String: Any])] {
        let directory = root.appendingPathComponent("deploy/k8s")
        var all: [(String, [String: Any])] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() where file.hasSuffix(".yaml") && file != "kustomization.yaml" {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            for document in try Yams.load_all(yaml: text) {
                if let object = document as? [String: Any] { all.append((file, object)) }
            }
        }
        return all
    }

    static func containers(_ object: [String: Any]) -> [[String: Any]] {
        let template = (object["spec"] as? [String: Any])?["template"] as? [String: Any]
        return ((template?["spec"] as? [String: Any])?["containers"] as? [[String: Any]]) ?? []
    }

    @Test func manifestsMatchTheCodeAndTheRepository() async throws {
        let documents = try Self.documents()
        let kustomization = try String(contentsOf: Self.root.appendingPathComponent("deploy/k8s/kustomization.yaml"), encoding: .utf8)
        for file in Set(documents.map(\.file)) { #expect(kustomization.contains("- \(file)"), "kustomization lists \(file)") }

        // The generated ConfigMaps hold exactly the repository's files.
        let generated = try await runProcess("/usr/bin/python3", [Self.root.appendingPathComponent("deploy/generate-configmaps.py").path])
        #expect(generated.status == 0, "\(generated.stderr)")
        let diff = try await runProcess("/usr/bin/git", ["-C", Self.root.path, "diff", "--exit-code", "--", "deploy/k8s/configmaps.yaml"])
        #expect(diff.status == 0, "deploy/k8s/configmaps.yaml is stale: run deploy/generate-configmaps.py\n\(diff.stdout.prefix(800))")
        var configMaps: [String: Set<String>] = [:]
        for (_, object) in documents where object["kind"] as? String == "ConfigMap" {
            let name = (object["metadata"] as? [String: Any])?["name"] as? String ?? ""
            configMaps[name] = Set(((object["data"] as? [String: Any]) ?? [:]).keys)
        }

        let deployments = Set(documents.filter { $0.object["kind"] as? String == "Deployment" }.compactMap { ($0.object["metadata"] as? [String: Any])?["name"] as? String })
        #expect(deployments == ["sluice-pipeline", "sluice-connectors", "sluice-trainer", "sluice-gateway"])
        var helpCache: [String: String] = [:]
        for (file, object) in documents where ["Deployment", "Job"].contains(object["kind"] as? String ?? "") {
            for container in Self.containers(object) {
                let args = (container["args"] as? [Any] ?? []).map { "\($0)" }
                // The subcommand (one or two words) and every flag it is given exist.
                let words = args.prefix { !$0.hasPrefix("-") && !$0.hasPrefix("/") }
                let command = Array(words.prefix(args.first == "topics" ? 2 : 1))
                let key = command.joined(separator: " ")
                if helpCache[key] == nil { helpCache[key] = try await runProcess(sluiceExecutable.path, command + ["--help"]).stdout }
                let help = helpCache[key] ?? ""
                #expect(!help.isEmpty, "\(file): sluice \(key) exists")
                for flag in args where flag.hasPrefix("--") { #expect(help.contains(flag + " "), "\(file): sluice \(key) takes \(flag)") }
                // Ports: each declared container port is one the arguments open, and probes use declared ports.
                let ports = Set((container["ports"] as? [[String: Any]] ?? []).compactMap { $0["containerPort"] as? Int })
                for port in ports {
                    let given = zip(args, args.dropFirst()).contains { ["--port", "--metrics-port", "--grpc-port"].contains($0.0) && $0.1 == "\(port)" }
                    #expect(given, "\(file): port \(port) is opened by the arguments")
                }
                for probe in ["livenessProbe", "readinessProbe"] {
                    guard let get = (container[probe] as? [String: Any])?["httpGet"] as? [String: Any] else { continue }
                    let path = get["path"] as? String ?? "", port = get["port"] as? Int ?? 0
                    #expect(ports.contains(port), "\(file): \(probe) uses a declared port")
                    // The pipeline's metrics server answers /healthz only; the gateway answers /healthz and /readyz.
                    let routes = key == "serve" ? ["/healthz", "/readyz"] : ["/healthz"]
                    #expect(routes.contains(path), "\(file): \(probe) \(path) exists on sluice \(key)")
                }
                // Config files named in the arguments are in the ConfigMap mounted there.
                let mounts = (container["volumeMounts"] as? [[String: Any]] ?? []).compactMap { m -> (String, String)? in
                    guard let name = m["name"] as? String, let path = m["mountPath"] as? String else { return nil }
                    return (name, path)
                }
                let podSpec = ((object["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any]
                let volumes = (podSpec?["volumes"] as? [[String: Any]] ?? [])
                for arg in args where arg.hasPrefix("/etc/sluice/") && arg.hasSuffix(".yaml") {
                    let folder = (arg as NSString).deletingLastPathComponent, fileName = (arg as NSString).lastPathComponent
                    let volume = mounts.first { $0.1 == folder }?.0
                    let map = volumes.first { $0["name"] as? String == volume }.flatMap { ($0["configMap"] as? [String: Any])?["name"] as? String }
                    #expect(map.flatMap { configMaps[$0]?.contains(fileName) } == true, "\(file): \(arg) comes from a ConfigMap")
                }
                if let env = container["envFrom"] as? [[String: Any]] {
                    for source in env { #expect(configMaps[(source["configMapRef"] as? [String: Any])?["name"] as? String ?? ""] != nil) }
                }
            }
        }

        // The autoscaler: its target exists, its metric is one the workers export, and it never asks for more
        // replicas than the pipeline's input partitions.
        let hpa = try #require(documents.first { $0.object["kind"] as? String == "HorizontalPodAutoscaler" }?.object)
        let spec = hpa["spec"] as? [String: Any] ?? [:]
        #expect(deployments.contains((spec["scaleTargetRef"] as? [String: Any])?["name"] as? String ?? ""))
        let metric = (((spec["metrics"] as? [[String: Any]])?.first?["pods"] as? [String: Any])?["metric"] as? [String: Any])?["name"] as? String ?? ""
        let source = try String(contentsOf: Self.root.appendingPathComponent("Sources/SluicePipeline/StreamingPipeline.swift"), encoding: .utf8)
        #expect(!metric.isEmpty && source.contains("\"\(metric)\""), "\(metric) is exported")
        let pipeline = try Yams.load(yaml: String(contentsOf: Self.root.appendingPathComponent("config/pipeline.yaml"), encoding: .utf8)) as? [String: Any]
        let inputs = ((pipeline?["input"] as? [String: Any])?["topics"] as? [Any] ?? []).map { ($0 as? String) ?? (($0 as? [String: Any])?["name"] as? String ?? "") }
        var partitions = 0
        for topic in inputs {
            let declaration = try Yams.load(yaml: String(contentsOf: Self.root.appendingPathComponent("topics/\(topic).yaml"), encoding: .utf8)) as? [String: Any]
            partitions += declaration?["partitions"] as? Int ?? 0
        }
        #expect(spec["maxReplicas"] as? Int == partitions, "maxReplicas is the input partitions (\(partitions))")
    }
}

@Suite("Grafana dashboard")
struct GrafanaDashboardTests {
    /// Every metric a panel queries is one the code exports (by its literal name, or a `sluice_quality_<rate>` gauge).
    @Test func panelsQueryMetricsTheCodeExports() throws {
        let root = DeployTests.root
        let data = try Data(contentsOf: root.appendingPathComponent("docs/grafana-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = dashboard["panels"] as? [[String: Any]] ?? []
        #expect(panels.count >= 12)
        var sources = ""
        for folder in ["Sources/SluicePipeline", "Sources/SluiceGateway", "Sources/SluiceKafka"] {
            let directory = root.appendingPathComponent(folder)
            for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) where file.hasSuffix(".swift") {
                sources += try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            }
        }
        let rates = ["drop_rate", "pii_rate", "quarantine_rate", "late_rate"]
        /// The name occurs in the code as a whole word (a label literal, or a line of the exposition the code writes).
        func exported(_ name: String) -> Bool {
            var rest = sources[...]
            while let range = rest.range(of: name) {
                let next = rest[range.upperBound...].first
                if next.map({ !($0.isLetter || $0.isNumber || $0 == "_") }) ?? true { return true }
                rest = rest[range.upperBound...]
            }
            return false
        }
        for panel in panels {
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                let expr = target["expr"] as? String ?? ""
                let names = expr.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") }).filter { $0.hasPrefix("sluice_") }
                #expect(!names.isEmpty, "\(panel["title"] ?? "") queries a Sluice metric")
                for name in names {
                    var base = String(name)
                    for suffix in ["_bucket", "_sum", "_count"] where base.hasSuffix(suffix) && !exported(base) {
                        base = String(base.dropLast(suffix.count))
                    }
                    let quality = base.hasPrefix("sluice_quality_") && rates.contains(String(base.dropFirst("sluice_quality_".count)))
                    #expect(quality || exported(base), "\(base) in \(panel["title"] ?? "") is exported")
                }
            }
        }
    }
}
