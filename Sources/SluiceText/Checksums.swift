/// Check-digit and plausibility rules used by the detectors. Digits are ASCII bytes.
enum Checksums {
    /// Luhn (mod 10) over ASCII digits.
    static func luhn(_ digits: ArraySlice<UInt8>) -> Bool {
        var sum = 0
        var double = false
        for b in digits.reversed() {
            var d = Int(b &- 0x30)
            if double {
                d *= 2
                if d > 9 { d -= 9 }
            }
            sum += d
            double.toggle()
        }
        return sum % 10 == 0
    }

    /// Whether a 13–19 digit number starts with a payment network's issuer prefix (Visa, Mastercard, Amex, Diners,
    /// JCB, Discover, UnionPay, Maestro, Mir). Order numbers and timestamps (starting 1 or 20) never do.
    static func hasCardIssuerPrefix(_ d: ArraySlice<UInt8>) -> Bool {
        let s = d.startIndex
        func value(_ count: Int) -> Int { d[s..<s + count].reduce(0) { $0 * 10 + Int($1 &- 0x30) } }
        switch d[s] {
        case UInt8(ascii: "4"): return true
        case UInt8(ascii: "5"): return true
        case UInt8(ascii: "6"): return true
        case UInt8(ascii: "3"): return [30, 34, 35, 36, 37, 38, 39].contains(value(2))
        case UInt8(ascii: "2"): return (2200...2204).contains(value(4)) || (2221...2720).contains(value(4))
        default: return false
        }
    }

    /// Chinese resident identity number (GB 11643): 17 digits and a check character (digit or X), a province code,
    /// a real birth date between 1900 and 2099, and the ISO 7064 MOD 11-2 check.
    static func isChineseID(_ c: ArraySlice<UInt8>) -> Bool {
        guard c.count == 18 else { return false }
        let s = c.startIndex
        for i in s..<s + 17 where !ByteClass.isDigit(c[i]) { return false }
        func number(_ offset: Int, _ count: Int) -> Int {
            c[(s + offset)..<(s + offset + count)].reduce(0) { $0 * 10 + Int($1 &- 0x30) }
        }
        guard provinces.contains(number(0, 2)) else { return false }
        let year = number(6, 4)
        let month = number(10, 2)
        let day = number(12, 2)
        guard (1900...2099).contains(year), (1...12).contains(month), day >= 1, day <= daysIn(month, year) else {
            return false
        }
        var sum = 0
        for i in 0..<17 { sum += Int(c[s + i] &- 0x30) * idWeights[i] }
        let expected = Array("10X98765432".utf8)[sum % 11]
        let last = c[s + 17] == UInt8(ascii: "x") ? UInt8(ascii: "X") : c[s + 17]
        return last == expected
    }

    /// US SSN rules: area 001–899 except 666, group 01–99, serial 0001–9999.
    static func isSSN(area: Int, group: Int, serial: Int) -> Bool {
        area > 0 && area < 900 && area != 666 && group > 0 && serial > 0
    }

    private static let provinces: Set<Int> = [
        11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61,
        62, 63, 64, 65, 71, 81, 82, 83,
    ]
    private static let idWeights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]

    private static func daysIn(_ month: Int, _ year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}
