public import Foundation

/// The safetensors format (what Python's `safetensors` reads and writes): an 8-byte little-endian header length,
/// a JSON header mapping tensor names to dtype, shape and data offsets (plus optional string `__metadata__`), then
/// the raw little-endian tensor bytes.
public struct SafeTensors: Sendable {
    public struct Entry: Sendable, Equatable {
        public var dtype: String
        public var shape: [Int]
        /// Byte range inside the data section.
        public var range: Range<Int>
    }

    public private(set) var metadata: [String: String]
    public private(set) var entries: [String: Entry]
    private let data: Data
    private let dataStart: Int

    /// Reads and checks a safetensors file (every offset in bounds, sizes matching dtype × shape).
    public init(contentsOf url: URL) throws(TrainError) {
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw TrainError("cannot read \(url.path): \(error.localizedDescription)")
        }
        try self.init(data: data, name: url.path)
    }

    public init(data: Data, name: String = "safetensors data") throws(TrainError) {
        guard data.count >= 8 else { throw TrainError("\(name) is too short to be a safetensors file") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(data[data.startIndex + i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(data.count - 8), headerLength < 100 << 20 else {
            throw TrainError("\(name): the safetensors header length \(headerLength) exceeds the file")
        }
        let headerEnd = data.startIndex + 8 + Int(headerLength)
        guard let object = try? JSONSerialization.jsonObject(with: data[(data.startIndex + 8)..<headerEnd]) as? [String: Any]
        else { throw TrainError("\(name): the safetensors header is not a JSON object") }
        let available = data.endIndex - headerEnd
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (key, value) in object {
            if key == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let fields = value as? [String: Any], let dtype = fields["dtype"] as? String,
                let shape = fields["shape"] as? [Int], let offsets = fields["data_offsets"] as? [Int], offsets.count == 2,
                offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= available
            else { throw TrainError("\(name): tensor \(key) has a malformed header entry") }
            guard let width = Self.width(of: dtype) else { throw TrainError("\(name): tensor \(key) has unsupported dtype \(dtype)") }
            guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) * width == offsets[1] - offsets[0] else {
                throw TrainError("\(name): tensor \(key) has \(offsets[1] - offsets[0]) bytes for shape \(shape) of \(dtype)")
            }
            entries[key] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        self.entries = entries
        self.metadata = metadata
        self.data = data
        self.dataStart = headerEnd
    }

    static func width(of dtype: String) -> Int? {
        switch dtype {
        case "F64", "I64", "U64": 8
        case "F32", "I32", "U32": 4
        case "F16", "BF16", "I16", "U16": 2
        case "I8", "U8", "BOOL": 1
        default: nil
        }
    }

    /// A tensor's values as floats (F32 only).
    public func floats(_ name: String) throws(TrainError) -> [Float] {
        try values(name, dtype: "F32", as: Float.self)
    }

    /// A tensor's values as 8-bit integers (I8 only).
    public func int8s(_ name: String) throws(TrainError) -> [Int8] {
        try values(name, dtype: "I8", as: Int8.self)
    }

    /// A tensor's values as 32-bit integers (I32 only).
    public func int32s(_ name: String) throws(TrainError) -> [Int32] {
        try values(name, dtype: "I32", as: Int32.self)
    }

    private func values<T>(_ name: String, dtype: String, as: T.Type) throws(TrainError) -> [T] {
        guard let entry = entries[name] else { throw TrainError("no tensor \(name)") }
        guard entry.dtype == dtype else { throw TrainError("tensor \(name) is \(entry.dtype), not \(dtype)") }
        let count = entry.range.count / MemoryLayout<T>.stride
        let start = data.startIndex + dataStart + entry.range.lowerBound
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            data[start..<(start + entry.range.count)].withUnsafeBytes { raw in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: raw)
            }
            initialized = count
        }
    }

    /// A tensor to write: F32 values from memory that stays valid during the write.
    /// A tensor to write, from memory that stays valid during the write: F32 values or I8 values.
    public struct Source {
        public var name: String
        public var shape: [Int]
        public var dtype: String
        public var bytes: UnsafeRawBufferPointer
        public init(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) {
            self.name = name
            self.shape = shape
            dtype = "F32"
            bytes = UnsafeRawBufferPointer(values)
        }
        public init(name: String, shape: [Int], int8 values: UnsafeBufferPointer<Int8>) {
            self.name = name
            self.shape = shape
            dtype = "I8"
            bytes = UnsafeRawBufferPointer(values)
        }
    }

    /// Writes tensors atomically (temporary file, fsync, rename).
    public static func write(_ tensors: [Source], metadata: [String: String], to url: URL) throws(TrainError) {
        var header: [String: Any] = [:]
        var offset = 0
        for tensor in tensors {
            let bytes = tensor.bytes.count
            header[tensor.name] = ["dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        guard var json = try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]) else {
            throw TrainError("cannot encode a safetensors header")
        }
        while (8 + json.count) % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var file = Data(capacity: 8 + json.count + offset)
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { file.append(contentsOf: $0) }
        file.append(json)
        for tensor in tensors where tensor.bytes.count > 0 { file.append(contentsOf: tensor.bytes) }
        do {
            let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
            try file.write(to: temporary)
            let handle = try FileHandle(forWritingTo: temporary)
            try handle.synchronize()
            try handle.close()
            guard rename(temporary.path, url.path) == 0 else {
                throw TrainError("cannot rename \(temporary.path) to \(url.path): \(String(cString: strerror(errno)))")
            }
        } catch let error as TrainError {
            throw error
        } catch {
            throw TrainError("cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}
