/// A kind of personal or secret data the desensitize stage finds.
///
/// Raw values name the kind in configuration, drop reasons (`pii:cn_id`) and signals (`pii.cn_id`).
public enum PIIKind: String, Sendable, CaseIterable, Comparable {
    case email
    /// International (E.164 with `+`), North American, Chinese mobile and landline numbers.
    case phone
    /// Chinese resident identity number (18 characters, region, birth date and ISO 7064 check character).
    case cnID = "cn_id"
    /// Payment card number: 13–19 digits, a known issuer prefix, Luhn check.
    case bankCard = "bank_card"
    case ipv4
    case ipv6
    /// The `user:password` part of a URL.
    case urlCredential = "url_credential"
    /// Access keys and tokens: AWS key ids, GitHub/GitLab/Slack/Stripe tokens, JWTs, values of `api_key=`,
    /// `secret=`, `token=` assignments.
    case apiKey = "api_key"
    /// A `-----BEGIN … PRIVATE KEY-----` block.
    case privateKey = "private_key"
    /// The value of a `password=` (or `passwd`, `pwd`) assignment.
    case password
    /// US Social Security number (`123-45-6789`; space-separated or plain only after "SSN"/"social security").
    case ssn

    /// The label inside the placeholder: `[EMAIL]`, `[PHONE]`, `[ID_CN]`, …
    public var label: String {
        switch self {
        case .email: "EMAIL"
        case .phone: "PHONE"
        case .cnID: "ID_CN"
        case .bankCard: "BANK_CARD"
        case .ipv4: "IPV4"
        case .ipv6: "IPV6"
        case .urlCredential: "URL_CREDENTIAL"
        case .apiKey: "API_KEY"
        case .privateKey: "PRIVATE_KEY"
        case .password: "PASSWORD"
        case .ssn: "SSN"
        }
    }

    public static func < (lhs: PIIKind, rhs: PIIKind) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// What the desensitize stage does with one kind of finding.
public enum PIIPolicy: String, Sendable, CaseIterable {
    /// Replace the value with a typed placeholder such as `[EMAIL]` (the default).
    case placeholder
    /// Replace the value with a keyed pseudonym such as `[EMAIL:3f9a2c1b7d04]`: HMAC-SHA256 of the kind and the
    /// canonical value under the configured key, so two mentions of one entity read the same in every document.
    case pseudonym
    /// Drop the whole document (`pii:<kind>`).
    case drop
}

/// One finding: its kind and its byte range in the scanned UTF-8 text. Ranges never split a multi-byte character
/// (every detector starts and ends on ASCII bytes) and never overlap.
public struct PIIFinding: Sendable, Equatable {
    public var kind: PIIKind
    public var range: Range<Int>

    public init(kind: PIIKind, range: Range<Int>) {
        self.kind = kind
        self.range = range
    }
}
