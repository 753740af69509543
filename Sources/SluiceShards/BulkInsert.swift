internal import GRDB
internal import GRDBSQLite

/// Binds and steps a prepared INSERT through SQLite's C API: for the tens of thousands of rows a shard records
/// in one transaction, where building GRDB's argument arrays per row costs more than SQLite itself.
struct BulkInsert {
    private let statement: OpaquePointer
    private let database: OpaquePointer?
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    init(_ statement: Statement, in db: Database) {
        self.statement = statement.sqliteStatement
        database = db.sqliteConnection
    }

    func bind(_ index: Int32, _ value: String?) {
        guard let value else { sqlite3_bind_null(statement, index); return }
        var text = value
        text.withUTF8 { bytes in
            let empty: StaticString = ""
            let start = UnsafeRawPointer(bytes.baseAddress ?? empty.utf8Start).assumingMemoryBound(to: CChar.self)
            _ = sqlite3_bind_text(statement, index, start, Int32(bytes.count), Self.transient)
        }
    }

    /// UTF-8 text from bytes (copied by SQLite).
    func bind(_ index: Int32, text bytes: UnsafeBufferPointer<UInt8>) {
        let empty: StaticString = ""
        let start = UnsafeRawPointer(bytes.baseAddress ?? empty.utf8Start).assumingMemoryBound(to: CChar.self)
        _ = sqlite3_bind_text(statement, index, start, Int32(bytes.count), Self.transient)
    }

    func bind(_ index: Int32, _ value: Int) { sqlite3_bind_int64(statement, index, Int64(value)) }
    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(statement, index, value) }
    func bind(_ index: Int32, _ value: Int64?) {
        if let value { sqlite3_bind_int64(statement, index, value) } else { sqlite3_bind_null(statement, index) }
    }
    func bind(_ index: Int32, _ value: Int?) { bind(index, value.map(Int64.init)) }

    func bind(_ index: Int32, _ value: Double?) {
        if let value { sqlite3_bind_double(statement, index, value) } else { sqlite3_bind_null(statement, index) }
    }

    func bind(_ index: Int32, blob: UnsafeRawBufferPointer) {
        sqlite3_bind_blob(statement, index, blob.baseAddress, Int32(blob.count), Self.transient)
    }

    /// 16-bit values as a blob of their little-endian bytes; none as a zero-length blob, not NULL.
    func bind(_ index: Int32, littleEndian values: UnsafeBufferPointer<UInt16>) {
        if values.isEmpty {
            let empty: StaticString = ""  // a NULL pointer would bind NULL
            bind(index, blob: UnsafeRawBufferPointer(start: UnsafeRawPointer(empty.utf8Start), count: 0))
            return
        }
        #if _endian(little)
        bind(index, blob: UnsafeRawBufferPointer(values))
        #else
        var bytes = [UInt8]()
        bytes.reserveCapacity(values.count * 2)
        for value in values {
            bytes.append(UInt8(truncatingIfNeeded: value))
            bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        }
        bytes.withUnsafeBytes { bind(index, blob: $0) }
        #endif
    }

    /// Runs the statement with the bound values, then clears them for the next row.
    func step() throws {
        let code = sqlite3_step(statement)
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
        guard code == SQLITE_DONE else {
            let message = database.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "SQLite error \(code)"
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message)
        }
    }
}
