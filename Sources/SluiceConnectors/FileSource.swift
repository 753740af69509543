internal import Foundation
internal import SluiceShards
internal import SluiceText
internal import Synchronization
internal import CXXHash

/// The `file` source: JSON Lines (plain or `.zst`), CSV, plain text and HTML from a file, a directory or a glob,
/// once or following the input like `tail -F`.
///
/// Files are known by device and inode plus a fingerprint of their first bytes, so a rotated file (renamed, a
/// new one created under the old name) is finished and then the new one read from its start; a file truncated
/// in place starts over. The checkpoint per file is `offset` (bytes of the decompressed stream consumed) and
/// `line`, taken only from records the broker acknowledged.
final class FileSource: ConnectorSource, @unchecked Sendable {
    // @unchecked: `files` is touched only by the source thread; `checkpoint` is a Mutex.
    let configuration: ConnectorConfiguration
    private var shaper: EnvelopeShaper

    struct FileState: Sendable {
        var path: String
        var device: UInt64
        var inode: UInt64
        var offset: Int64
        var line: Int64
        /// XXH64 of the first `min(offset, 256)` bytes, to recognise the same file after a restart.
        var fingerprint: UInt64
        var fingerprintLength: Int
        var done: Bool
    }

    /// The file being read and how far (bytes of the file itself, compressed or not), for the progress line.
    private let reading = Mutex<(path: String, read: Int64, size: Int64)?>(nil)

    var progressNote: String? {
        guard let (path, read, size) = reading.withLock({ $0 }), size > 0 else { return nil }
        let name = (path as NSString).lastPathComponent
        return "\(name) \(min(100, Int(read * 100 / size)))% read"
    }

    /// Acknowledged positions per slot, written to the state file.
    private let checkpoint = Mutex<[Int32: FileState]>([:])
    /// The reader's own view (ahead of the checkpoint).
    private var files: [Int32: FileState] = [:]
    private var nextSlot: Int32 = 0
    private let stopFlag = Atomic<Bool>(false)

    init(configuration: ConnectorConfiguration, state: [String: Any]) {
        self.configuration = configuration
        shaper = EnvelopeShaper(configuration: configuration)
        for entry in state["files"] as? [[String: Any]] ?? [] {
            guard let path = entry["path"] as? String, let device = entry["device"] as? UInt64 ?? (entry["device"] as? Int).map(UInt64.init),
                let inode = entry["inode"] as? UInt64 ?? (entry["inode"] as? Int).map(UInt64.init),
                let offset = entry["offset"] as? Int64 ?? (entry["offset"] as? Int).map(Int64.init),
                let line = entry["line"] as? Int64 ?? (entry["line"] as? Int).map(Int64.init)
            else { continue }
            let fingerprint = UInt64(entry["fingerprint"] as? String ?? "0", radix: 16) ?? 0
            let state = FileState(
                path: path, device: device, inode: inode, offset: offset, line: line, fingerprint: fingerprint,
                fingerprintLength: entry["fingerprint_length"] as? Int ?? 0, done: entry["done"] as? Bool ?? false)
            files[nextSlot] = state
            nextSlot += 1
        }
        checkpoint.withLock { $0 = files }
    }

    func stop() { stopFlag.store(true, ordering: .relaxed) }

    func acknowledged(_ positions: [Int32: SourcePosition]) -> [String: Any] {
        checkpoint.withLock { checkpoint in
            for (slot, position) in positions {
                guard var state = checkpoint[slot] ?? files[slot] else { continue }
                state.offset = max(state.offset, position.offset)
                state.line = max(state.line, position.line)
                checkpoint[slot] = state
            }
            return ["files": checkpoint.sorted { $0.key < $1.key }.map { _, state in
                [
                    "path": state.path, "device": state.device, "inode": state.inode, "offset": state.offset,
                    "line": state.line, "fingerprint": String(state.fingerprint, radix: 16),
                    "fingerprint_length": state.fingerprintLength, "done": state.done,
                ] as [String: Any]
            }]
        }
    }

    // MARK: Reading

