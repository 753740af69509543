internal import GRDB
internal import GRDBSQLite

/// Binds and steps a prepared INSERT through SQLite's C API: for the tens of thousands of rows a shard records
/// in one transaction, where building GRDB's argument arrays per row costs more than SQLite itself.
struct BulkInsert {
    private let statement: OpaquePointer
    private let database: OpaquePointer?
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    /// The current row's strings, copied once into one buffer and bound without SQLite copying them again.
    private let rowBytes = RowBytes()

    init(_ statement: Statement, in db: Database) {
        self.statement = statement.sqliteStatement
        database = db.sqliteConnection
    }

    func bind(_ index: Int32, _ value: String?) {
        guard let value else { sqlite3_bind_null(statement, index); return }
        var text = value
        text.withUTF8 { bind(index, text: $0) }
    }

    /// UTF-8 text from bytes, valid only for the call: copied into the row's buffer, or by SQLite when it is full.
    func bind(_ index: Int32, text bytes: UnsafeBufferPointer<UInt8>) {
        if let copy = rowBytes.copy(bytes) {
            // SQLITE_STATIC (no destructor): the bytes stay put until ``step()`` has reset and cleared the row.
            _ = sqlite3_bind_text(statement, index, copy, Int32(bytes.count), nil)
            return
        }
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
        rowBytes.reset()
        guard code == SQLITE_DONE else {
            let message = database.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "SQLite error \(code)"
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message)
        }
    }
}

/// Fixed storage for one row's bound strings: SQLite reads them in place (no allocation and copy per string and row);
/// a row whose strings do not fit binds the rest as copies.
private final class RowBytes {
    // One owner: the BulkInsert of one statement, on one thread.
    private let base: UnsafeMutablePointer<CChar>
    private let capacity = 64 << 10
    private var used = 0

    init() { base = .allocate(capacity: capacity) }
    deinit { base.deallocate() }

    /// A copy of `bytes` valid until ``reset()``; nil when the row's strings fill the buffer.
    func copy(_ bytes: UnsafeBufferPointer<UInt8>) -> UnsafePointer<CChar>? {
        guard used + bytes.count <= capacity else { return nil }
        let start = base + used
        if let source = bytes.baseAddress {
            UnsafeMutableRawPointer(start).copyMemory(from: source, byteCount: bytes.count)
        }
        used += bytes.count
        return UnsafePointer(start)
    }

    func reset() { used = 0 }
}
