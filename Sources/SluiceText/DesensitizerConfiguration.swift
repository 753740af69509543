/// Settings of the desensitize stage.
public struct DesensitizerConfiguration: Sendable, Equatable {
    /// The kinds to look for. Default: all.
    public var kinds: Set<PIIKind> = Set(PIIKind.allCases)
    /// The policy for kinds not listed in ``policies``. Default `.placeholder`.
    public var defaultPolicy: PIIPolicy = .placeholder
    /// Per-kind policies overriding ``defaultPolicy``.
    public var policies: [PIIKind: PIIPolicy] = [:]
    /// The HMAC key for `.pseudonym`; required (non-empty) when any kind uses it. Keep it secret and stable:
    /// changing it changes every pseudonym.
    public var pseudonymKey: [UInt8] = []

    public init() {}

    /// The policy for one kind.
    public func policy(for kind: PIIKind) -> PIIPolicy { policies[kind] ?? defaultPolicy }

    /// Checks the settings; the error names the offending key.
    public func validate() throws(TextConfigurationError) {
        let usesPseudonyms = kinds.contains { policy(for: $0) == .pseudonym }
        if usesPseudonyms && pseudonymKey.count < 16 {
            throw TextConfigurationError(
                key: "desensitize.pseudonym_key",
                reason: "the pseudonym policy needs a secret key of at least 16 bytes")
        }
    }
}

/// A stage setting that cannot work. `key` names the setting; `description` never holds record text or secrets.
public struct TextConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var reason: String

    public init(key: String, reason: String) {
        self.key = key
        self.reason = reason
    }

    public var description: String { "\(key): \(reason)" }
}