    func run(emitter: Emitter, once: Bool) throws(ConnectorError) {
        // Without `follow` a file source reads its inputs once and ends, as with --once.
        let once = once || !configuration.follow
        var open: [Int32: OpenFile] = [:]
        while !stopFlag.load(ordering: .relaxed) && !emitter.isStopping {
            var progressed = false
            let paths = try resolveInputs()
            if once && paths.isEmpty && files.isEmpty {
                throw ConnectorError(reason: "no input matches \(configuration.path ?? "")", errno: nil)
            }
            for path in paths {
                guard !stopFlag.load(ordering: .relaxed) else { break }
                var info = stat()
                guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
                let slot = try slot(for: path, info: info, open: &open)
                guard let slot, var handle = open[slot] else { continue }
                if try read(&handle, slot: slot, emitter: emitter, once: once) { progressed = true }
                open[slot] = handle
            }
            // Files truncated in place (copytruncate) start over under a new slot.
            for (slot, handle) in open where !handle.isCompressed && handle.size < handle.consumed {
                handle.close()
                open[slot] = nil
                forget(slot)
                progressed = true
            }
            // Files whose path moved on (rotated away): drain them, then close.
            for (slot, handle) in open where !paths.contains(handle.path) || currentInode(handle.path) != files[slot]?.inode {
                var handle = handle
                if try read(&handle, slot: slot, emitter: emitter, once: true) { progressed = true }
                handle.close()
                open[slot] = nil
            }
            if once { break }
            if !progressed { usleep(UInt32(configuration.pollIntervalMilliseconds) * 1000) }
        }
        for (_, handle) in open { handle.close() }
    }

