/// The desensitize stage: finds personal data and secrets (``PIIScanner``) and replaces each finding according
/// to its kind's policy: a typed placeholder (`[EMAIL]`), a keyed pseudonym (`[EMAIL:3f9a2c1b7d04]`), or dropping
/// the document (`pii:<kind>`).
///
/// Signals: `pii.<kind>` counts per kind found; raw values never leave the text they were found in.
/// Replacements are ASCII and cut only at ASCII bytes, so the output stays valid UTF-8.
public struct Desensitizer: TextStage {
    public let name = "desensitize"
    public let configuration: DesensitizerConfiguration
    private var scanner: PIIScanner
    private let pseudonymizer: Pseudonymizer
    private var findings: [PIIFinding] = []
    private var output: [UInt8] = []
    private let policies: [PIIPolicy]

    /// - Throws: ``TextConfigurationError`` when the settings cannot work (a pseudonym policy without a key).
    public init(_ configuration: DesensitizerConfiguration = DesensitizerConfiguration()) throws(TextConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        self.scanner = PIIScanner(kinds: configuration.kinds)
        self.pseudonymizer = Pseudonymizer(key: configuration.pseudonymKey)
        self.policies = PIIKind.allCases.map { configuration.policy(for: $0) }
    }

    /// The findings in a text, without changing it (for evaluation and audits).
    public mutating func findings(in text: [UInt8]) -> [PIIFinding] {
        scanner.scan(text)
    }

    public mutating func process(_ document: inout Document) -> StageVerdict {
        document.text.withUnsafeBufferPointer { scanner.scan($0, into: &findings) }
        guard !findings.isEmpty else { return .keep }
        var counts = [Int](repeating: 0, count: PIIKind.allCases.count)
        var dropKind: PIIKind?
        for finding in findings {
            let index = PIIKind.allCases.firstIndex(of: finding.kind)!
            counts[index] += 1
            if policies[index] == .drop && dropKind == nil { dropKind = finding.kind }
        }
        for (index, count) in counts.enumerated() where count > 0 {
            document.signals.set("pii.\(PIIKind.allCases[index].rawValue)", Double(count))
        }
        if let dropKind { return .drop(reason: "pii:\(dropKind.rawValue)") }
        output.removeAll(keepingCapacity: true)
        output.reserveCapacity(document.text.count)
        let found = self.findings
        let policies = self.policies
        let pseudonymizer = self.pseudonymizer
        document.text.withUnsafeBufferPointer { text in
            var copied = 0
            for finding in found {
                output.append(contentsOf: UnsafeBufferPointer(rebasing: text[copied..<finding.range.lowerBound]))
                if policies[PIIKind.allCases.firstIndex(of: finding.kind)!] == .pseudonym {
                    pseudonymizer.pseudonym(
                        kind: finding.kind, value: UnsafeBufferPointer(rebasing: text[finding.range]), into: &output)
                } else {
                    output.append(UInt8(ascii: "["))
                    output.append(contentsOf: finding.kind.label.utf8)
                    output.append(UInt8(ascii: "]"))
                }
                copied = finding.range.upperBound
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: text[copied..<text.count]))
        }
        swap(&document.text, &output)
        return .keep
    }
}
