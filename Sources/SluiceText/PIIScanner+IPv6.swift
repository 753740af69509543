extension PIIScanner {
    /// An IPv6 address at `start` (full, compressed with one `::`, optionally with a `%zone`); returns its end.
    /// At least three groups, or `::` after a group of three or more hex digits (`fe80::1`), so times (`12:30:45`),
    /// MAC addresses and `a::b` scopes are not addresses.
    func ipv6(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int) -> Int? {
        let n = bytes.count
        // Cheap rejection: a colon within the first five bytes.
        var probe = start
        while probe < n && probe - start < 5 && ByteClass.isHex(bytes[probe]) { probe += 1 }
        guard probe < n, bytes[probe] == UInt8(ascii: ":") else { return nil }

        var j = start
        var groups = 0
        var compressed = false
        var firstGroupLength = 0
        var longestGroup = 0
        var end = start
        while j < n {
            let groupStart = j
            while j < n && ByteClass.isHex(bytes[j]) && j - groupStart < 5 { j += 1 }
            let length = j - groupStart
            if length > 4 { return nil }
            if length > 0 {
                groups += 1
                if groups == 1 { firstGroupLength = length }
                longestGroup = max(longestGroup, length)
                end = j
            }
            guard j < n, bytes[j] == UInt8(ascii: ":") else { break }
            if j + 1 < n && bytes[j + 1] == UInt8(ascii: ":") {
                if compressed { return nil }
                compressed = true
                j += 2
                end = j
                if j < n && !ByteClass.isHex(bytes[j]) { break }
            } else {
                guard length > 0, j + 1 < n, ByteClass.isHex(bytes[j + 1]) else { break }
                j += 1
            }
        }
        guard compressed ? groups <= 7 : groups == 8 else { return nil }
        guard groups >= 3 || (compressed && firstGroupLength >= 3 && groups >= 2) else { return nil }
        // Eight groups of at most two hex digits is a hardware address or a hex dump, not IPv6.
        if !compressed && longestGroup <= 2 { return nil }
        // Zone index: fe80::1%eth0
        if end < n && bytes[end] == UInt8(ascii: "%") {
            var k = end + 1
            while k < n && ByteClass.isAlnum(bytes[k]) && k - end < 16 { k += 1 }
            if k > end + 1 { end = k }
        }
        if end < n && (ByteClass.isWordByte(bytes[end]) || bytes[end] == UInt8(ascii: ".")) {
            // "…::1.2.3.4" embedded IPv4 or glued letters: not an address we can bound safely
            if bytes[end] != UInt8(ascii: ".") { return nil }
        }
        return end
    }
}
