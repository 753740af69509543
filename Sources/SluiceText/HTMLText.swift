internal import Foundation

/// HTML to plain text on UTF-8 bytes: tags removed, `<script>`/`<style>` and other dropped elements removed with
/// their content, character references decoded, block elements turned into line breaks.
///
/// Only known HTML element names count as tags, so `a < b`, `#include <stdio.h>` or `List<T>` in plain text stay as
/// written. A `<` that never closes (no `>` within 4 KiB) is text. Whitespace inside the source (outside `<pre>`)
/// becomes a space, as a browser renders it; the whitespace step collapses the runs later.
struct HTMLText: Sendable {
    enum TagKind: UInt8 {
        case inline, block, paragraph, lineBreak, cell, preformatted, dropped
    }

    private let tags: [UInt64: TagKind]

    /// Longest attribute section searched for the closing `>`.
    private static let maximumTagLength = 4096

    init(droppedElements: Set<String>) {
        var tags: [UInt64: TagKind] = [:]
        for name in Self.blockNames { tags[Self.packName(Array(name.utf8))] = .block }
        for name in Self.paragraphNames { tags[Self.packName(Array(name.utf8))] = .paragraph }
        for name in Self.inlineNames { tags[Self.packName(Array(name.utf8))] = .inline }
        tags[Self.packName(Array("br".utf8))] = .lineBreak
        tags[Self.packName(Array("td".utf8))] = .cell
        tags[Self.packName(Array("th".utf8))] = .cell
        tags[Self.packName(Array("pre".utf8))] = .preformatted
        tags[Self.packName(Array("textarea".utf8))] = .preformatted
        for name in droppedElements { tags[Self.packName(Array(name.lowercased().utf8))] = .dropped }
        self.tags = tags
    }

    /// Whether the text is an HTML document or fragment: it starts with markup (after whitespace, a BOM or
    /// terminal escapes), or known tags are dense (at least two, one per 200 bytes). Prose and manuals that quote
    /// a few tags (`<html><head><title>` in a CGI tutorial) stay as written.
    func looksLikeHTML(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = bytes.count
        var i = 0
        while i < n {
            let b = bytes[i]
            if ByteClass.isSpace(b) {
                i += 1
            } else if b == 0xEF && i + 2 < n && bytes[i + 1] == 0xBB && bytes[i + 2] == 0xBF {
                i += 3
            } else if b == 0x1B {
                i += 1
                while i < n && !ByteClass.isLetter(bytes[i]) { i += 1 }
                i += 1
            } else {
                break
            }
        }
        if i < n && bytes[i] == UInt8(ascii: "<") && parseTag(bytes, at: i) != nil { return true }
        var found = 0
        i = 0
        while i < n {
            guard let lt = indexOf(UInt8(ascii: "<"), in: bytes, from: i) else { break }
            if let tag = parseTag(bytes, at: lt) {
                found += 1
                i = tag.end
            } else {
                i = lt + 1
            }
        }
        return found >= 2 && found * 200 >= n
    }

