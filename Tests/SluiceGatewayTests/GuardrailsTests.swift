import SluiceGateway
import Testing

@Suite("Guardrails")
struct GuardrailsTests {
    @Test func completionsAreRedactedAndMasked() throws {
        let guardrails = try Guardrails(defaultAction: .redact, keyActions: ["open": .allow], blocklist: ["secret plan"])
        let text = "Mail jane.doe@example.com about the Secret Plan."
        #expect(guardrails.completion(text, client: "anyone") == "Mail [EMAIL] about the [BLOCKED].")
        #expect(guardrails.completion(text, client: "open") == "Mail jane.doe@example.com about the [BLOCKED].")
        #expect(guardrails.prompt("hello there", client: "anyone") == .pass("hello there"))
        #expect(guardrails.prompt("call +1 415 555 0100", client: "open") == .pass("call +1 415 555 0100"))
        #expect(guardrails.statistics["pii_redacted_completion"] == 1 && guardrails.statistics["blocked_completion"] == 2)
    }
}
