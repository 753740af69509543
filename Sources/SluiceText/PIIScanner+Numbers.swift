/// A run of digits inside a number token, with the separator before it.
struct NumberGroup: Sendable {
    var start: Int
    var end: Int
    /// The byte between the previous group and this one (0 for the first group).
    var separator: UInt8
    /// Written in parentheses: `(010)`, `(0)`.
    var parenthesized: Bool
    var count: Int { end - start }
}

extension PIIScanner {
    /// Reads the number token at `start` (digits in groups joined by single spaces, dashes or dots, an optional
    /// leading `+`, parenthesized groups, a trailing `X` for Chinese IDs), classifies it, and appends findings.
    /// Returns the token end when the token was consumed (with or without findings), nil when `start` does not
    /// begin a number token.
    mutating func numberToken(
        _ bytes: UnsafeBufferPointer<UInt8>, at start: Int, lastEnd: Int, findings: inout [PIIFinding]
    ) -> Int? {
        let n = bytes.count
        var j = start
        var plus = false
        // Most numbers in text are one short group ("2019", "10:30", "$25"): fewer than nine digits alone are no
        // identifier of any kind, so neither groups nor checks are needed. What follows must not continue the token.
        if ByteClass.isDigit(bytes[j]) {
            var end = j + 1
            while end < n && end - j < 9 && ByteClass.isDigit(bytes[end]) { end += 1 }
            if end - j < 9 && !continuesNumber(bytes, at: end) { return end }
        }
        if bytes[j] == UInt8(ascii: "+") {
            guard j + 1 < n, ByteClass.isDigit(bytes[j + 1]) else { return nil }
            plus = true
            j += 1
        }
        groups.removeAll(keepingCapacity: true)
        var separator: UInt8 = 0
        while j < n {
            if groups.count == 16 {
                // A longer chain is no single value: keep the part up to its last space, scan the rest again.
                guard let cut = groups.lastIndex(where: { $0.separator == 0x20 }) else { return nil }
                groups.removeSubrange(cut...)
                break
            }
            var parenthesized = false
            if bytes[j] == UInt8(ascii: "(") {
                parenthesized = true
                j += 1
            }
            let groupStart = j
            while j < n && ByteClass.isDigit(bytes[j]) && j - groupStart < 20 { j += 1 }
            if j == groupStart || (j < n && ByteClass.isDigit(bytes[j])) {
                if groups.isEmpty { return nil }
                break  // the separator before this group is not part of the token
            }
            var groupEnd = j
            if parenthesized {
                guard j < n, bytes[j] == UInt8(ascii: ")") else {
                    if groups.isEmpty { return nil }
                    break
                }
                j += 1
            }
            // A Chinese ID may end in X.
            if j < n && (bytes[j] == UInt8(ascii: "X") || bytes[j] == UInt8(ascii: "x")) && groupEnd - groupStart == 17 {
                j += 1
                groupEnd = j
            }
            groups.append(NumberGroup(start: groupStart, end: groupEnd, separator: separator, parenthesized: parenthesized))
            guard j + 1 < n else { break }
            let s = bytes[j]
            if continuesNumber(bytes, at: j) {
                separator = s
                j += 1
            } else if parenthesized && ByteClass.isDigit(s) {
                separator = 0  // "(0)170": the group after the parentheses is glued on
            } else {
                break
            }
        }
        // Glued to letters or an identifier on the right ("2389ms", "123abc"): the last space-separated part is
        // not a number of its own; without an earlier part, neither is the token.
        if let last = groups.last, isGluedOnTheRight(bytes, at: last.end + (last.parenthesized ? 1 : 0)) {
            guard let cut = groups.lastIndex(where: { $0.separator == 0x20 }) else { return nil }
            groups.removeSubrange(cut...)
        }
        let end = groups.last!.end + (groups.last!.parenthesized ? 1 : 0)
        classifyGroups(bytes, plus: plus, tokenStart: start, findings: &findings)
        return end
    }

