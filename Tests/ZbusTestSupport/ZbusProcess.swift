import Foundation

/// A real `zbus` child process for integration tests: started on an OS-chosen port, stopped and reaped at the end.
public final class ZbusProcess: @unchecked Sendable {
    /// The child.
    public let process: Process
    /// The bound port, read from the ready file.
    public private(set) var port: Int = 0
    /// Scratch directory (store, ready file, logs), removed by ``cleanUp()``.
    public let directory: URL
    private let stderrFile: URL

    /// The path of the built `zbus` binary: `$ZBUS_BINARY`, or next to the test bundle.
    public static var binaryPath: String {
        if let path = ProcessInfo.processInfo.environment["ZBUS_BINARY"] { return path }
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("zbus").path,
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("zbus").path,
            Bundle.main.bundleURL.appendingPathComponent("zbus").path,
        ]
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        return candidates[0]
    }

    /// The package's root directory (for `config/`).
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Makes a fresh temporary directory.
    public static func makeTemporaryDirectory(_ prefix: String = "zbus-test") -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Starts `zbus` with `arguments` plus `--listen 127.0.0.1:0 --store DIR --ready-file FILE` and waits until it
    /// accepts connections.
    ///
    /// - Parameters:
    ///   - arguments: extra arguments (for example `["--config", path]`).
    ///   - directory: a directory to reuse (to restart on the same store); a fresh one by default.
    ///   - listen: the listen address (port 0 by default).
    public init(arguments: [String] = [], directory: URL? = nil, listen: String = "127.0.0.1:0", timeout: Double = 30) throws {
        self.directory = directory ?? Self.makeTemporaryDirectory()
        let readyFile = self.directory.appendingPathComponent("ready-\(UUID().uuidString)")
        stderrFile = self.directory.appendingPathComponent("stderr-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binaryPath)
        process.arguments = arguments + [
            "--listen", listen, "--store", self.directory.appendingPathComponent("store").path, "--ready-file", readyFile.path,
        ]
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let text = try? String(contentsOf: readyFile, encoding: .utf8),
                let portText = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").last,
                let port = Int(portText)
            {
                self.port = port
                return
            }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let log = stderr
        process.terminate()
        throw WireClientError.timedOut("zbus to start (exit status \(process.isRunning ? -1 : process.terminationStatus)): \(log)")
    }

    /// What the process wrote to stderr so far.
    public var stderr: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }

    /// Whether the process is still running.
    public var isRunning: Bool { process.isRunning }

    /// Opens a raw connection to the node.
    public func connect() throws -> WireClient { try WireClient(port: port) }

    /// Sends SIGTERM (or `signal`) and waits up to `timeout` seconds for the exit; SIGKILLs if it does not come.
    /// - Returns: the exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: Double = 15) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    /// Kills the process with SIGKILL, as a crash would.
    public func crash() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Stops the process if needed and removes the scratch directory.
    public func cleanUp() {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Runs a command to completion with a time limit and returns its exit status, stdout and stderr.
public func runCommand(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> (status: Int32, stdout: String, stderr: String) {
    // Output goes to files rather than pipes, so a chatty child can never block on a full pipe.
    let directory = ZbusProcess.makeTemporaryDirectory("zbus-cmd")
    defer { try? FileManager.default.removeItem(at: directory) }
    let outURL = directory.appendingPathComponent("out")
    let errURL = directory.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
    }
    let out = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
    return (process.terminationStatus, out, err)
}
