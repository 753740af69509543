internal import Foundation

/// POSIX tar (ustar, with PAX records for long names) encoding and decoding of regular-file members.
///
/// Headers are deterministic: mode 0644, uid/gid 0, user and group `sluice`, mtime given by the caller. Member
/// data is padded to 512 bytes; an archive ends with two zero blocks.
enum Tar {
    static let block = 512

    /// Appends one member named by UTF-8 bytes (header, PAX header when the name needs one, data, padding);
    /// returns where its data starts in `output`.
    static func appendMember(
        name nameBytes: UnsafeBufferPointer<UInt8>, data: UnsafeRawBufferPointer, mtime: Int64, to output: inout [UInt8]
    ) -> Int {
        if nameBytes.count > 100 || nameBytes.contains(where: { $0 >= 0x80 }) {
            var record = Array(" path=".utf8) + nameBytes + [0x0A]
            // The length prefix counts itself: find the fixed point.
            var length = record.count + 1
            while String(length).utf8.count + record.count != length { length = String(length).utf8.count + record.count }
            record = Array(String(length).utf8) + record
            let paxName = Array("PaxHeaders/\(nameBytes.count)".utf8)
            paxName.withUnsafeBufferPointer {
                appendHeader(name: $0, size: record.count, mtime: mtime, type: UInt8(ascii: "x"), to: &output)
            }
            output.append(contentsOf: record)
            pad(&output)
        }
        appendHeader(
            name: UnsafeBufferPointer(rebasing: nameBytes.prefix(100)), size: data.count, mtime: mtime,
            type: UInt8(ascii: "0"), to: &output)
        let dataStart = output.count
        output.append(contentsOf: data)
        pad(&output)
        return dataStart
    }

    static func appendEnd(to output: inout [UInt8]) {
        output.append(contentsOf: repeatElement(0, count: 2 * block))
    }

    private static func pad(_ output: inout [UInt8]) {
        let remainder = output.count % block
        if remainder != 0 { output.append(contentsOf: repeatElement(0, count: block - remainder)) }
    }

    /// One ustar header, written in place: mode 0644, uid/gid 0, owner and group `sluice`.
    private static func appendHeader(name: UnsafeBufferPointer<UInt8>, size: Int, mtime: Int64, type: UInt8, to output: inout [UInt8]) {
        let start = output.count
        output.append(contentsOf: repeatElement(0, count: block))
        output.withUnsafeMutableBufferPointer { all in
            let header = UnsafeMutableBufferPointer(rebasing: all[start..<(start + block)])
            func put(_ text: StaticString, at offset: Int) {
                for i in 0..<text.utf8CodeUnitCount { header[offset + i] = text.utf8Start[i] }
            }
            /// `value` in octal, zero-padded to `width - 1` digits, then NUL (sizes and times fit: 8 GiB, year 2242).
            func octal(_ value: Int64, width: Int, at offset: Int) {
                var rest = UInt64(max(0, value))
                for i in stride(from: width - 2, through: 0, by: -1) {
                    header[offset + i] = UInt8(ascii: "0") + UInt8(rest & 7)
                    rest >>= 3
                }
                header[offset + width - 1] = 0
            }
            for (i, b) in name.enumerated() { header[i] = b }
            octal(0o644, width: 8, at: 100)
            octal(0, width: 8, at: 108)
            octal(0, width: 8, at: 116)
            octal(Int64(size), width: 12, at: 124)
            octal(mtime, width: 12, at: 136)
            for i in 148..<156 { header[i] = 0x20 }
            header[156] = type
            put("ustar\u{0}00", at: 257)
            put("sluice", at: 265)
            put("sluice", at: 297)
            var checksum = 0
            for b in header { checksum += Int(b) }
            octal(Int64(checksum), width: 7, at: 148)
            header[155] = 0x20
        }
    }

    /// One member read back.
    struct Member {
        var name: String
        var dataOffset: Int
        var size: Int
    }

    /// Parses the members of `bytes` (a whole archive or a frame of one), starting at `start`. Stops at the end
    /// blocks or the end of the bytes.
    /// - Throws: ``ShardError`` `.truncated`, `.corrupt` or `.unsafeMemberName`.
    static func members(_ bytes: UnsafeRawBufferPointer, base: Int = 0) throws(ShardError) -> [Member] {
        var members: [Member] = []
        var offset = 0
        var paxName: String?
        while offset + block <= bytes.count {
            let header = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + block)])
            if header.allSatisfy({ $0 == 0 }) { return members }
            let stored = parseOctal(header, 148, 8)
            var sum = 0
            for i in 0..<block { sum += (148..<156).contains(i) ? 0x20 : Int(header[i]) }
            guard stored == sum else {
                throw ShardError.make(.corrupt, "tar header at byte \(base + offset) has a bad checksum")
            }
            let size = parseOctal(header, 124, 12)
            guard size >= 0 else { throw ShardError.make(.corrupt, "tar header at byte \(base + offset) has a bad size") }
            let dataOffset = offset + block
            guard dataOffset + size <= bytes.count else {
                throw ShardError.make(.truncated, "member at byte \(base + offset) needs \(size) bytes; the file ends first")
            }
            let type = header[156]
            if type == UInt8(ascii: "x") {
                paxName = parsePaxPath(UnsafeRawBufferPointer(rebasing: bytes[dataOffset..<(dataOffset + size)]))
            } else {
                let name = paxName ?? cString(header, 0, 100)
                paxName = nil
                guard isSafe(name) else {
                    throw ShardError.make(.unsafeMemberName, "member name \"\(name.prefix(80))\" is absolute or climbs out of the archive")
                }
                if type == UInt8(ascii: "0") || type == 0 {
                    members.append(Member(name: name, dataOffset: base + dataOffset, size: size))
                }
            }
            offset = dataOffset + (size + block - 1) / block * block
        }
        // A complete archive ends with zero blocks; ending anywhere else means bytes are missing.
        throw ShardError.make(.truncated, "the archive ends at byte \(base + bytes.count) without its end-of-archive blocks")
    }

    static func isSafe(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix("/") && !name.split(separator: "/").contains("..")
    }

    private static func parseOctal(_ header: UnsafeRawBufferPointer, _ offset: Int, _ width: Int) -> Int {
        var value = 0
        var seen = false
        for i in offset..<(offset + width) {
            let b = header[i]
            if b == 0 || b == 0x20 {
                if seen { break } else { continue }
            }
            guard b >= 0x30 && b <= 0x37 else { return -1 }
            value = value * 8 + Int(b - 0x30)
            seen = true
        }
        return value
    }

    private static func cString(_ header: UnsafeRawBufferPointer, _ offset: Int, _ width: Int) -> String {
        var end = offset
        while end < offset + width && header[end] != 0 { end += 1 }
        return String(decoding: header[offset..<end], as: UTF8.self)
    }

    private static func parsePaxPath(_ data: UnsafeRawBufferPointer) -> String? {
        let text = String(decoding: data, as: UTF8.self)
        for record in text.split(separator: "\n") {
            if let range = record.range(of: " path=") { return String(record[range.upperBound...]) }
        }
        return nil
    }
}
