internal import Foundation

extension KafkaRecord {
    /// Appends this record as one JSON object and a newline to `output`:
    /// `{"topic","partition","offset","key","value","headers":[{"name","value"}],"timestamp"}`.
    ///
    /// Keys, values and header values are JSON strings when they are valid UTF-8, `{"base64": "…"}` objects
    /// otherwise, and `null` when absent (a `null` value is a tombstone). `timestamp` is milliseconds since the
    /// epoch, or `null`.
    public func appendJSONLine(to output: inout [UInt8]) {
        output.append(contentsOf: #"{"topic":"#.utf8)
        JSONText.appendString(Array(topic.utf8), to: &output)
        output.append(contentsOf: #","partition":"#.utf8)
        output.append(contentsOf: String(partition).utf8)
        output.append(contentsOf: #","offset":"#.utf8)
        output.append(contentsOf: String(offset).utf8)
        output.append(contentsOf: #","key":"#.utf8)
        JSONText.appendBytes(keyBytes, to: &output)
        output.append(contentsOf: #","value":"#.utf8)
        JSONText.appendBytes(valueBytes, to: &output)
        output.append(contentsOf: #","headers":["#.utf8)
        for (index, header) in headers.enumerated() {
            if index > 0 { output.append(UInt8(ascii: ",")) }
            output.append(contentsOf: #"{"name":"#.utf8)
            JSONText.appendString(Array(header.name.utf8), to: &output)
            output.append(contentsOf: #","value":"#.utf8)
            JSONText.appendBytes(header.value.map { $0[...] }, to: &output)
            output.append(UInt8(ascii: "}"))
        }
        output.append(contentsOf: #"],"timestamp":"#.utf8)
        if let timestamp { output.append(contentsOf: String(timestamp.milliseconds).utf8) } else { output.append(contentsOf: "null".utf8) }
        output.append(contentsOf: "}\n".utf8)
    }
}

/// Minimal JSON text writing for records (no Foundation in the per-record path except for base64).
enum JSONText {
    static func appendBytes(_ bytes: ArraySlice<UInt8>?, to output: inout [UInt8]) {
        guard let bytes else {
            output.append(contentsOf: "null".utf8)
            return
        }
        if String(validating: bytes, as: UTF8.self) != nil {
            appendString(bytes, to: &output)
        } else {
            output.append(contentsOf: #"{"base64":""#.utf8)
            output.append(contentsOf: Data(bytes).base64EncodedString().utf8)
            output.append(contentsOf: #""}"#.utf8)
        }
    }

    /// Appends valid UTF-8 as a quoted, escaped JSON string.
    static func appendString<Bytes: Collection<UInt8>>(_ bytes: Bytes, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                output.append(contentsOf: Array(#"\u00"#.utf8))
                output.append(hex[Int(byte >> 4)])
                output.append(hex[Int(byte & 0xF)])
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}