    private func currentInode(_ path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    /// The slot of the file at `path`, opened and positioned; `nil` when it is finished.
    private func slot(for path: String, info: stat, open: inout [Int32: OpenFile]) throws(ConnectorError) -> Int32? {
        let device = UInt64(info.st_dev)
        let inode = UInt64(info.st_ino)
        if let (slot, _) = open.first(where: { files[$0.key]?.inode == inode && files[$0.key]?.device == device }) {
            return slot
        }
        var handle = try OpenFile(path: path, format: configuration.format)
        let known = files.first { $0.value.inode == inode && $0.value.device == device }
        if let (slot, state) = known {
            if state.done { handle.close(); return nil }
            // Same file only if the bytes already read still begin it.
            let truncated = !handle.isCompressed && Int64(info.st_size) < state.offset
            if !truncated, handle.fingerprint(length: state.fingerprintLength) == state.fingerprint {
                try handle.skip(to: state.offset, line: state.line)
                files[slot]!.path = path
                open[slot] = handle
                return slot
            }
            // Truncated or replaced: a new file as far as positions go.
            forget(slot)
        }
        let slot = nextSlot
        nextSlot += 1
        files[slot] = FileState(
            path: path, device: device, inode: inode, offset: 0, line: 0, fingerprint: 0, fingerprintLength: 0, done: false)
        checkpoint.withLock { $0[slot] = files[slot] }
        open[slot] = handle
        return slot
    }

    /// Drops a file's positions: it was truncated or replaced. Late acknowledgements for the slot are ignored.
    private func forget(_ slot: Int32) {
        files[slot] = nil
        checkpoint.withLock { $0[slot] = nil }
    }

    /// Reads what is new in one file. Returns whether anything was read.
    private func read(_ handle: inout OpenFile, slot: Int32, emitter: Emitter, once: Bool) throws(ConnectorError) -> Bool {
        let before = handle.consumed
        switch configuration.format {
        case .jsonl:
            try readJSONLines(&handle, slot: slot, emitter: emitter, once: once)
        case .csv:
            var parser = handle.csv ?? CSVParser(delimiter: configuration.csvDelimiter)
            while let (record, number) = try handle.nextCSVRecord(&parser, final: once) {
                try emitCSV(record, parser: &parser, number: number, handle: handle, slot: slot, emitter: emitter)
                if stopFlag.load(ordering: .relaxed) || emitter.isStopping { break }
            }
            handle.csv = parser
        case .text where configuration.textUnit == "block":
            while let (block, number) = try handle.nextBlock(final: once) {
                try emitDocument(block, number: number, handle: handle, slot: slot, emitter: emitter)
            }
        case .text, .html:
            // One document per file, read when the file stopped changing (once: at once).
            guard let whole = try handle.wholeFile(settled: once ? 0 : configuration.pollIntervalMilliseconds * 2) else { return false }
            try emitDocument(whole, number: 1, handle: handle, slot: slot, emitter: emitter)
            files[slot]?.done = true
            checkpoint.withLock { $0[slot]?.done = true }
        }
        files[slot]?.offset = handle.consumed
        files[slot]?.line = handle.lineNumber
        if files[slot]?.fingerprintLength ?? 256 < 256 {
            let length = Int(min(Int64(256), handle.consumed))
            files[slot]?.fingerprint = handle.fingerprint(length: length)
            files[slot]?.fingerprintLength = length
            let state = files[slot]!
            checkpoint.withLock {
                $0[slot]?.fingerprint = state.fingerprint
                $0[slot]?.fingerprintLength = state.fingerprintLength
            }
        }
        return handle.consumed != before
    }

    private func origin(_ handle: OpenFile, _ number: Int64) -> [(String, String)] {
        [("sluice.source.file", handle.path), ("sluice.source.line", "\(number)")]
    }

    /// JSON Lines in three stages on three threads: a reader decompresses and cuts the stream into chunks of
    /// whole lines (about 1 MiB), a checker validates each line into a batch that points into its chunk, and this
    /// thread sends. Reading, checking and sending overlap instead of taking turns.
    private func readJSONLines(_ handle: inout OpenFile, slot: Int32, emitter: Emitter, once: Bool) throws(ConnectorError) {
        let chunks = BatchQueue<LineChunk>(capacity: 3)
        let batches = BatchQueue<JSONBatch>(capacity: 3)
        let box = OpenFileBox(handle)
        let path = handle.path
        let template = shaper
        let reader = Thread { [self] in
            var failure: ConnectorError?
            do throws(ConnectorError) {
                while !self.stopFlag.load(ordering: .relaxed), let chunk = try box.handle.nextChunk(final: once) {
                    let (read, size) = (box.handle.bytesRead, box.handle.size)
                    self.reading.withLock { $0 = (path, read, size) }
                    if !chunks.push(chunk) { break }
                }
            } catch {
                failure = error
            }
            chunks.finish(failure)
        }
        let checker = Thread {
            var shaper = template
            var failure: ConnectorError?
            do throws(ConnectorError) {
                while let chunk = chunks.pop() {
                    if !batches.push(try JSONBatch(chunk, shaper: &shaper)) { break }
                }
            } catch {
                failure = error
            }
            chunks.cancel()
            failure = chunks.waitUntilFinished() ?? failure
            batches.finish(failure)
        }
        for (thread, name) in [(reader, "sluice-file-reader"), (checker, "sluice-file-checker")] {
            thread.name = name
            thread.stackSize = 8 << 20
            thread.start()
        }
        var sendFailure: ConnectorError?
        do throws(ConnectorError) {
            while let batch = batches.pop() {
                try batch.send(slot: slot, path: path, emitter: emitter)
                if stopFlag.load(ordering: .relaxed) || emitter.isStopping { break }
            }
        } catch {
            sendFailure = error
        }
        batches.cancel()
        let readFailure = batches.waitUntilFinished()
        handle = box.handle
        if let failure = sendFailure ?? readFailure { throw failure }
    }

    private func emitCSV(
        _ record: [String], parser: inout CSVParser, number: Int64, handle: OpenFile, slot: Int32, emitter: Emitter
    ) throws(ConnectorError) {
        let position = SourcePosition(slot: slot, offset: handle.consumed, line: handle.lineNumber)
        guard let header = parser.header else {
            parser.header = record
            return
        }
        guard record.count == header.count else {
            let raw = Array(record.joined(separator: String(UnicodeScalar(configuration.csvDelimiter))).utf8)
            try withRawBytes(raw) { (bytes) throws(ConnectorError) in
                try emitter.sendToDLQ(
                    value: bytes, reason: "csv_column_count",
                    detail: "\(record.count) columns, the header has \(header.count)", origin: origin(handle, number),
                    position: position)
            }
            return
        }
        let values = Dictionary(zip(header, record), uniquingKeysWith: { first, _ in first })
        try emitBuilt(values, fixedID: "\(handle.path)#\(number)", number: number, handle: handle, position: position, emitter: emitter)
    }

    private func emitDocument(
        _ text: String, number: Int64, handle: OpenFile, slot: Int32, emitter: Emitter
    ) throws(ConnectorError) {
        let position = SourcePosition(slot: slot, offset: handle.consumed, line: handle.lineNumber)
        let id = configuration.format == .text && configuration.textUnit == "block" ? "\(handle.path)#\(number)" : handle.path
        let url = "file://" + handle.path
        try emitBuilt(["text": text], fixedID: id, url: url, number: number, handle: handle, position: position, emitter: emitter)
    }

    private func emitBuilt(
        _ values: [String: String], fixedID: String, url: String? = nil, number: Int64, handle: OpenFile,
        position: SourcePosition, emitter: Emitter
    ) throws(ConnectorError) {
        var fixed = ["id": fixedID]
        if let url { fixed["url"] = url }
        guard let (value, key) = shaper.build(values, fixed: fixed) else {
            let raw = Array(values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n").utf8)
            try withRawBytes(raw) { (bytes) throws(ConnectorError) in
                try emitter.sendToDLQ(
                    value: bytes, reason: "missing_text", detail: "no text (column '\(shaper.inputName(of: "text"))')",
                    origin: origin(handle, number), position: position)
            }
            return
        }
        try withRawBytes(value) { (valueBytes) throws(ConnectorError) in
            if let key {
                try withRawBytes(key) { (keyBytes) throws(ConnectorError) in
                    try emitter.send(key: keyBytes, value: valueBytes, position: position, origin: origin(handle, number))
                }
            } else {
                try emitter.send(key: nil, value: valueBytes, position: position, origin: origin(handle, number))
            }
        }
    }

    /// The files the configured path names now, sorted: a file, every regular file of a directory (not hidden),
    /// or the matches of a glob.
    func resolveInputs() throws(ConnectorError) -> [String] {
        let path = configuration.path ?? ""
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { return [path] }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            return names.filter { !$0.hasPrefix(".") }.sorted().map { (path as NSString).appendingPathComponent($0) }
        }
        guard path.contains(where: { "*?[".contains($0) }) else {
            if configuration.follow { return [] }
            throw ConnectorError(reason: "\(path): no such file or directory", errno: ENOENT)
        }
        var matches = glob_t()
        defer { globfree(&matches) }
        guard glob(path, 0, nil, &matches) == 0 else { return [] }
        return (0..<Int(matches.gl_pathc)).compactMap { matches.gl_pathv[$0].map { String(cString: $0) } }.sorted()
    }
}

/// One open input file with its read buffer, decompressing `.zst` as it reads.
struct OpenFile {
    let path: String
    private let descriptor: Int32
    private var decoder: ZstdStreamDecoder?
    private(set) var isCompressed = false
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEOF = false
    private var raw = [UInt8](repeating: 0, count: 1 << 20)
    /// Bytes of the (decompressed) stream consumed by complete records.
    private(set) var consumed: Int64 = 0
    /// Bytes read from the file itself (compressed when it is), for progress.
    private(set) var bytesRead: Int64 = 0
    private(set) var lineNumber: Int64 = 0
    private var head: [UInt8] = []
    var csv: CSVParser?
    private var lastSize: Int64 = -1
    private var settledSince: Date?

