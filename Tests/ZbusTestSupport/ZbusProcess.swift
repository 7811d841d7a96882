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
    ///   - openFileLimit: runs the node under this open-file limit (soft and hard, as `ulimit -n` sets them).
    public init(arguments: [String] = [], directory: URL? = nil, listen: String = "127.0.0.1:0", timeout: Double = 30,
                openFileLimit: Int? = nil) throws {
        self.directory = directory ?? Self.makeTemporaryDirectory()
        let readyFile = self.directory.appendingPathComponent("ready-\(UUID().uuidString)")
        stderrFile = self.directory.appendingPathComponent("stderr-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        process = Process()
        let nodeArguments = arguments + [
            "--listen", listen, "--store", self.directory.appendingPathComponent("store").path, "--ready-file", readyFile.path,
        ]
        if let openFileLimit {
            // The shell sets the limit and replaces itself with the node, so the child's pid is the node's.
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(openFileLimit) && exec \"$0\" \"$@\"", Self.binaryPath] + nodeArguments
        } else {
            process.executableURL = URL(fileURLWithPath: Self.binaryPath)
            process.arguments = nodeArguments
        }
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

    /// The node's resident memory in bytes (`VmRSS` of /proc/PID/status), or 0 when it cannot be read.
    public var residentBytes: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kib * 1024
    }

    /// CPU time the node has used so far (user plus system), in clock ticks (`utime` + `stime` of /proc/PID/stat).
    public var cpuTicks: Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
            let afterName = stat.range(of: ") ")
        else { return 0 }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = stat[afterName.upperBound...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
        return user + system
    }

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
