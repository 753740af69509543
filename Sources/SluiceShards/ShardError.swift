/// The error of the shards module: compression, the SQLite index, files. `description` never holds record text.
public struct ShardError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is; match it in `catch`.
    public struct Code: Hashable, Sendable {
        fileprivate let name: String
        /// Compressing or decompressing failed.
        public static let compression = Code(name: "compression")
        /// SQLite refused an operation (the native code says which).
        public static let database = Code(name: "database")
        /// A stored index was built with other settings than the ones given.
        public static let settingsMismatch = Code(name: "settingsMismatch")
    }

    public let code: Code
    /// What happened and what to do.
    public let reason: String
    /// The native error code (SQLite result code), when there is one.
    public let nativeCode: Int32?
    public let file: String
    public let line: Int

    init(code: Code, reason: String, nativeCode: Int32? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.nativeCode = nativeCode
        self.file = file
        self.line = line
    }

    static func compression(_ detail: String, file: String = #fileID, line: Int = #line) -> ShardError {
        ShardError(code: .compression, reason: "zstd: \(detail)", file: file, line: line)
    }

    static func database(_ detail: String, code: Int32, file: String = #fileID, line: Int = #line) -> ShardError {
        ShardError(code: .database, reason: "SQLite: \(detail)", nativeCode: code, file: file, line: line)
    }

    static func settingsMismatch(_ detail: String, file: String = #fileID, line: Int = #line) -> ShardError {
        ShardError(code: .settingsMismatch, reason: detail, file: file, line: line)
    }

    public var description: String {
        "ShardError.\(code.name): \(reason)" + (nativeCode.map { " (code \($0))" } ?? "")
    }
}
