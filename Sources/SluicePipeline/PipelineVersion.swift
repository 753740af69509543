internal import SluiceShards

/// What made a sample: this build's version and a hash of the stage configuration, recorded in every sample's
/// metadata and index row (`sluice/<version>+<12 hex digits>`).
public enum PipelineVersion {
    /// The version of this build of Sluice.
    public static let binary = "0.10.0"

    /// The pipeline version for a stage configuration: the hash of the stage sections it was read from
    /// (``CurateConfiguration/definition``), so the same settings give the same version in every run.
    public static func of(_ configuration: CurateConfiguration) -> String {
        "sluice/\(binary)+\(sha256Hex(Array(configuration.definition.utf8)).prefix(12))"
    }
}