    /// Whether the separator at `i` (a space, `-` or `.`) joins the next group to the token: a digit follows it,
    /// or, after a space, a parenthesized group.
    private func continuesNumber(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> Bool {
        guard i + 1 < bytes.count else { return false }
        let s = bytes[i]
        let next = bytes[i + 1]
        let continues = ByteClass.isDigit(next) || (next == UInt8(ascii: "(") && s == 0x20)
        return (s == 0x20 || s == UInt8(ascii: "-") || s == UInt8(ascii: ".")) && continues
    }

    /// 4-4-4-4(-…) with one separator, 13–19 digits.
    private func isCardShaped() -> Bool {
        guard groups.count >= 4, groups.count <= 5 else { return false }
        let separator = groups[1].separator
        var total = 0
        for (index, group) in groups.enumerated() {
            if index > 0 && group.separator != separator { return false }
            if index < groups.count - 1 && group.count != 4 { return false }
            total += group.count
        }
        return total >= 13 && total <= 19
    }

    private func isGluedOnTheRight(_ bytes: UnsafeBufferPointer<UInt8>, at end: Int) -> Bool {
        guard end < bytes.count else { return false }
        let c = bytes[end]
        if ByteClass.isWordByte(c) || c == UInt8(ascii: "@") { return true }
        return (c == UInt8(ascii: "-") || c == UInt8(ascii: ".")) && end + 1 < bytes.count
            && ByteClass.isLetter(bytes[end + 1])
    }

    /// Tries the whole token first, then shorter spans that start and end at space separators ("10.1.2.3 22",
    /// "13987426658 13987426658"). A token shaped like a card number is one value or none: "5993 0969 7720 0088"
    /// is a card number that fails Luhn, not a landline inside it.
    private mutating func classifyGroups(
        _ bytes: UnsafeBufferPointer<UInt8>, plus: Bool, tokenStart: Int, findings: inout [PIIFinding]
    ) {
        let count = groups.count
        let splittable = groups.dropFirst().contains { $0.separator == 0x20 } && !isCardShaped()
        var first = 0
        while first < count {
            var matched = false
            var last = count
            while last > first {
                if last == count || (splittable && groups[last].separator == 0x20) {
                    let leadingPlus = plus && first == 0
                    if let kind = classify(bytes, first..<last, plus: leadingPlus) {
                        var lower = groups[first].start - (groups[first].parenthesized ? 1 : 0)
                        if leadingPlus { lower = tokenStart }
                        let upper = groups[last - 1].end + (groups[last - 1].parenthesized ? 1 : 0)
                        if isEnabled(kind) { findings.append(PIIFinding(kind: kind, range: lower..<upper)) }
                        first = last
                        matched = true
                        break
                    }
                }
                last -= 1
            }
            if !matched {
                if !splittable { return }
                first += 1
                while first < count && groups[first].separator != 0x20 { first += 1 }
            }
        }
    }

    private mutating func classify(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, plus: Bool) -> PIIKind? {
        digits.removeAll(keepingCapacity: true)
        for g in range {
            for i in groups[g].start..<groups[g].end { digits.append(bytes[i]) }
        }
        let d = digits[...]
        let total = d.count
        let count = range.count
        let first = groups[range.lowerBound]
        var separators: UInt8 = 0  // the one separator used between groups, or 0xFF when mixed
        for g in range.dropFirst() {
            let s = groups[g].separator
            if separators == 0 { separators = s } else if separators != s { separators = 0xFF }
        }
        let anyParentheses = range.contains { groups[$0].parenthesized }

        // IPv4: four dotted numbers 0–255 without leading zeros, not in a version context.
        if count == 4 && separators == UInt8(ascii: ".") && !plus && !anyParentheses {
            for g in range {
                let group = groups[g]
                guard group.count <= 3, group.count == 1 || bytes[group.start] != UInt8(ascii: "0"),
                    number(bytes, group) <= 255
                else { return nil }
            }
            // Loopback, "this network", multicast, reserved and netmasks (255.…) identify no one.
            let firstOctet = number(bytes, first)
            if firstOctet == 0 || firstOctet == 127 || firstOctet >= 224 { return nil }
            return isVersionContext(bytes, before: first.start) ? nil : .ipv4
        }
        if separators == UInt8(ascii: ".") && count != 3 { return nil }

        if plus {
            // E.164: country code and subscriber number, 8–15 digits; a "(0)" trunk prefix does not count.
            let trunk = range.contains { groups[$0].parenthesized && groups[$0].count == 1 } ? 1 : 0
            let significant = total - trunk
            guard significant >= 8 && significant <= 15, count > 1 || total >= 10 else { return nil }
            return .phone
        }
        if count == 1 {
            let last = bytes[first.end - 1]
            if total == 18 && (ByteClass.isDigit(last) || last | 0x20 == UInt8(ascii: "x")) {
                return Checksums.isChineseID(d) ? .cnID : nil
            }
            guard d.allSatisfy(ByteClass.isDigit) else { return nil }
            if total >= 13 && total <= 19 {
                if Checksums.hasCardIssuerPrefix(d) && Checksums.luhn(d) { return .bankCard }
                if total == 15 && d.starts(with: "0086".utf8) && isChineseMobile(d.dropFirst(4)) { return .phone }
                return nil
            }
            if total == 11 { return isChineseMobile(d) ? .phone : nil }
            if total == 9 {
                return isSSN(d) && hasSSNContext(bytes, before: first.start) ? .ssn : nil
            }
            return nil
        }
        guard separators != 0xFF || anyParentheses else { return nil }
        let lengths = range.map { groups[$0].count }

        // Payment cards: 4-4-4-4(-3), 6-13 (UnionPay), 4-6-5 (Amex), 4-6-4 (Diners), with one separator.
        if total >= 13 && total <= 19 && !anyParentheses && (separators == 0x20 || separators == UInt8(ascii: "-")) {
            let fours = lengths.dropLast().allSatisfy { $0 == 4 } && lengths.last! <= 4
            if (fours || lengths == [6, 13] || lengths == [4, 6, 5] || lengths == [4, 6, 4])
                && Checksums.hasCardIssuerPrefix(d) && Checksums.luhn(d)
            {
                return .bankCard
            }
        }
        // SSN: 3-2-4 with dashes anywhere, with spaces only after "SSN"/"social security".
        if lengths == [3, 2, 4] && !anyParentheses && isSSN(d) {
            if separators == UInt8(ascii: "-") || (separators == 0x20 && hasSSNContext(bytes, before: first.start)) {
                return .ssn
            }
        }
        // North American numbers: (NXX) NXX-XXXX, NXX-NXX-XXXX, NXX.NXX.XXXX, 1-NXX-NXX-XXXX.
        if lengths == [3, 3, 4] || (lengths == [1, 3, 3, 4] && d.first == UInt8(ascii: "1")) {
            let area = d.dropFirst(total - 10)
            if area.first! >= UInt8(ascii: "2") && area.dropFirst(3).first! >= UInt8(ascii: "2") { return .phone }
        }
        if separators == UInt8(ascii: ".") { return nil }
        // "0086 138…" and grouped Chinese mobiles: 3-4-4, 3-8.
        if d.starts(with: "0086".utf8) && lengths[0] == 4 { return total >= 11 && total <= 16 ? .phone : nil }
        if total == 11 && isChineseMobile(d) && (lengths == [3, 4, 4] || lengths == [3, 8]) { return .phone }
        // Chinese landlines: area code 0XX or 0XXX (often in parentheses), then 7–8 digits in one or two groups.
        if d.first == UInt8(ascii: "0") && (lengths[0] == 3 || lengths[0] == 4) && count <= 3 {
            let subscriber = total - lengths[0]
            if subscriber >= 7 && subscriber <= 8 && d.dropFirst().first != UInt8(ascii: "0") { return .phone }
        }
        return nil
    }

    private func number(_ bytes: UnsafeBufferPointer<UInt8>, _ group: NumberGroup) -> Int {
        var value = 0
        for i in group.start..<group.end { value = value * 10 + Int(bytes[i] &- 0x30) }
        return value
    }

    private func isChineseMobile(_ d: ArraySlice<UInt8>) -> Bool {
        d.count == 11 && d.first == UInt8(ascii: "1") && d.dropFirst().first! >= UInt8(ascii: "3")
    }

    private func isSSN(_ d: ArraySlice<UInt8>) -> Bool {
        guard d.count == 9 else { return false }
        func value(_ offset: Int, _ count: Int) -> Int {
            d.dropFirst(offset).prefix(count).reduce(0) { $0 * 10 + Int($1 &- 0x30) }
        }
        return Checksums.isSSN(area: value(0, 3), group: value(3, 2), serial: value(5, 4))
    }

    /// "SSN", "social security" or "security no(.)" within the 40 bytes before, on the same line.
    private func hasSSNContext(_ bytes: UnsafeBufferPointer<UInt8>, before start: Int) -> Bool {
        lineWindow(bytes, before: start, length: 40) { window in
            containsLowercased(window, "ssn") || containsLowercased(window, "social security")
                || containsLowercased(window, "security no")
        }
    }

    /// A version string context for dotted quads: "version", "build", "release", "firmware", "版本", or a
    /// comparison such as `>=` within the 32 bytes before, on the same line.
    func isVersionContext(_ bytes: UnsafeBufferPointer<UInt8>, before start: Int) -> Bool {
        lineWindow(bytes, before: start, length: 32) { line in
            // Only the current clause counts: "protocol version. client=1.2.3.4" is an address.
            var from = 0
            for i in 0..<line.count {
                let c = line[i]
                let comparison = i > 0 && "<>=!~;".utf8.contains(line[i - 1])  // ">=", "&gt;="
                if (c == UInt8(ascii: "=") && !comparison) || c == UInt8(ascii: ",")
                    || (c == UInt8(ascii: ".") && i + 1 < line.count && line[i + 1] == 0x20)
                {
                    from = i + 1
                }
            }
            let window = UnsafeBufferPointer(rebasing: line[from...])
            for word in Self.versionWords where containsLowercased(window, word) { return true }
            return false
        }
    }

    private static let versionWords: [StaticString] = [
        "version", "build", "release", "firmware", "版本", ">=", "<=", "==", "~=", "&gt;=", "&lt;=", "upgrade",
        "update to", "updated to",
    ]

    private func lineWindow(
        _ bytes: UnsafeBufferPointer<UInt8>, before start: Int, length: Int,
        _ body: (UnsafeBufferPointer<UInt8>) -> Bool
    ) -> Bool {
        var from = max(0, start - length)
        if let newline = (from..<start).last(where: { bytes[$0] == 0x0A }) { from = newline + 1 }
        return body(UnsafeBufferPointer(rebasing: bytes[from..<start]))
    }
}

/// Whether `window` contains `word` (ASCII case-insensitive; `word` is lowercase).
func containsLowercased(_ window: UnsafeBufferPointer<UInt8>, _ word: StaticString) -> Bool {
    let count = word.utf8CodeUnitCount
    guard window.count >= count else { return false }
    let w = word.utf8Start
    var i = 0
    while i + count <= window.count {
        var k = 0
        while k < count && ByteClass.lower(window[i + k]) == w[k] { k += 1 }
        if k == count { return true }
        i += 1
    }
    return false
}
