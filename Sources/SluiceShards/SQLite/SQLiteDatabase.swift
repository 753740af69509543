internal import CSQLite
internal import Glibc

/// One SQLite connection in WAL mode with `synchronous=FULL`: a committed transaction survives a crash or a
/// power loss. Not thread-safe; one owner uses it at a time (it is `Sendable` so the owner can move between
/// tasks).
public final class SQLiteDatabase: @unchecked Sendable {
    // @unchecked: the connection is used by one owner at a time (documented above); SQLite itself is built
    // serialized on Debian, so even a mistake cannot corrupt memory.
    let handle: OpaquePointer
    /// The database file.
    public let path: String

    /// Opens (creating when missing) the database at `path`.
    /// - Throws: ``ShardError`` with code `.database`.
    public init(path: String) throws(ShardError) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let result = sqlite3_open_v2(path, &handle, flags, nil)
        guard result == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let handle { sqlite3_close_v2(handle) }
            throw ShardError.database("cannot open \(path): \(message)", code: result)
        }
        self.handle = handle
        self.path = path
        sqlite3_busy_timeout(handle, 5000)
        try execute("PRAGMA journal_mode=WAL")
        try execute("PRAGMA synchronous=FULL")
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    /// Runs SQL without results (several statements allowed).
    public func execute(_ sql: String) throws(ShardError) {
        let result = sqlite3_exec(handle, sql, nil, nil, nil)
        guard result == SQLITE_OK else { throw error(result, "executing \(sql.prefix(60))") }
    }

    /// Runs `body` in one transaction (`BEGIN IMMEDIATE … COMMIT`); rolls back when it throws.
    public func transaction<T>(_ body: () throws(ShardError) -> T) throws(ShardError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// A prepared statement.
    func prepare(_ sql: String) throws(ShardError) -> SQLiteStatement {
        var statement: OpaquePointer?
        let result = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        guard result == SQLITE_OK, let statement else { throw error(result, "preparing \(sql.prefix(60))") }
        return SQLiteStatement(statement: statement, database: self)
    }

    func error(_ code: Int32, _ action: String) -> ShardError {
        ShardError.database("\(action): \(String(cString: sqlite3_errmsg(handle)))", code: code)
    }

    /// Bytes of the database file and its write-ahead log.
    public var fileBytes: Int {
        var total = 0
        for suffix in ["", "-wal"] {
            var info = stat()
            if stat(path + suffix, &info) == 0 { total += Int(info.st_size) }
        }
        return total
    }
}

/// A prepared statement; finalized on deinit.
final class SQLiteStatement {
    let statement: OpaquePointer
    let database: SQLiteDatabase

    init(statement: OpaquePointer, database: SQLiteDatabase) {
        self.statement = statement
        self.database = database
    }

    deinit { sqlite3_finalize(statement) }

    func reset() {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
    }

    func bind(_ index: Int32, _ value: String) {
        sqlite3_bind_text(statement, index, value, -1, sluice_sqlite_transient())
    }

    func bind(_ index: Int32, _ value: Int64) {
        sqlite3_bind_int64(statement, index, value)
    }

    func bind(_ index: Int32, blob: UnsafeRawBufferPointer) {
        sqlite3_bind_blob(statement, index, blob.baseAddress, Int32(blob.count), sluice_sqlite_transient())
    }

    /// Steps once; true when a row is available.
    func step() throws(ShardError) -> Bool {
        let result = sqlite3_step(statement)
        if result == SQLITE_ROW { return true }
        if result == SQLITE_DONE { return false }
        throw database.error(result, "stepping")
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(statement, column) else { return "" }
        return String(cString: pointer)
    }

    func blob(_ column: Int32) -> UnsafeRawBufferPointer {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard let pointer = sqlite3_column_blob(statement, column), count > 0 else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: pointer, count: count)
    }
}
