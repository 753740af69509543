internal import Foundation

/// A connector's checkpoint file, `<state_dir>/<name>.state.json`: a JSON object written atomically (temporary
/// file, fsync, rename, directory fsync), so a crash leaves either the old or the new state, never half of one.
struct StateStore: Sendable {
    let directory: String
    let path: String

    init(directory: String, connector: String) throws(ConnectorError) {
        self.directory = directory
        path = (directory as NSString).appendingPathComponent("\(connector).state.json")
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ConnectorError(reason: "cannot create the state directory \(directory): \(error.localizedDescription)", errno: nil)
        }
    }

    /// The stored state, or an empty object when there is none yet.
    func load() throws(ConnectorError) -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConnectorError(
                reason: "\(path) is not a valid state file; move it away to start from the beginning", errno: nil)
        }
        return object
    }

    func save(_ state: [String: Any]) throws(ConnectorError) {
        let data: Data
        do { data = try JSONSerialization.data(withJSONObject: state, options: [.sortedKeys]) } catch {
            throw ConnectorError(reason: "cannot encode the state: \(error.localizedDescription)", errno: nil)
        }
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw ConnectorError.system("cannot write \(temporary)") }
        let written = data.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == data.count, synced else { throw ConnectorError.system("cannot write \(temporary)") }
        guard rename(temporary, path) == 0 else { throw ConnectorError.system("cannot rename \(temporary)") }
        let directoryDescriptor = open(directory, O_RDONLY)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }
}

extension ConnectorError {
    /// An error from the last system call, with its `errno` text.
    static func system(_ what: String) -> ConnectorError {
        let code = Foundation.errno
        return ConnectorError(reason: "\(what): \(String(cString: strerror(code)))", errno: code)
    }
}
