internal import Foundation
internal import GRDB
internal import Synchronization

/// The `sqlite` source: polls a table incrementally by a monotonic column — `rowid`, or a column such as
/// `updated_at` with ties broken by rowid — maps columns to envelope fields (the rest go to `meta`), and
/// checkpoints the last (value, rowid) read once its record was acknowledged.
///
/// Rows are read in short read transactions, so writers are never blocked for long. With a column other than
/// rowid, a row committed later with a smaller value than one already read is not seen: use rowid or a column
/// the writer sets from a sequence when that matters.
final class SQLiteSource: ConnectorSource, @unchecked Sendable {
    // @unchecked: `pending` and `checkpoint` are Mutexes; the queue is GRDB's and thread-safe.
    let configuration: ConnectorConfiguration
    private let queue: DatabaseQueue
    private var shaper: EnvelopeShaper
    private let stopFlag = Atomic<Bool>(false)
    /// Cursor values of sent rows by their sequence in this run (the position's offset).
    private let pending = Mutex<[Int64: Cursor]>([:])
    private let checkpoint: Mutex<Cursor?>
    private let rowsRead = Atomic<Int>(0)

    struct Cursor: Sendable {
        var value: DatabaseValue
        var rowid: Int64
    }

    init(configuration: ConnectorConfiguration, state: [String: Any]) throws(ConnectorError) {
        self.configuration = configuration
        shaper = EnvelopeShaper(configuration: configuration)
        let path = configuration.database ?? ""
        guard FileManager.default.fileExists(atPath: path) else {
            throw ConnectorError(reason: "\(path): no such SQLite database", errno: ENOENT)
        }
        do {
            var options = Configuration()
            options.readonly = true
            options.busyMode = .timeout(5)
            queue = try DatabaseQueue(path: path, configuration: options)
            let table = configuration.table ?? ""
            let exists = try queue.read { try $0.tableExists(table) }
            guard exists else { throw ConnectorError(reason: "\(path): no table \(table)", errno: nil) }
        } catch let error as ConnectorError {
            throw error
        } catch {
            throw ConnectorError(reason: "cannot open \(path): \(error)", errno: nil)
        }
        var stored: Cursor?
        if let rowid = state["rowid"] as? Int64 ?? (state["rowid"] as? Int).map(Int64.init) {
            let value: DatabaseValue
            switch state["value"] {
            case let number as Int: value = number.databaseValue
            case let number as Double: value = number.databaseValue
            case let text as String: value = text.databaseValue
            default: value = .null
            }
            stored = Cursor(value: value, rowid: rowid)
        }
        checkpoint = Mutex(stored)
    }

    func stop() { stopFlag.store(true, ordering: .relaxed) }

    var progressNote: String? { "\(rowsRead.load(ordering: .relaxed)) rows read" }

    func acknowledged(_ positions: [Int32: SourcePosition]) -> [String: Any] {
        if let position = positions[0] {
            let cursor = pending.withLock { pending -> Cursor? in
                let cursor = pending[position.offset]
                pending = pending.filter { $0.key > position.offset }
                return cursor
            }
            if let cursor { checkpoint.withLock { $0 = cursor } }
        }
        guard let cursor = checkpoint.withLock({ $0 }) else { return [:] }
        var state: [String: Any] = ["rowid": cursor.rowid, "column": configuration.column]
        switch cursor.value.storage {
        case .int64(let number): state["value"] = number
        case .double(let number): state["value"] = number
        case .string(let text): state["value"] = text
        default: break
        }
        return state
    }

    func run(emitter: Emitter, once: Bool) throws(ConnectorError) {
        let table = configuration.table ?? ""
        let column = configuration.column
        var cursor = checkpoint.withLock { $0 }
        var sequence: Int64 = 0
        while !stopFlag.load(ordering: .relaxed), !emitter.isStopping {
            let rows: [Row]
            do {
                rows = try queue.read { db -> [Row] in
                    if column == "rowid" {
                        return try Row.fetchAll(
                            db, sql: "SELECT rowid AS \"sluice.rowid\", * FROM \"\(table)\" WHERE rowid > ? ORDER BY rowid LIMIT ?",
                            arguments: [cursor?.rowid ?? Int64.min, configuration.batchSize])
                    }
                    if let cursor {
                        return try Row.fetchAll(
                            db,
                            sql: """
                                SELECT rowid AS "sluice.rowid", * FROM "\(table)" WHERE "\(column)" > ? OR ("\(column)" = ? AND rowid > ?) \
                                ORDER BY "\(column)", rowid LIMIT ?
                                """, arguments: [cursor.value, cursor.value, cursor.rowid, configuration.batchSize])
                    }
                    return try Row.fetchAll(
                        db, sql: "SELECT rowid AS \"sluice.rowid\", * FROM \"\(table)\" WHERE \"\(column)\" IS NOT NULL ORDER BY \"\(column)\", rowid LIMIT ?",
                        arguments: [configuration.batchSize])
                }
            } catch {
                throw ConnectorError(reason: "polling \(table): \(error)", errno: nil)
            }
            for row in rows {
                let rowid: Int64 = row["sluice.rowid"]
                let value: DatabaseValue = column == "rowid" ? rowid.databaseValue : row[column] ?? .null
                var values: [String: String] = [:]
                for (name, item) in row where name != "sluice.rowid" {
                    switch item.storage {
                    case .null: continue
                    case .int64(let number): values[name] = String(number)
                    case .double(let number): values[name] = String(number)
                    case .string(let text): values[name] = text
                    case .blob(let data): values[name] = String(decoding: data, as: UTF8.self)
                    }
                }
                sequence += 1
                let next = Cursor(value: value, rowid: rowid)
                pending.withLock { $0[sequence] = next }
                cursor = next
                rowsRead.add(1, ordering: .relaxed)
                let position = SourcePosition(slot: 0, offset: sequence, line: rowid)
                if let (envelope, key) = shaper.build(values, fixed: ["id": "\(table)/\(rowid)"]) {
                    try withRawBytes(envelope) { (valueBytes) throws(ConnectorError) in
                        try withRawBytes(key ?? []) { (keyBytes) throws(ConnectorError) in
                            try emitter.send(
                                key: key == nil ? nil : keyBytes, value: valueBytes, position: position,
                                origin: [("sluice.source.table", table), ("sluice.source.rowid", "\(rowid)")])
                        }
                    }
                } else {
                    let raw = Array(values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n").utf8)
                    try withRawBytes(raw) { (bytes) throws(ConnectorError) in
                        try emitter.sendToDLQ(
                            value: bytes, reason: "missing_text", detail: "no text in column '\(shaper.inputName(of: "text"))'",
                            origin: [("sluice.source.table", table), ("sluice.source.rowid", "\(rowid)")], position: position)
                    }
                }
                if stopFlag.load(ordering: .relaxed) { break }
            }
            if rows.count < configuration.batchSize {
                if once || !configuration.follow { break }
                usleep(UInt32(configuration.pollIntervalMilliseconds) * 1000)
            }
        }
    }
}