    init(path: String, format: ConnectorConfiguration.FileFormat) throws(ConnectorError) {
        self.path = path
        descriptor = Foundation.open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ConnectorError.system("cannot open \(path)") }
        var magic = [UInt8](repeating: 0, count: 4)
        let count = pread(descriptor, &magic, 4, 0)
        if count == 4, ZstdStreamDecoder.isZstd(magic) {
            decoder = ZstdStreamDecoder()
            isCompressed = true
        }
    }

    func close() { _ = Foundation.close(descriptor) }

    /// The file's current size on disk.
    var size: Int64 {
        var info = stat()
        return fstat(descriptor, &info) == 0 ? Int64(info.st_size) : 0
    }

    /// XXH64 of the first `length` bytes of the (decompressed) stream, read so far or read now.
    mutating func fingerprint(length: Int) -> UInt64 {
        guard length > 0 else { return 0 }
        while head.count < length, !atEOF, (try? fill()) != nil {}
        let prefix = head.prefix(length)
        return prefix.withContiguousStorageIfAvailable { XXH64($0.baseAddress, $0.count, 0) } ?? 0
    }

    /// Skips the first `offset` bytes (`line` lines) of the stream: resuming after a checkpoint.
    mutating func skip(to offset: Int64, line: Int64) throws(ConnectorError) {
        if !isCompressed {
            guard lseek(descriptor, off_t(offset), SEEK_SET) >= 0 else { throw ConnectorError.system("cannot seek in \(path)") }
            bytesRead = offset
            buffer.removeAll()
            atEOF = false
            start = 0
        } else {
            while Int64(buffer.count) < offset, !atEOF { try fill() }
            start = Int(min(offset, Int64(buffer.count)))
        }
        consumed = offset
        lineNumber = line
    }

