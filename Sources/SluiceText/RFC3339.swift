/// Validates RFC 3339 timestamps (`2024-03-01T12:00:00Z`, `…T12:00:00.123+08:00`) without Foundation.
enum RFC3339 {
    static func isValid<Bytes: Sequence<UInt8>>(_ text: Bytes) -> Bool {
        let b = Array(text)
        // YYYY-MM-DDTHH:MM:SS at least.
        guard b.count >= 20 else { return false }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard b[index] >= 0x30 && b[index] <= 0x39 else { return nil }
                value = value * 10 + Int(b[index] - 0x30)
            }
            return value
        }
        guard let year = number(0..<4), b[4] == UInt8(ascii: "-"), let month = number(5..<7), b[7] == UInt8(ascii: "-"),
            let day = number(8..<10), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t") || b[10] == UInt8(ascii: " "),
            let hour = number(11..<13), b[13] == UInt8(ascii: ":"), let minute = number(14..<16),
            b[16] == UInt8(ascii: ":"), let second = number(17..<19)
        else { return false }
        guard (1...12).contains(month), hour <= 23, minute <= 59, second <= 60, day >= 1 else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard day <= days else { return false }
        var index = 19
        if index < b.count, b[index] == UInt8(ascii: ".") {
            index += 1
            let start = index
            while index < b.count, b[index] >= 0x30 && b[index] <= 0x39 { index += 1 }
            guard index > start else { return false }
        }
        guard index < b.count else { return false }
        switch b[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            return index + 1 == b.count
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == b.count, let offsetHour = number((index + 1)..<(index + 3)),
                b[index + 3] == UInt8(ascii: ":"), let offsetMinute = number((index + 4)..<(index + 6))
            else { return false }
            return offsetHour <= 23 && offsetMinute <= 59
        default:
            return false
        }
    }
}
