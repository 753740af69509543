internal import Foundation
internal import Yams

/// Reading Sluice's YAML configuration files: environment interpolation and the top-level mapping.
public enum ConfigText {
    /// Replaces `${NAME}` and `${NAME:-default}` with environment values, outside YAML comments.
    /// - Throws: ``ConfigError`` naming the variable when it is unset and has no default.
    public static func interpolate(_ text: String, file: String, environment: [String: String]) throws(ConfigError) -> String {
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let comment = commentStart(line)
            lines.append(try interpolateLine(line[..<comment], file: file, environment: environment) + line[comment...])
        }
        return lines.joined(separator: "\n")
    }

    /// Where a YAML comment starts: a `#` at the start or after a blank, outside quotes.
    private static func commentStart(_ line: Substring) -> Substring.Index {
        var quote: Character?
        var previous: Character = " "
        for index in line.indices {
            let character = line[index]
            if let open = quote {
                if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if character == "#" && (previous == " " || previous == "\t") {
                return index
            }
            previous = character
        }
        return line.endIndex
    }

    private static func interpolateLine(_ text: Substring, file: String, environment: [String: String]) throws(ConfigError)
        -> String
    {
        var out = ""
        var rest = text
        while let open = rest.range(of: "${") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                throw ConfigError(file: file, path: "", reason: "unterminated ${ in \(rest[open.lowerBound...].prefix(40))")
            }
            let expression = rest[open.upperBound..<close]
            let name: Substring
            let fallback: Substring?
            if let separator = expression.range(of: ":-") {
                name = expression[..<separator.lowerBound]
                fallback = expression[separator.upperBound...]
            } else {
                name = expression
                fallback = nil
            }
            if let value = environment[String(name)], !value.isEmpty {
                out += value
            } else if let fallback {
                out += fallback
            } else {
                throw ConfigError(file: file, path: "", reason: "the environment variable \(name) is not set (write ${\(name):-default} for a default)")
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    /// The top-level mapping of a configuration file; `nil` for an empty file.
    public static func sections(ofYAML yaml: String, file: String) throws(ConfigError) -> [String: Any]? {
        do {
            guard let loaded = try Yams.load(yaml: yaml) else { return nil }
            guard let dictionary = loaded as? [String: Any] else {
                throw ConfigError(file: file, path: "", reason: "expected a mapping of sections")
            }
            return dictionary
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError(file: file, path: "", reason: "not valid YAML: \(error)")
        }
    }
}

/// Typed access to one YAML section with errors that name `section.key`.
public struct SectionReader {
    public let file: String
    public var section = ""

    public init(file: String, section: String = "") {
        self.file = file
        self.section = section
    }

    public func error(_ key: String, _ reason: String) -> ConfigError {
        ConfigError(file: file, path: key.isEmpty ? section : "\(section).\(key)", reason: reason)
    }

    public func keys(_ fields: [String: Any], _ known: [String]) throws(ConfigError) {
        ConfigSchema.recorder?.known(section, known)
        for key in fields.keys where !known.contains(key) {
            throw error(key, "unknown key; known: \(known.joined(separator: ", "))")
        }
    }

    public func int(_ fields: [String: Any], _ key: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        ConfigSchema.recorder?.typed(section, key, "integer \(range.lowerBound)…\(range.upperBound == Int.max ? "" : "\(range.upperBound)")")
        guard let value = fields[key] else { return nil }
        guard let number = value as? Int, range.contains(number) else {
            throw error(key, "expected an integer in \(range.lowerBound)…\(range.upperBound == Int.max ? "" : "\(range.upperBound)")")
        }
        return number
    }

    /// A number (an integer or a decimal) in `range`.
    public func number(_ fields: [String: Any], _ key: String, _ range: ClosedRange<Double>) throws(ConfigError) -> Double? {
        ConfigSchema.recorder?.typed(
            section, key, "number \(range.lowerBound)…\(range.upperBound == .greatestFiniteMagnitude ? "" : "\(range.upperBound)")")
        guard let value = fields[key] else { return nil }
        guard !(value is Bool), let number = (value as? Double) ?? (value as? Int).map(Double.init), range.contains(number) else {
            throw error(key, "expected a number in \(range.lowerBound)…\(range.upperBound == .greatestFiniteMagnitude ? "" : "\(range.upperBound)")")
        }
        return number
    }

    public func string(_ fields: [String: Any], _ key: String) throws(ConfigError) -> String? {
        ConfigSchema.recorder?.typed(section, key, "string")
        guard let value = fields[key] else { return nil }
        guard let text = value as? String, !text.isEmpty else { throw error(key, "expected a non-empty string") }
        return text
    }

    public func bool(_ fields: [String: Any], _ key: String) throws(ConfigError) -> Bool? {
        ConfigSchema.recorder?.typed(section, key, "true or false")
        guard let value = fields[key] else { return nil }
        guard let flag = value as? Bool else { throw error(key, "expected true or false") }
        return flag
    }

    public func choice(_ fields: [String: Any], _ key: String, _ options: [String]) throws(ConfigError) -> String? {
        ConfigSchema.recorder?.typed(section, key, "one of " + options.joined(separator: ", "))
        guard let value = fields[key] else { return nil }
        guard let text = value as? String, options.contains(text) else {
            throw error(key, "expected one of \(options.joined(separator: ", "))")
        }
        return text
    }
}

/// What configuration loaders accept, recorded as they read: the known keys of each section and the type of each
/// key read through ``SectionReader``'s typed accessors. `sluice reference` probes every loader with this recorder
/// set, so the configuration reference is generated from the code that reads the files and cannot drift from it.
public final class ConfigSchema: @unchecked Sendable {
    // @unchecked: the dictionaries are guarded by `lock`.
    @TaskLocal public static var recorder: ConfigSchema?
    private let lock = NSLock()
    private var knownKeys: [String: [String]] = [:]
    private var types: [String: String] = [:]

    public init() {}

    /// Section path ("" for the top level) → the keys it accepts, in the loader's order.
    public var sections: [String: [String]] { lock.withLock { knownKeys } }
    /// "section.key" (or "key" at the top level) → its type and range.
    public var keyTypes: [String: String] { lock.withLock { types } }

    /// Notes that `section` accepts `keys` (loaders that check their sections without ``SectionReader/keys(_:_:)``).
    public func known(_ section: String, _ keys: [String]) {
        lock.withLock {
            var list = knownKeys[section] ?? []
            for key in keys where !list.contains(key) { list.append(key) }
            knownKeys[section] = list
        }
    }

    func typed(_ section: String, _ key: String, _ description: String) {
        lock.withLock { types[section.isEmpty ? key : "\(section).\(key)"] = description }
    }
}