    private mutating func fill() throws(ConnectorError) {
        if start > 0 && (start > (8 << 20) || start == buffer.count) {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        let count = raw.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { return }
            throw ConnectorError.system("cannot read \(path)")
        }
        if count == 0 {
            atEOF = true
            return
        }
        bytesRead += Int64(count)
        let before = buffer.count
        if let decoder {
            do {
                try raw.withUnsafeBytes { bytes in try decoder.decompress(UnsafeRawBufferPointer(rebasing: bytes[0..<count]), appendingTo: &buffer) }
            } catch {
                throw ConnectorError(reason: "\(path): not a valid zstd stream", errno: nil)
            }
        } else {
            buffer.append(contentsOf: raw[0..<count])
        }
        if head.count < 256 { head.append(contentsOf: buffer[before..<min(buffer.count, before + 256 - head.count)]) }
    }

    /// Clears the end-of-file mark so that a followed file is read again.
    private mutating func rearm() { atEOF = false }

    /// The next complete line (without `\n`) and its 1-based number; at the end a last line without `\n` only
    /// when `final`. The bytes are valid until the next call.
    mutating func nextLine(final: Bool) throws(ConnectorError) -> (UnsafeBufferPointer<UInt8>, Int64)? {
        var scanFrom = start
        while true {
            let found: Int? = buffer.withUnsafeBytes { bytes in
                guard scanFrom < bytes.count, let hit = memchr(bytes.baseAddress! + scanFrom, 0x0A, bytes.count - scanFrom) else { return nil }
                return bytes.baseAddress!.distance(to: UnsafeRawPointer(hit))
            }
            if let found {
                let range = start..<found
                start = found + 1
                consumed += Int64(range.count + 1)
                lineNumber += 1
                return (buffer.withUnsafeBufferPointer { UnsafeBufferPointer(rebasing: $0[range]) }, lineNumber)
            }
            scanFrom = buffer.count
            if atEOF {
                if isCompressed, let decoder, !decoder.atFrameEnd {
                    throw ConnectorError(reason: "\(path): the zstd stream ends in the middle of a frame (truncated file?)", errno: nil)
                }
                if final && start < buffer.count {
                    let range = start..<buffer.count
                    start = buffer.count
                    consumed += Int64(range.count)
                    lineNumber += 1
                    return (buffer.withUnsafeBufferPointer { UnsafeBufferPointer(rebasing: $0[range]) }, lineNumber)
                }
                rearm()
                return nil
            }
            let kept = scanFrom - start
            try fill()
            scanFrom = start + kept
        }
    }

