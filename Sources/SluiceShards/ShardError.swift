/// The error of the shards module: compression, the SQLite index, files. `description` never holds record text.
internal import GRDB

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
        /// A shard file ends early.
        public static let truncated = Code(name: "truncated")
        /// A shard's bytes are not what a tar (or zstd frame) must be.
        public static let corrupt = Code(name: "corrupt")
        /// A shard's SHA-256 or the index does not match the file.
        public static let checksumMismatch = Code(name: "checksumMismatch")
        /// A tar member name is absolute or climbs out (`..`): refused before anything is written.
        public static let unsafeMemberName = Code(name: "unsafeMemberName")
        /// A file or directory operation failed (errno in the native code).
        public static let io = Code(name: "io")
        /// No sample or shard by that name.
        public static let notFound = Code(name: "notFound")
        /// The output already holds a dataset and overwriting was not asked for.
        public static let alreadyExists = Code(name: "alreadyExists")
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

    public static func make(_ code: Code, _ reason: String, native: Int32? = nil, file: String = #fileID, line: Int = #line)
        -> ShardError
    {
        ShardError(code: code, reason: reason, nativeCode: native, file: file, line: line)
    }

    /// Runs `body`, turning SQLite errors into `.database` and passing ShardErrors through.
    public static func wrap<T>(_ action: String, file: String = #fileID, line: Int = #line, _ body: () throws -> T)
        throws(ShardError) -> T
    {
        do {
            return try body()
        } catch let error as ShardError {
            throw error
        } catch let error as DatabaseError {
            throw ShardError(
                code: .database, reason: "SQLite: \(action): \(error.message ?? "\(error.resultCode)")",
                nativeCode: error.extendedResultCode.rawValue, file: file, line: line)
        } catch {
            throw ShardError(code: .database, reason: "\(action): \(error)", file: file, line: line)
        }
    }

    public var description: String {
        "ShardError.\(code.name): \(reason)" + (nativeCode.map { " (code \($0))" } ?? "")
    }
}
