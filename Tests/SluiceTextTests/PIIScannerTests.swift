import Testing

@testable import SluiceText

@Suite("PIIScanner")
struct PIIScannerTests {
    /// The kinds found in `text`, with the exact substrings.
    private func scan(_ text: String) -> [(PIIKind, String)] {
        var scanner = PIIScanner()
        let bytes = Array(text.utf8)
        return scanner.scan(bytes).map { ($0.kind, String(decoding: bytes[$0.range], as: UTF8.self)) }
    }

    private func expectFinds(_ text: String, _ kind: PIIKind, _ value: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let found = scan(text)
        #expect(found.contains { $0.0 == kind && $0.1 == value }, "\(text) → \(found)", sourceLocation: sourceLocation)
    }

    @Test(arguments: [
        ("mail me at james_smith19@dailycedar.org today", "james_smith19@dailycedar.org"),
        ("我的邮箱是daniel_taylor87@pixelnorth.org，欢迎交流", "daniel_taylor87@pixelnorth.org"),
        ("Olivia+shop@gardendata.co.uk.", "Olivia+shop@gardendata.co.uk"),
    ])
    func findsEmails(text: String, value: String) {
        expectFinds(text, .email, value)
    }

    @Test(arguments: [
        "13987426658", "152 3306 8224", "189-8626-0196", "+86-15870299403", "+8613481351737", "0086 17686669501",
        "(010) 35105603", "+86 28 30153337", "0571 4923 8789", "020-86891147", "(629) 555-0122", "633.413.7170",
        "+1 (583) 555-0152", "+49 (0)170 1305286", "+33 6 06 55 19 43", "+44 20 7946 0280", "+81 3-3029-5940",
        "1-800-998-9938",
    ])
    func findsPhoneNumbers(value: String) {
        expectFinds("电话\(value)，谢谢", .phone, value)
        expectFinds("Call \(value) now", .phone, value)
    }

    @Test(arguments: ["36010219930214233X", "500103199907201411", "310101195810289713"])
    func findsChineseIDNumbers(value: String) {
        expectFinds("身份证号：\(value)。", .cnID, value)
        expectFinds("ID card no. \(value)", .cnID, value)
    }

    @Test(arguments: [
        "4324153250232509", "6228481524438385518", "4703 6827 6628 7582", "6236-6867-0422-2495",
        "623668 0479142652335",
    ])
    func findsCardNumbers(value: String) {
        expectFinds("卡号\(value)", .bankCard, value)
        expectFinds("I paid with \(value) and got charged twice.", .bankCard, value)
    }

    @Test func findsNetworkAddresses() {
        expectFinds("Failed password for root from 10.222.170.55 port 39829 ssh2", .ipv4, "10.222.170.55")
        expectFinds("2025-04-21T00:44:13Z DEBUG [worker] request from 187.131.21.173 took 2618ms", .ipv4, "187.131.21.173")
        expectFinds("protocol version. client=16.234.240.43 status=403", .ipv4, "16.234.240.43")
        expectFinds("服务器地址 172.25.242.83", .ipv4, "172.25.242.83")
        expectFinds("IPv6 地址：2001:db8:a4dc:6::1。", .ipv6, "2001:db8:a4dc:6::1")
        expectFinds("addr 2607:f8b0:c417:617b:323a:1406:6bc6:eed1 up", .ipv6, "2607:f8b0:c417:617b:323a:1406:6bc6:eed1")
        expectFinds("link fe80::dfc5:2de6:e902:97ba%wlan0 up", .ipv6, "fe80::dfc5:2de6:e902:97ba%wlan0")
    }

