internal import CSluiceScan

/// Finds personal data and secrets in UTF-8 text in one left-to-right pass.
///
/// Detectors fire only at their trigger bytes (a digit or `+` at a token start, `@`, `:` and `=`, `-----BEGIN`,
/// known token prefixes), and every candidate is validated (check digits, issuer prefixes, dates, address ranges,
/// context words) rather than matched by a broad pattern, so order numbers, version strings, timestamps, UUIDs and
/// numbers with a wrong check digit pass unchanged. Pure; the scratch storage makes it allocation-free after
/// warm-up. One instance per worker.
public struct PIIScanner: Sendable {
    /// The kinds reported.
    public var kinds: Set<PIIKind>
    private var enabled = [Bool](repeating: false, count: PIIKind.allCases.count)
    var groups: [NumberGroup] = []
    var digits: [UInt8] = []

    public init(kinds: Set<PIIKind> = Set(PIIKind.allCases)) {
        self.kinds = kinds
        for (index, kind) in PIIKind.allCases.enumerated() { enabled[index] = kinds.contains(kind) }
    }

    func isEnabled(_ kind: PIIKind) -> Bool { enabled[PIIKind.allCases.firstIndex(of: kind)!] }

    /// All findings in `text`, sorted and non-overlapping.
    public mutating func scan(_ text: [UInt8]) -> [PIIFinding] {
        var findings: [PIIFinding] = []
        text.withUnsafeBufferPointer { scan($0, into: &findings) }
        return findings
    }

