import Testing

@testable import SluiceText

@Suite("Desensitizer")
struct DesensitizerTests {
    private let sample = "联系 a.b@example.com 或 13987426658，再写 a.b@example.com；卡号 4324153250232509"

    @Test func replacesWithTypedPlaceholdersAndCountsPerKind() throws {
        var stage = try Desensitizer()
        var document = Document(text: Array(sample.utf8))
        #expect(stage.process(&document) == .keep)
        #expect(document.textString == "联系 [EMAIL] 或 [PHONE]，再写 [EMAIL]；卡号 [BANK_CARD]")
        #expect(document.signals["pii.email"] == 2)
        #expect(document.signals["pii.phone"] == 1)
        #expect(document.signals["pii.bank_card"] == 1)
        #expect(!document.signals.values.contains { $0.name.contains("@") })
    }

    @Test func pseudonymsAreStableAcrossDocumentsAndKeys() throws {
        var configuration = DesensitizerConfiguration()
        configuration.defaultPolicy = .pseudonym
        configuration.pseudonymKey = Array("a-secret-key-of-32-bytes-length!".utf8)
        var first = try Desensitizer(configuration)
        var second = try Desensitizer(configuration)
        var one = Document(text: Array("mail A.B@Example.com and call 139-8742-6658".utf8))
        var two = Document(text: Array("again a.b@example.com, 13987426658".utf8))
        _ = first.process(&one)
        _ = second.process(&two)
        let pattern = /\[(EMAIL|PHONE):[0-9a-f]{12}\]/
        let names1 = one.textString.matches(of: pattern).map { String($0.output.0) }
        let names2 = two.textString.matches(of: pattern).map { String($0.output.0) }
        #expect(names1.count == 2)
        #expect(names1 == names2)

        configuration.pseudonymKey = Array("another-secret-key-of-32-bytes!!".utf8)
        var other = try Desensitizer(configuration)
        var three = Document(text: Array("a.b@example.com".utf8))
        _ = other.process(&three)
        #expect(three.textString != names1[0])
    }

    @Test func pseudonymPolicyNeedsAKey() {
        var configuration = DesensitizerConfiguration()
        configuration.policies[.email] = .pseudonym
        #expect(throws: TextConfigurationError.self) { try Desensitizer(configuration) }
    }

    @Test func dropPolicyDropsTheDocument() throws {
        var configuration = DesensitizerConfiguration()
        configuration.policies[.cnID] = .drop
        var stage = try Desensitizer(configuration)
        var withID = Document(text: Array("身份证 36010219930214233X".utf8))
        var withoutID = Document(text: Array("no id, mail a@b.cn".utf8))
        #expect(stage.process(&withID) == .drop(reason: "pii:cn_id"))
        #expect(stage.process(&withoutID) == .keep)
        #expect(withoutID.textString == "no id, mail [EMAIL]")
    }

    @Test func disabledKindsAreLeftAlone() throws {
        var configuration = DesensitizerConfiguration()
        configuration.kinds = [.email]
        var stage = try Desensitizer(configuration)
        var document = Document(text: Array(sample.utf8))
        _ = stage.process(&document)
        #expect(document.textString.contains("13987426658"))
        #expect(!document.textString.contains("@"))
    }
}