    /// Appends the text content of `bytes` to `output`.
    func convert(_ bytes: UnsafeBufferPointer<UInt8>, into output: inout [UInt8]) {
        let n = bytes.count
        var i = 0
        var preformatted = 0
        while i < n {
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "<"):
                guard let tag = parseTag(bytes, at: i) else {
                    output.append(b)
                    i += 1
                    continue
                }
                switch tag.kind {
                case nil, .inline?:
                    break
                case .block?:
                    if !tag.closing { output.append(0x0A) }  // </li><li> is one line break, not a blank line
                case .paragraph?:
                    output.append(0x0A)
                    output.append(0x0A)
                case .lineBreak?:
                    output.append(0x0A)
                case .cell?:
                    output.append(0x20)
                case .preformatted?:
                    output.append(0x0A)
                    output.append(0x0A)
                    preformatted = max(0, preformatted + (tag.closing ? -1 : 1))
                case .dropped?:
                    output.append(0x0A)
                    if !tag.closing && !tag.selfClosing {
                        i = endOfElement(bytes, name: tag.nameRange, from: tag.end)
                        continue
                    }
                }
                i = tag.end
            case UInt8(ascii: "&"):
                if let (scalar, length) = decodeReference(bytes, at: i) {
                    if scalar != 0 { appendUTF8(scalar, to: &output) }
                    i += length
                } else {
                    output.append(b)
                    i += 1
                }
            case 0x0A, 0x0D, 0x09:
                output.append(preformatted > 0 ? b : 0x20)
                i += 1
            default:
                var j = i + 1
                while j < n {
                    let c = bytes[j]
                    if c == UInt8(ascii: "<") || c == UInt8(ascii: "&") || c == 0x0A || c == 0x0D || c == 0x09 { break }
                    j += 1
                }
                output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[i..<j]))
                i = j
            }
        }
    }

    struct Tag {
        var end: Int
        /// nil for comments, doctypes and processing instructions.
        var kind: TagKind?
        var closing: Bool
        var selfClosing: Bool
        var nameRange: Range<Int>
    }

    /// Parses the markup construct starting at `<`; nil when it is not a known tag (then `<` is text).
    func parseTag(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int) -> Tag? {
        let n = bytes.count
        var j = start + 1
        guard j < n else { return nil }
        if bytes[j] == UInt8(ascii: "!") {
            if j + 2 < n && bytes[j + 1] == UInt8(ascii: "-") && bytes[j + 2] == UInt8(ascii: "-") {
                // A comment runs to `-->`; an unterminated one hides the rest, as in a browser.
                let end = find(Array("-->".utf8), in: bytes, from: j + 3).map { $0 + 3 } ?? n
                return Tag(end: end, kind: nil, closing: false, selfClosing: true, nameRange: j..<j)
            }
            guard j + 1 < n, ByteClass.isLetter(bytes[j + 1]) || bytes[j + 1] == UInt8(ascii: "[") else { return nil }
            guard let gt = indexOf(UInt8(ascii: ">"), in: bytes, from: j, limit: Self.maximumTagLength) else { return nil }
            return Tag(end: gt + 1, kind: nil, closing: false, selfClosing: true, nameRange: j..<j)
        }
        if bytes[j] == UInt8(ascii: "?") {
            guard let gt = indexOf(UInt8(ascii: ">"), in: bytes, from: j, limit: Self.maximumTagLength) else { return nil }
            return Tag(end: gt + 1, kind: nil, closing: false, selfClosing: true, nameRange: j..<j)
        }
        var closing = false
        if bytes[j] == UInt8(ascii: "/") {
            closing = true
            j += 1
        }
        let nameStart = j
        guard j < n, ByteClass.isLetter(bytes[j]) else { return nil }
        while j < n && ByteClass.isAlnum(bytes[j]) && j - nameStart < 12 { j += 1 }
        guard j < n else { return nil }
        let after = bytes[j]
        guard after == UInt8(ascii: ">") || after == UInt8(ascii: "/") || ByteClass.isSpace(after) else { return nil }
        guard let kind = tags[Self.packName(bytes, nameStart..<j)] else { return nil }
        // Find the closing `>`, skipping quoted attribute values.
        var k = j
        let limit = min(n, start + Self.maximumTagLength)
        while k < limit {
            let c = bytes[k]
            if c == UInt8(ascii: ">") {
                let selfClosing = k > j && bytes[k - 1] == UInt8(ascii: "/")
                return Tag(end: k + 1, kind: kind, closing: closing, selfClosing: selfClosing, nameRange: nameStart..<j)
            }
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                guard let close = indexOf(c, in: bytes, from: k + 1, limit: Self.maximumTagLength) else { return nil }
                k = close + 1
                continue
            }
            k += 1
        }
        return nil
    }

    /// The index just past `</name …>` (case-insensitive), or the end of the text when the element never closes.
    private func endOfElement(_ bytes: UnsafeBufferPointer<UInt8>, name: Range<Int>, from start: Int) -> Int {
        let n = bytes.count
        var i = start
        while let lt = indexOf(UInt8(ascii: "<"), in: bytes, from: i) {
            var j = lt + 1
            if j < n && bytes[j] == UInt8(ascii: "/") {
                j += 1
                var matches = j + name.count <= n
                var k = 0
                while matches && k < name.count {
                    matches = ByteClass.lower(bytes[j + k]) == ByteClass.lower(bytes[name.lowerBound + k])
                    k += 1
                }
                if matches {
                    let after = j + name.count
                    if after == n || !ByteClass.isAlnum(bytes[after]) {
                        return indexOf(UInt8(ascii: ">"), in: bytes, from: after).map { $0 + 1 } ?? n
                    }
                }
            }
            i = lt + 1
        }
        return n
    }

    /// Decodes `&name;`, `&#123;` or `&#x1F600;` at `start`: the scalar (0 for a NUL, which is dropped) and the
    /// reference length, or nil when this `&` is plain text.
    func decodeReference(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int) -> (UInt32, Int)? {
        let n = bytes.count
        var j = start + 1
        guard j < n else { return nil }
        if bytes[j] == UInt8(ascii: "#") {
            j += 1
            var hex = false
            if j < n && (bytes[j] | 0x20) == UInt8(ascii: "x") {
                hex = true
                j += 1
            }
            let digitsStart = j
            var value: UInt32 = 0
            while j < n && j - digitsStart < 8 {
                let b = bytes[j]
                if hex, let v = ByteClass.hexValue(b) {
                    value = value &* 16 &+ UInt32(v)
                } else if !hex && ByteClass.isDigit(b) {
                    value = value &* 10 &+ UInt32(b &- 0x30)
                } else {
                    break
                }
                j += 1
            }
            guard j > digitsStart else { return nil }
            if j < n && bytes[j] == UInt8(ascii: ";") { j += 1 }
            if value > 0x10FFFF || (0xD800...0xDFFF).contains(value) { value = 0xFFFD }
            return (value, j - start)
        }
        let nameStart = j
        while j < n && ByteClass.isAlnum(bytes[j]) && j - nameStart <= 8 { j += 1 }
        guard j < n, bytes[j] == UInt8(ascii: ";"), j > nameStart, j - nameStart <= 8 else { return nil }
        guard let scalar = HTMLEntities.table[Self.packName(bytes, nameStart..<j, lowercase: false)] else {
            return nil
        }
        // A no-break space from markup is layout, not content.
        return (scalar == 0xA0 ? 0x20 : scalar, j + 1 - start)
    }

    static func packName(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, lowercase: Bool = true) -> UInt64 {
        var key: UInt64 = 0
        for i in range.prefix(8) { key = key << 8 | UInt64(lowercase ? ByteClass.lower(bytes[i]) : bytes[i]) }
        return key | UInt64(range.count) << 59
    }

    static func packName(_ name: [UInt8]) -> UInt64 {
        name.withUnsafeBufferPointer { packName($0, 0..<$0.count) }
    }

    /// Elements that end a line.
    private static let blockNames = [
        "li", "dt", "dd", "tr", "thead", "tbody", "tfoot", "caption", "option", "summary", "legend", "figcaption",
        "menu", "hgroup", "search", "dialog", "nav", "footer",
    ]
    /// Elements that end a paragraph (a blank line).
    private static let paragraphNames = [
        "html", "head", "body", "title", "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table",
        "section", "article", "header", "main", "aside", "blockquote", "hr", "address", "figure", "form", "fieldset",
        "details", "center",
    ]
    private static let inlineNames = [
        "a", "span", "b", "i", "u", "em", "strong", "small", "sub", "sup", "code", "kbd", "samp", "var", "abbr",
        "cite", "q", "mark", "s", "del", "ins", "font", "time", "label", "img", "meta", "link", "base", "input",
        "button", "wbr", "tt", "big", "bdi", "bdo", "data", "dfn", "ruby", "rt", "rp", "picture", "source", "video",
        "audio", "canvas", "map", "area", "col", "colgroup", "optgroup", "output", "progress", "meter", "strike",
        "nobr", "embed", "track",
    ]
}

/// First index of `byte` at or after `start`, looking at most `limit` bytes (memchr: vectorized).
func indexOf(_ byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>, from start: Int, limit: Int = .max) -> Int? {
    let end = limit == .max ? bytes.count : min(bytes.count, start + limit)
    guard start < end, let base = bytes.baseAddress else { return nil }
    guard let hit = memchr(base + start, Int32(byte), end - start) else { return nil }
    return base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
}

/// First index of `needle` at or after `start`.
func find(_ needle: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
    guard let first = needle.first, bytes.count >= needle.count else { return nil }
    var i = start
    let last = bytes.count - needle.count
    while i <= last {
        guard let hit = indexOf(first, in: bytes, from: i, limit: last - i + 1) else { return nil }
        var k = 1
        while k < needle.count && bytes[hit + k] == needle[k] { k += 1 }
        if k == needle.count { return hit }
        i = hit + 1
    }
    return nil
}