    /// The next run of whole lines, about `size` bytes (more when one line is longer), copied out of the buffer;
    /// at the end a last line without `\n` only when `final`.
    mutating func nextChunk(final: Bool, size: Int = 1 << 20) throws(ConnectorError) -> LineChunk? {
        while buffer.count - start < size && !atEOF { try fill() }
        let available = buffer.count - start
        guard available > 0 else {
            rearm()
            return nil
        }
        var end: Int? = buffer.withUnsafeBytes { bytes in
            var index = start + min(available, size)
            while index > start {
                index -= 1
                if bytes[index] == 0x0A { return index + 1 }
            }
            return nil
        }
        if end == nil {
            // One line longer than `size`: read on until its end.
            var scanned = start + min(available, size)
            while end == nil {
                end = buffer.withUnsafeBytes { bytes in
                    guard scanned < bytes.count, let hit = memchr(bytes.baseAddress! + scanned, 0x0A, bytes.count - scanned) else { return nil }
                    return bytes.baseAddress!.distance(to: UnsafeRawPointer(hit)) + 1
                }
                if end != nil { break }
                if atEOF {
                    if isCompressed, let decoder, !decoder.atFrameEnd {
                        throw ConnectorError(reason: "\(path): the zstd stream ends in the middle of a frame (truncated file?)", errno: nil)
                    }
                    guard final else {
                        rearm()
                        return nil
                    }
                    end = buffer.count
                    break
                }
                scanned = buffer.count
                let kept = scanned - start
                try fill()
                scanned = start + kept
            }
        }
        let chunkEnd = end!
        let data = Array(buffer[start..<chunkEnd])
        let lines = data.withUnsafeBytes { bytes -> Int64 in
            var count: Int64 = 0
            var position = 0
            while position < bytes.count, let hit = memchr(bytes.baseAddress! + position, 0x0A, bytes.count - position) {
                count += 1
                position = bytes.baseAddress!.distance(to: UnsafeRawPointer(hit)) + 1
            }
            return count + (data.last == 0x0A ? 0 : 1)
        }
        let chunk = LineChunk(data: data, offset: consumed, lineBefore: lineNumber)
        start = chunkEnd
        consumed += Int64(data.count)
        lineNumber += lines
        return chunk
    }

    /// The next CSV record (fields may span lines inside quotes) and the number of the line it starts on.
    mutating func nextCSVRecord(_ parser: inout CSVParser, final: Bool) throws(ConnectorError) -> ([String], Int64)? {
        let savedStart = start
        let savedConsumed = consumed
        let savedLine = lineNumber
        var lines: [UInt8] = []
        let first = lineNumber + 1
        while let (line, _) = try nextLine(final: final) {
            if !lines.isEmpty { lines.append(0x0A) }
            lines.append(contentsOf: line)
            if let record = parser.parse(lines) { return (record, first) }
        }
        if !lines.isEmpty {
            if final { return (parser.parse(lines, atEnd: true) ?? [], first) }
            // An unfinished quoted field: wait for more of the file.
            start = savedStart
            consumed = savedConsumed
            lineNumber = savedLine
        }
        return nil
    }

    /// The next blank-line-separated block of text and the number of its first line.
    mutating func nextBlock(final: Bool) throws(ConnectorError) -> (String, Int64)? {
        let savedStart = start
        let savedConsumed = consumed
        let savedLine = lineNumber
        var block: [UInt8] = []
        var first: Int64 = 0
        while let (line, number) = try nextLine(final: final) {
            let blank = line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
            if blank {
                if !block.isEmpty { return (String(decoding: block, as: UTF8.self), first) }
                continue
            }
            if block.isEmpty { first = number } else { block.append(0x0A) }
            block.append(contentsOf: line)
        }
        if !block.isEmpty {
            if final { return (String(decoding: block, as: UTF8.self), first) }
            start = savedStart
            consumed = savedConsumed
            lineNumber = savedLine
        }
        return nil
    }

