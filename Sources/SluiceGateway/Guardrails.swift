internal import Foundation
internal import SluiceText
internal import Synchronization

/// What the gateway does with personal data in a prompt or a completion.
public enum PIIAction: String, Sendable, CaseIterable {
    /// Replace each finding with a typed placeholder (`[EMAIL]`) before the model sees it or the client does.
    case redact
    /// Refuse a prompt that holds personal data (400); a completion that does is redacted.
    case reject
    /// Leave text as it is.
    case allow
}

/// Guardrails that reuse the curation stages: the PII desensitizer on prompts and completions (policy per API key)
/// and a blocklist of terms (case-insensitive) that refuses prompts and masks completions.
public final class Guardrails: Sendable {
    public let defaultAction: PIIAction
    public let keyActions: [String: PIIAction]
    private let blocklist: [String]
    private let desensitizer: Mutex<Desensitizer>
    private let counters = Mutex<[String: Int]>([:])

    public init(defaultAction: PIIAction = .allow, keyActions: [String: PIIAction] = [:], blocklist: [String] = []) throws {
        self.defaultAction = defaultAction
        self.keyActions = keyActions
        self.blocklist = blocklist.map { $0.lowercased() }.filter { !$0.isEmpty }
        desensitizer = Mutex(try Desensitizer(DesensitizerConfiguration()))
    }

    /// Whether any guardrail is on.
    public var active: Bool { defaultAction != .allow || keyActions.values.contains { $0 != .allow } || !blocklist.isEmpty }

    public enum Verdict: Equatable, Sendable {
        case pass(String)
        case refuse(String)
    }

    /// The prompt to use (maybe redacted), or why it is refused.
    public func prompt(_ text: String, client: String) -> Verdict {
        if let term = blockedTerm(in: text) {
            count("blocked_prompt")
            return .refuse("the prompt contains a blocked term (\(term))")
        }
        let action = keyActions[client] ?? defaultAction
        guard action != .allow else { return .pass(text) }
        let (redacted, kinds) = redact(text)
        guard !kinds.isEmpty else { return .pass(text) }
        if action == .reject {
            count("pii_rejected")
            return .refuse("the prompt contains personal data (\(kinds.sorted().joined(separator: ", ")))")
        }
        count("pii_redacted_prompt")
        return .pass(redacted)
    }

    /// A completion as the client may see it: personal data redacted (unless allowed), blocked terms masked.
    public func completion(_ text: String, client: String) -> String {
        var output = text
        if (keyActions[client] ?? defaultAction) != .allow {
            let (redacted, kinds) = redact(text)
            if !kinds.isEmpty {
                count("pii_redacted_completion")
                output = redacted
            }
        }
        for term in blocklist {
            while let range = output.range(of: term, options: .caseInsensitive) {
                output.replaceSubrange(range, with: "[BLOCKED]")
                count("blocked_completion")
            }
        }
        return output
    }

    public var statistics: [String: Int] { counters.withLock { $0 } }

    private func blockedTerm(in text: String) -> String? {
        blocklist.first { text.range(of: $0, options: .caseInsensitive) != nil }
    }

    private func redact(_ text: String) -> (String, Set<String>) {
        var document = Document(text: Array(text.utf8))
        _ = desensitizer.withLock { $0.process(&document) }
        let kinds = Set(document.signals.values.map(\.name).filter { $0.hasPrefix("pii.") }.map { String($0.dropFirst(4)) })
        return (String(decoding: document.text, as: UTF8.self), kinds)
    }

    private func count(_ name: String) { counters.withLock { $0[name, default: 0] += 1 } }
}