    /// Appends the findings in `bytes` to `findings` (cleared first).
    public mutating func scan(_ bytes: UnsafeBufferPointer<UInt8>, into findings: inout [PIIFinding]) {
        findings.removeAll(keepingCapacity: true)
        let n = bytes.count
        var i = 0
        var lastEnd = 0
        func record(_ kind: PIIKind, _ range: Range<Int>) {
            findings.append(PIIFinding(kind: kind, range: range))
            lastEnd = range.upperBound
        }
        while i < n {
            let b = bytes[i]
            if b == 0xEF && i + 2 < n && bytes[i + 1] == 0xBC && bytes[i + 2] == 0x9A {
                // Full-width colon (U+FF1A) as in "AccessKey Secret：…"
                if let (kind, range) = assignment(bytes, at: i, separatorLength: 3), range.lowerBound >= lastEnd {
                    if isEnabled(kind) { record(kind, range) }
                    i = range.upperBound
                    continue
                }
                i += 3
                continue
            }
            if b >= 0xC0 {
                // Other non-ASCII characters start nothing: step over the whole character.
                i += b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2
                continue
            }
            if b < 0x80 {
                let prev: UInt8 = i > 0 ? bytes[i - 1] : 0x20
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "("):
                    guard isTokenStart(bytes, at: i, prev: prev) else { break }
                    if ByteClass.isDigit(b), let end = ipv6(bytes, at: i) {
                        if isEnabled(.ipv6) { record(.ipv6, i..<end) }
                        i = end
                        continue
                    }
                    if let end = numberToken(bytes, at: i, lastEnd: lastEnd, findings: &findings) {
                        if let last = findings.last { lastEnd = max(lastEnd, last.range.upperBound) }
                        i = end
                        continue
                    }
                case UInt8(ascii: "@"):
                    if isEnabled(.email), let range = email(bytes, at: i), range.lowerBound >= lastEnd {
                        record(.email, range)
                        i = range.upperBound
                        continue
                    }
                case UInt8(ascii: ":"), UInt8(ascii: "="):
                    if b == UInt8(ascii: ":"), i + 2 < n, bytes[i + 1] == UInt8(ascii: "/"),
                        bytes[i + 2] == UInt8(ascii: "/")
                    {
                        if let range = urlCredential(bytes, at: i) {
                            if isEnabled(.urlCredential) { record(.urlCredential, range) }
                            i = range.upperBound
                            continue
                        }
                        break
                    }
                    if let (kind, range) = assignment(bytes, at: i), range.lowerBound >= lastEnd {
                        if isEnabled(kind) { record(kind, range) }
                        i = range.upperBound
                        continue
                    }
                case UInt8(ascii: "-"):
                    if let end = privateKeyBlock(bytes, at: i) {
                        if isEnabled(.privateKey) { record(.privateKey, i..<end) }
                        i = end
                        continue
                    }
                default:
                    guard ByteClass.isLetter(b), !ByteClass.isWordByte(prev), prev != UInt8(ascii: "-") else { break }
                    if let end = token(bytes, at: i) {
                        if isEnabled(.apiKey) { record(.apiKey, i..<end) }
                        i = end
                        continue
                    }
                    if ByteClass.isHex(b), let end = ipv6(bytes, at: i) {
                        if isEnabled(.ipv6) { record(.ipv6, i..<end) }
                        i = end
                        continue
                    }
                    // Skip the rest of the word: nothing starts inside it.
                    i += 1 + sluice_alnum_run(bytes.baseAddress! + i + 1, n - i - 1)
                    continue
                }
            }
            i += 1
        }
    }

    /// A token may start here: not inside a word or identifier (`ORD-2024…`, `v1.2`, `#5145…`, `a815-6109…`).
    private func isTokenStart(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int, prev: UInt8) -> Bool {
        if ByteClass.isWordByte(prev) || prev == UInt8(ascii: "#") { return false }
        if prev == UInt8(ascii: "-") || prev == UInt8(ascii: ".") || prev == UInt8(ascii: "/")
            || prev == UInt8(ascii: ":")
        {
            return i < 2 || !ByteClass.isAlnum(bytes[i - 2])
        }
        return true
    }

    // MARK: - Email

    private func email(_ bytes: UnsafeBufferPointer<UInt8>, at atSign: Int) -> Range<Int>? {
        var start = atSign
        while start > 0 && atSign - start < 64 {
            let c = bytes[start - 1]
            guard ByteClass.isAlnum(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "%")
                || c == UInt8(ascii: "+") || c == UInt8(ascii: "-")
            else { break }
            start -= 1
        }
        while start < atSign && !ByteClass.isAlnum(bytes[start]) { start += 1 }  // no leading dot or plus
        guard start < atSign else { return nil }
        let n = bytes.count
        var end = atSign + 1
        var labels = 0
        var lastLabelStart = end
        var lastLabelLetters = true
        while end < n {
            let labelStart = end
            var letters = true
            while end < n && (ByteClass.isAlnum(bytes[end]) || bytes[end] == UInt8(ascii: "-")) && end - labelStart < 63 {
                if !ByteClass.isLetter(bytes[end]) { letters = false }
                end += 1
            }
            guard end > labelStart else { break }
            labels += 1
            lastLabelStart = labelStart
            lastLabelLetters = letters
            guard end + 1 < n, bytes[end] == UInt8(ascii: "."), ByteClass.isAlnum(bytes[end + 1]) else { break }
            end += 1
        }
        guard labels >= 2, lastLabelLetters, end - lastLabelStart >= 2 else { return nil }
        return start..<end
    }

    // MARK: - URL credentials

    /// `scheme://user:password@host` → the range of `user:password`.
    private func urlCredential(_ bytes: UnsafeBufferPointer<UInt8>, at colon: Int) -> Range<Int>? {
        guard colon >= 2, ByteClass.isLetter(bytes[colon - 1]) else { return nil }
        let n = bytes.count
        let start = colon + 3
        var j = start
        var passwordColon: Int?
        while j < n && j - start < 256 {
            let c = bytes[j]
            if c == UInt8(ascii: "@") { break }
            if c <= 0x20 || c >= 0x7F || c == UInt8(ascii: "/") || c == UInt8(ascii: "\"") || c == UInt8(ascii: "'")
                || c == UInt8(ascii: "<") || c == UInt8(ascii: ">") || c == UInt8(ascii: "?") || c == UInt8(ascii: "#")
            {
                return nil
            }
            if c == UInt8(ascii: ":") && passwordColon == nil { passwordColon = j }
            j += 1
        }
        guard j < n, bytes[j] == UInt8(ascii: "@"), let colonAt = passwordColon, colonAt + 1 < j, colonAt > start,
            j + 1 < n, ByteClass.isAlnum(bytes[j + 1])
        else { return nil }
        return start..<j
    }

    // MARK: - Secrets

    /// Known token formats at a word start; returns the end of the token.
    private func token(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> Int? {
        let n = bytes.count
        func has(_ prefix: StaticString) -> Bool {
            let count = prefix.utf8CodeUnitCount
            guard i + count <= n else { return false }
            let p = prefix.utf8Start
            for k in 0..<count where bytes[i + k] != p[k] { return false }
            return true
        }
        func run(from start: Int, _ allowed: (UInt8) -> Bool, max: Int = 512) -> Int {
            var j = start
            while j < n && j - start < max && allowed(bytes[j]) { j += 1 }
            return j
        }
        func endsWord(_ j: Int) -> Bool { j >= n || !ByteClass.isWordByte(bytes[j]) }
        let base64url: (UInt8) -> Bool = { ByteClass.isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
        switch bytes[i] {
        case UInt8(ascii: "A"):
            guard has("AKIA") || has("ASIA") || has("AGPA") || has("AIDA") || has("AROA") || has("ANPA") else {
                return nil
            }
            let end = run(from: i + 4, { ByteClass.isUpper($0) || ByteClass.isDigit($0) }, max: 17)
            return end - i == 20 && endsWord(end) ? end : nil
        case UInt8(ascii: "g"):
            if has("github_pat_") {
                let end = run(from: i + 11, { ByteClass.isWordByte($0) })
                return end - i >= 11 + 22 ? end : nil
            }
            if has("glpat-") {
                let end = run(from: i + 6, base64url)
                return end - i >= 6 + 20 ? end : nil
            }
            guard i + 4 < n, bytes[i + 1] == UInt8(ascii: "h"), bytes[i + 3] == UInt8(ascii: "_"),
                "pousr".utf8.contains(bytes[i + 2])
            else { return nil }
            let end = run(from: i + 4, ByteClass.isAlnum)
            return end - i >= 4 + 30 && endsWord(end) ? end : nil
        case UInt8(ascii: "x"):
            guard has("xox"), i + 4 < n, "abposr".utf8.contains(bytes[i + 3]), bytes[i + 4] == UInt8(ascii: "-") else {
                return nil
            }
            let end = run(from: i + 5, { ByteClass.isAlnum($0) || $0 == UInt8(ascii: "-") })
            return end - i >= 5 + 10 ? end : nil
        case UInt8(ascii: "s"), UInt8(ascii: "r"), UInt8(ascii: "p"):
            guard has("sk_live_") || has("rk_live_") || has("sk_test_") || has("pk_live_") else { return nil }
            let end = run(from: i + 8, ByteClass.isAlnum)
            return end - i >= 8 + 16 ? end : nil
        case UInt8(ascii: "e"):
            // JWT: three base64url parts, the first a JSON object header ("eyJ").
            guard has("eyJ") else { return nil }
            let headerEnd = run(from: i, base64url)
            guard headerEnd - i >= 10, headerEnd < n, bytes[headerEnd] == UInt8(ascii: ".") else { return nil }
            let payloadEnd = run(from: headerEnd + 1, base64url)
            guard payloadEnd - headerEnd > 8, payloadEnd < n, bytes[payloadEnd] == UInt8(ascii: ".") else { return nil }
            let signatureEnd = run(from: payloadEnd + 1, base64url)
            return signatureEnd - payloadEnd > 8 ? signatureEnd : nil
        default:
            return nil
        }
    }

    /// `-----BEGIN … PRIVATE KEY-----` up to the matching END line (or the end of the text when it is cut off).
    private func privateKeyBlock(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> Int? {
        let n = bytes.count
        // Checked in place first: a dash starts this block rarely, and text has many dashes.
        let prefix: StaticString = "-----BEGIN "
        guard i + prefix.utf8CodeUnitCount < n else { return nil }
        for k in 0..<prefix.utf8CodeUnitCount where bytes[i + k] != prefix.utf8Start[k] { return nil }
        let headerStart = i + prefix.utf8CodeUnitCount
        guard let headerEnd = find(Array("-----".utf8), in: bytes, from: headerStart), headerEnd - i < 64 else {
            return nil
        }
        let header = UnsafeBufferPointer(rebasing: bytes[headerStart..<headerEnd])
        guard find(Array("PRIVATE KEY".utf8), in: header, from: 0) != nil else { return nil }
        guard let end = find(Array("-----END ".utf8), in: bytes, from: headerEnd + 5) else { return n }
        guard let close = find(Array("-----".utf8), in: bytes, from: end + 9) else { return n }
        return close + 5
    }

    /// `key = value` or `"key": "value"` where the key names a password or a secret; returns the value range.
    private func assignment(_ bytes: UnsafeBufferPointer<UInt8>, at separator: Int, separatorLength: Int = 1)
        -> (PIIKind, Range<Int>)?
    {
        // The key: skip spaces and a closing quote, then identifier characters.
        var keyEnd = separator
        while keyEnd > 0 && separator - keyEnd < 2 && bytes[keyEnd - 1] == 0x20 { keyEnd -= 1 }
        if keyEnd > 0 && (bytes[keyEnd - 1] == UInt8(ascii: "\"") || bytes[keyEnd - 1] == UInt8(ascii: "'")) {
            keyEnd -= 1
        }
        var keyStart = keyEnd
        while keyStart > 0 && keyEnd - keyStart < 48 {
            let c = bytes[keyStart - 1]
            // One space may join two key words: "AccessKey Secret", "API key".
            let joinsWords =
                c == 0x20 && keyStart >= 2 && ByteClass.isAlnum(bytes[keyStart - 2]) && keyStart < keyEnd
                && ByteClass.isAlnum(bytes[keyStart])
            guard ByteClass.isWordByte(c) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".") || joinsWords else { break }
            keyStart -= 1
        }
        guard keyEnd - keyStart >= 3, let kind = secretKind(bytes, keyStart..<keyEnd) else { return nil }
        // The value: optional spaces and quote, then up to the closing quote or a delimiter.
        let n = bytes.count
        var valueStart = separator + separatorLength
        while valueStart < n && valueStart - separator <= 3 + separatorLength && bytes[valueStart] == 0x20 { valueStart += 1 }
        var quote: UInt8?
        if valueStart < n && (bytes[valueStart] == UInt8(ascii: "\"") || bytes[valueStart] == UInt8(ascii: "'")) {
            quote = bytes[valueStart]
            valueStart += 1
        }
        var valueEnd = valueStart
        while valueEnd < n && valueEnd - valueStart < 256 {
            let c = bytes[valueEnd]
            if let quote {
                if c == quote || c == 0x0A { break }
            } else if c <= 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") || c == UInt8(ascii: ",")
                || c == UInt8(ascii: ";") || c == UInt8(ascii: "<") || c >= 0x80
            {
                break
            }
            valueEnd += 1
        }
        guard isSecretValue(bytes, valueStart..<valueEnd, kind: kind) else { return nil }
        return (kind, valueStart..<valueEnd)
    }

    private func secretKind(_ bytes: UnsafeBufferPointer<UInt8>, _ key: Range<Int>) -> PIIKind? {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 48) { buffer -> PIIKind? in
            var count = 0
            for i in key {
                let c = ByteClass.lower(bytes[i])
                if c != UInt8(ascii: "_") && c != UInt8(ascii: "-") && c != UInt8(ascii: ".") && c != 0x20 {
                    buffer[count] = c
                    count += 1
                }
            }
            let lowered = UnsafeBufferPointer(rebasing: buffer[0..<count])
            for word in Self.passwordKeys where find(word, in: lowered, from: 0) != nil { return .password }
            for word in Self.secretKeys where find(word, in: lowered, from: 0) != nil { return .apiKey }
            return nil
        }
    }

    private static let passwordKeys = ["password", "passwd", "pwd"].map { Array($0.utf8) }
    private static let secretKeys = [
        "secret", "apikey", "accesskey", "token", "privatekey", "clientsecret", "credential", "authkey",
    ].map { Array($0.utf8) }

    /// Long enough and not a placeholder, a variable reference or a plain word.
    private func isSecretValue(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, kind: PIIKind) -> Bool {
        guard range.count >= (kind == .password ? 6 : 8) else { return false }
        let first = bytes[range.lowerBound]
        guard ByteClass.isAlnum(first) || (kind == .apiKey && (first == UInt8(ascii: "+") || first == UInt8(ascii: "/")))
            || (kind == .password && "!#%&*+-=?@^_~".utf8.contains(first))
        else { return false }  // "$VAR", "{{ secret }}", "<your key>", "/path", ", stream=None)"
        var digits = 0
        var upper = 0
        var lower = 0
        var other = 0
        var low: UInt64 = 0
        var high: UInt64 = 0
        for i in range {
            let c = bytes[i]
            if ByteClass.isDigit(c) { digits += 1 } else if ByteClass.isUpper(c) { upper += 1 } else if ByteClass.isLower(c) {
                lower += 1
            } else { other += 1 }
            if c < 64 { low |= 1 << UInt64(c) } else if c < 128 { high |= 1 << UInt64(c - 64) }
            // Code, paths and prose, not secrets: calls, indexing, key:value lists, spaces.
            if c == UInt8(ascii: "(") || c == UInt8(ascii: ")") || c == UInt8(ascii: "[") || c == UInt8(ascii: "]")
                || c == UInt8(ascii: "{") || c == UInt8(ascii: "}") || c == UInt8(ascii: ":") || c == 0x20
            {
                return false
            }
        }
        let distinct = low.nonzeroBitCount + high.nonzeroBitCount
        guard distinct >= 4 else { return false }  // xxxxxxxx, ********, 00000000
        let mixedCase = lower > 0 && (upper > 1 || (upper == 1 && !ByteClass.isUpper(first)))
        if kind == .password { return digits > 0 || other > 0 || mixedCase }
        return (digits > 0 && upper + lower > 0) || (range.count >= 16 && mixedCase)
    }
}