    /// The whole file once its size stopped changing for `settled` milliseconds (64 MiB at most).
    mutating func wholeFile(settled: Int) throws(ConnectorError) -> String? {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw ConnectorError.system("cannot stat \(path)") }
        if settled > 0 {
            if Int64(info.st_size) != lastSize {
                lastSize = Int64(info.st_size)
                settledSince = Date()
                return nil
            }
            guard let since = settledSince, -since.timeIntervalSinceNow * 1000 >= Double(settled) else { return nil }
        }
        while !atEOF {
            try fill()
            if buffer.count > 64 << 20 { throw ConnectorError(reason: "\(path) is larger than 64 MiB; split it", errno: nil) }
        }
        let text = String(decoding: buffer[start...], as: UTF8.self)
        consumed += Int64(buffer.count - start)
        lineNumber += Int64(buffer[start...].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) })
        start = buffer.count
        return text
    }
}

/// RFC 4180 CSV: quoted fields with `""` escapes and embedded delimiters and newlines.
struct CSVParser {
    let delimiter: UInt8
    var header: [String]?

    init(delimiter: UInt8) {
        self.delimiter = delimiter
    }

    /// The fields of `record`, or `nil` when it ends inside a quoted field (more lines needed) and not `atEnd`.
    func parse(_ record: [UInt8], atEnd: Bool = false) -> [String]? {
        var fields: [String] = []
        var field: [UInt8] = []
        var quoted = false
        var index = 0
        var bytes = record
        if bytes.last == 0x0D { bytes.removeLast() }
        while index < bytes.count {
            let byte = bytes[index]
            if quoted {
                if byte == 0x22 {
                    if index + 1 < bytes.count && bytes[index + 1] == 0x22 {
                        field.append(0x22)
                        index += 1
                    } else {
                        quoted = false
                    }
                } else {
                    field.append(byte)
                }
            } else if byte == 0x22 && field.isEmpty {
                quoted = true
            } else if byte == delimiter {
                fields.append(String(decoding: field, as: UTF8.self))
                field.removeAll(keepingCapacity: true)
            } else {
                field.append(byte)
            }
            index += 1
        }
        if quoted && !atEnd { return nil }
        fields.append(String(decoding: field, as: UTF8.self))
        return fields
    }
}

/// Whole lines cut from a file's stream: `data` ends with the last line's `\n` (or the file's end).
struct LineChunk: Sendable {
    var data: [UInt8]
    /// Stream offset of `data[0]`.
    var offset: Int64
    /// Number of the line before the first one in `data`.
    var lineBefore: Int64
}

/// Checked JSON lines ready to send: values point into the chunk, or into `rewritten` when the shaper changed
/// them.
struct JSONBatch: Sendable {
    struct Entry: Sendable {
        var value: Range<Int>
        var inChunk: Bool
        var key: Range<Int>?
        var line: Int64
        /// Stream offset just after the line: the checkpoint once it is acknowledged.
        var consumed: Int64
        var bad: (reason: String, detail: String)?
    }

    var chunk: [UInt8]
    /// Rewritten values and every key.
    var extra: [UInt8] = []
    var entries: [Entry] = []

    init(_ lines: LineChunk, shaper: inout EnvelopeShaper) throws(ConnectorError) {
        chunk = lines.data
        entries.reserveCapacity(1024)
        var line = lines.lineBefore
        var start = 0
        let count = chunk.count
        var extra: [UInt8] = []
        var entries: [Entry] = []
        entries.reserveCapacity(1024)
        try withRawBytes(chunk) { (raw) throws(ConnectorError) in
            let bytes = raw.bindMemory(to: UInt8.self)
            while start < count {
                let end = memchr(raw.baseAddress! + start, 0x0A, count - start).map { raw.baseAddress!.distance(to: UnsafeRawPointer($0)) } ?? count
                line += 1
                let consumed = lines.offset + Int64(min(end + 1, count))
                let text = UnsafeBufferPointer(rebasing: bytes[start..<end])
                defer { start = end + 1 }
                if text.isEmpty || (text.count == 1 && text[0] == 0x0D) { continue }
                var entry = Entry(value: start..<end, inChunk: true, key: nil, line: line, consumed: consumed, bad: nil)
                let outcome = try shaper.shapeJSON(text) { (keyBytes, valueBytes) throws(ConnectorError) in
                    if valueBytes.baseAddress != UnsafeRawPointer(text.baseAddress) || valueBytes.count != text.count {
                        let valueStart = extra.count
                        extra.append(contentsOf: valueBytes)
                        entry.value = valueStart..<extra.count
                        entry.inChunk = false
                    }
                    if let keyBytes {
                        let keyStart = extra.count
                        extra.append(contentsOf: keyBytes)
                        entry.key = keyStart..<extra.count
                    }
                }
                if case .bad(let reason, let detail) = outcome { entry.bad = (reason, detail) }
                entries.append(entry)
            }
        }
        self.extra = extra
        self.entries = entries
    }

