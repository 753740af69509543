/// The one error type of `SluicePipeline`: a configuration or declaration problem, with where it is.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// The file the problem is in.
    public let file: String
    /// The key path inside the file, e.g. `config.cleanup.policy`; empty for the whole file.
    public let path: String
    /// What is wrong and what to do.
    public let reason: String

    public init(file: String, path: String, reason: String) {
        self.file = file
        self.path = path
        self.reason = reason
    }

    public var description: String {
        path.isEmpty ? "\(file): \(reason)" : "\(file): \(path): \(reason)"
    }
}