    @Test func findsCredentialsAndSecrets() {
        expectFinds("url = amqp://app:FsT78RGIEQwMF7lR*5@db.cedar.com/", .urlCredential, "app:FsT78RGIEQwMF7lR*5")
        expectFinds("AWS_ACCESS_KEY_ID=AKIABVPRYCGRVWHFBL5K\n", .apiKey, "AKIABVPRYCGRVWHFBL5K")
        expectFinds("export AWS_SECRET_ACCESS_KEY=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\n", .apiKey,
            "iYYOSa5HsEx2qvdtHZCvX4SA8smuallk+XEhlqqU")
        expectFinds(#""SecretAccessKey": "3kneyo1Re9HGrCg5LNpXkdK//jXmjgjowzCKEpiK""#, .apiKey,
            "3kneyo1Re9HGrCg5LNpXkdK//jXmjgjowzCKEpiK")
        expectFinds("AccessKey Secret：U5ay8POJjoDdvTk0lfi8FzrNRuD2fbbqB61nYlyW 简历", .apiKey,
            "U5ay8POJjoDdvTk0lfi8FzrNRuD2fbbqB61nYlyW")
        expectFinds("aws_secret_access_key = ZCSUxgG+enONEEONiiBZXtIeFSnUaxQ+ZEdwPSXS", .apiKey,
            "ZCSUxgG+enONEEONiiBZXtIeFSnUaxQ+ZEdwPSXS")
        expectFinds("GITHUB_TOKEN=ghp_OoOGUlgRcX9lWi70nDcJFHlWY642fDr7ixpI", .apiKey, "ghp_OoOGUlgRcX9lWi70nDcJFHlWY642fDr7ixpI")
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjg1MDg5In0.XfF7Fi_IOJPRGSS__NniSl7vCYVfVGczts0vsYt71xM"
        expectFinds("Authorization: Bearer \(jwt)\n", .apiKey, jwt)
        expectFinds("db_password = hunter2!x", .password, "hunter2!x")
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
        expectFinds("key:\n\(key)\nrest", .privateKey, key)
    }

    @Test(arguments: [
        "SSN: 037032376", "My social security number is 006 58 2185.", "SSN 362-31-4397", "ssn 803-82-2551",
    ])
    func findsSocialSecurityNumbers(text: String) {
        #expect(scan(text).contains { $0.0 == .ssn }, "\(text)")
    }

    /// Look-alikes from real text that must survive unchanged.
    @Test(arguments: [
        "流水号：6011877229741775",  // Luhn-invalid
        "Reference No. 5583 8740 2378 8550",
        "参考编号 5993 0969 7720 0088",
        "Your order number is ORD-20220310-334498",
        "订单INV-2019-03458已发货", "#514527144", "202301061347161059",
        "requires libfoo >= 2.5.14.23", "upgraded to v11.19.2.76 yesterday", "当前版本：6.11.1.214",
        "firmware version 4.2.1.17", "libfoo &gt;= 8.7.14.141",
        "last modified 20220709004534", "epoch 1612785017", "更新时间 1638785023834", "20230524083119012",
        "档案号 640104196103135310",  // wrong check digit
        "Application no. 110101195611060772",
        "请求ID：7d8fd6db-3ae7-4d91-a815-6109d337b3b2", "2022-09-17 21:13", "at 12:30:45 today",
        "mac 00:1a:2b:3c:4d:5e", "std::vector<int>", "see printf(3) and 127.0.0.1", "netmask 255.255.255.0",
        "Password: Optional", "token = strsep(&argv[1], \",\")", "password = getpass.getpass()",
        "tokenizer=bert-base-uncased", "+2 points", "ISBN 978-0-306-40615-7",
    ])
    func keepsDecoys(text: String) {
        #expect(scan(text).isEmpty, "\(text) → \(scan(text))")
    }

    @Test func findingsNeverSplitMultiByteCharacters() {
        let text = "电话13987426658邮箱a@b.cn卡号4324153250232509。"
        var scanner = PIIScanner()
        let bytes = Array(text.utf8)
        for finding in scanner.scan(bytes) {
            #expect(bytes[finding.range.lowerBound] < 0x80)
            #expect(bytes[finding.range.upperBound - 1] < 0x80)
            if finding.range.upperBound < bytes.count { #expect(bytes[finding.range.upperBound] & 0xC0 != 0x80) }
        }
        #expect(scanner.scan(bytes).count == 3)
    }
}