    /// Sends every entry (bad lines to the DLQ with file and line): good records in runs through one producer
    /// call each when the emitter allows it, one by one otherwise.
    func send(slot: Int32, path: String, emitter: Emitter) throws(ConnectorError) {
        let batching = emitter.sendsBatches
        try withRawBytes(chunk) { (chunk) throws(ConnectorError) in
            try withRawBytes(extra) { (extra) throws(ConnectorError) in
                var run: [(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, position: SourcePosition)] = []
                run.reserveCapacity(entries.count)
                for entry in entries {
                    let position = SourcePosition(slot: slot, offset: entry.consumed, line: entry.line)
                    let value = UnsafeRawBufferPointer(rebasing: (entry.inChunk ? chunk : extra)[entry.value])
                    let key = entry.key.map { UnsafeRawBufferPointer(rebasing: extra[$0]) }
                    if batching, entry.bad == nil, emitter.fits(key: key, value: value) {
                        run.append((key, value, position))
                        continue
                    }
                    // Keep send order: what is queued goes first.
                    try emitter.sendBatch(run)
                    run.removeAll(keepingCapacity: true)
                    if let (reason, detail) = entry.bad {
                        try emitter.sendToDLQ(
                            value: value, reason: reason, detail: detail,
                            origin: [("sluice.source.file", path), ("sluice.source.line", "\(entry.line)")], position: position)
                    } else {
                        try emitter.send(
                            key: key, value: value, position: position,
                            origin: [("sluice.source.file", path), ("sluice.source.line", "\(entry.line)")])
                    }
                }
                try emitter.sendBatch(run)
            }
        }
    }
}

/// Moves an ``OpenFile`` to the reader thread and back.
final class OpenFileBox: @unchecked Sendable {
    // @unchecked: used by one thread at a time (the reader, then after it finished the caller).
    var handle: OpenFile
    init(_ handle: OpenFile) { self.handle = handle }
}

/// A bounded hand-off between one producing and one consuming thread.
final class BatchQueue<Element: Sendable>: @unchecked Sendable {
    // @unchecked: every access holds `condition`.
    private let condition = NSCondition()
    private var items: [Element] = []
    private let capacity: Int
    private var finished = false
    private var cancelled = false
    private var failure: ConnectorError?

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Adds an element, waiting for room; false when the consumer cancelled.
    func push(_ item: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while items.count >= capacity && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// The next element, or nil once the producer finished and everything was taken.
    func pop() -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !finished { condition.wait() }
        guard !items.isEmpty else { return nil }
        condition.broadcast()
        return items.removeFirst()
    }

    /// The producer is done (with an error, if any).
    func finish(_ error: ConnectorError?) {
        condition.lock()
        defer { condition.unlock() }
        finished = true
        failure = error
        condition.broadcast()
    }

    /// The consumer stops taking; a waiting producer returns.
    func cancel() {
        condition.lock()
        defer { condition.unlock() }
        cancelled = true
        condition.broadcast()
    }

    /// Waits for the producer to finish and returns its error.
    func waitUntilFinished() -> ConnectorError? {
        condition.lock()
        defer { condition.unlock() }
        while !finished { condition.wait() }
        return failure
    }
}
