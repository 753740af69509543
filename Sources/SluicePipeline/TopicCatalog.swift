internal import SluiceConfig
public import Foundation
public import SluiceKafka
internal import Yams

/// One topic declared in a YAML file under `topics/`.
public struct TopicDeclaration: Sendable, Equatable {
    /// The topic name.
    public var name: String
    /// Partition count.
    public var partitions: Int32
    /// Replication factor; -1 means the broker default.
    public var replication: Int32
    /// Topic configuration passed to the broker, e.g. `cleanup.policy: compact`.
    public var config: [String: String]
    /// What the topic carries.
    public var description: String
    /// The JSON Schema of record values, as JSON text.
    public var valueSchema: String?
    /// The file it was declared in.
    public var file: String

    /// The admin-API specification of this topic.
    public var specification: TopicSpecification {
        TopicSpecification(name: name, partitions: partitions, replicationFactor: replication, config: config)
    }
}

/// Loads and validates the topic declarations of a directory (`*.yaml` / `*.yml`, one topic per file).
///
/// A declaration has `name`, `partitions`, optional `replication` (default 1), `config` (string map),
/// `description`, and `schema`: either an inline JSON Schema object or the path of a `.json` file relative to
/// the declaration.
public enum TopicCatalog {
    /// Loads every declaration in `directory`, sorted by name.
    /// - Throws: ``ConfigError`` naming the file and key of the first problem; duplicate names are an error.
    public static func load(directory: URL) throws -> [TopicDeclaration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw ConfigError(file: directory.path, path: "", reason: "cannot read the topics directory: \(error.localizedDescription)")
        }
        var declarations: [TopicDeclaration] = []
        var seen: [String: String] = [:]
        for name in names.sorted() where name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
            let url = directory.appendingPathComponent(name)
            let declaration = try load(file: url)
            if let other = seen[declaration.name] {
                throw ConfigError(file: url.path, path: "name", reason: "topic '\(declaration.name)' is also declared in \(other)")
            }
            seen[declaration.name] = url.path
            declarations.append(declaration)
        }
        if declarations.isEmpty {
            throw ConfigError(file: directory.path, path: "", reason: "no topic declarations (*.yaml) found")
        }
        return declarations.sorted { $0.name < $1.name }
    }

    /// Loads one declaration file.
    public static func load(file url: URL) throws -> TopicDeclaration {
        let file = url.path
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw ConfigError(file: file, path: "", reason: "cannot read: \(error.localizedDescription)")
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ConfigError(file: file, path: "", reason: "invalid YAML: \(error)")
        }
        guard let mapping = node?.mapping else {
            throw ConfigError(file: file, path: "", reason: "expected a mapping with name, partitions, replication, config, schema")
        }
        let known: Set<String> = ["name", "partitions", "replication", "config", "description", "schema"]
        for key in mapping.keys.compactMap(\.string) where !known.contains(key) {
            throw ConfigError(file: file, path: key, reason: "unknown key; expected one of \(known.sorted().joined(separator: ", "))")
        }
        guard let name = mapping["name"]?.string, !name.isEmpty else {
            throw ConfigError(file: file, path: "name", reason: "required: the topic name")
        }
        guard name.count <= 249, name != ".", name != "..",
            name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D })
        else {
            throw ConfigError(file: file, path: "name", reason: "'\(name)' is not a legal topic name (letters, digits, '.', '_', '-'; at most 249)")
        }
        guard let partitionsNode = mapping["partitions"] else {
            throw ConfigError(file: file, path: "partitions", reason: "required: the partition count")
        }
        guard let partitions = partitionsNode.int, partitions >= 1, partitions <= 10_000 else {
            throw ConfigError(file: file, path: "partitions", reason: "must be an integer from 1 to 10000")
        }
        var replication: Int32 = 1
        if let node = mapping["replication"] {
            guard let value = node.int, value == -1 || (value >= 1 && value <= 32) else {
                throw ConfigError(file: file, path: "replication", reason: "must be -1 (broker default) or 1 to 32")
            }
            replication = Int32(value)
        }
        var config: [String: String] = [:]
        if let node = mapping["config"] {
            guard let configMapping = node.mapping else {
                throw ConfigError(file: file, path: "config", reason: "must be a mapping of topic properties")
            }
            for (key, value) in configMapping {
                guard let key = key.string, let scalar = value.scalar else {
                    throw ConfigError(file: file, path: "config", reason: "keys and values must be scalars")
                }
                config[key] = scalar.string
            }
        }
        let schema = try loadSchema(mapping["schema"], declaration: url)
        return TopicDeclaration(
            name: name, partitions: Int32(partitions), replication: replication, config: config,
            description: mapping["description"]?.string ?? "", valueSchema: schema, file: file)
    }

    private static func loadSchema(_ node: Node?, declaration url: URL) throws -> String? {
        guard let node else { return nil }
        let file = url.path
        let json: Any
        if let path = node.string {
            let schemaURL = url.deletingLastPathComponent().appendingPathComponent(path)
            guard let data = FileManager.default.contents(atPath: schemaURL.path) else {
                throw ConfigError(file: file, path: "schema", reason: "schema file \(schemaURL.path) does not exist")
            }
            do {
                json = try JSONSerialization.jsonObject(with: data)
            } catch {
                throw ConfigError(file: file, path: "schema", reason: "\(schemaURL.path) is not valid JSON")
            }
        } else {
            do {
                guard let object = try Yams.load(yaml: try Yams.serialize(node: node)) else {
                    throw ConfigError(file: file, path: "schema", reason: "empty schema")
                }
                json = object
            } catch let error as ConfigError {
                throw error
            } catch {
                throw ConfigError(file: file, path: "schema", reason: "cannot read the inline schema: \(error)")
            }
        }
        guard let object = json as? [String: Any], object["type"] != nil || object["$ref"] != nil || object["oneOf"] != nil
        else {
            throw ConfigError(file: file, path: "schema", reason: "a JSON Schema object with a 'type' is expected")
        }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
