import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real `zbus` child process for integration tests: started on an OS-chosen port, stopped and reaped at the end.
public final class ZbusProcess: @unchecked Sendable {
    /// The child.
    public let process: SpawnedChild
    /// The bound port, read from the ready file.
    public private(set) var port: Int = 0
    /// The TLS port's bound port (`node.tls`), read from the ready file's `.tls` companion; 0 without a TLS port.
    public private(set) var tlsPort: Int = 0
    /// Scratch directory (store, ready file, logs), removed by ``cleanUp()``.
    public let directory: URL
    private let stderrFile: URL
    private var exit: ChildExit { process.exit }

    /// The path of the built `zbus` binary: `$ZBUS_BINARY`, or next to the test bundle.
    public static var binaryPath: String {
        if let path = ProcessInfo.processInfo.environment["ZBUS_BINARY"] { return path }
        return executablePath("zbus")
    }

    /// The path of an executable product of this package built beside the test bundle (SwiftPM builds it when a
    /// test target depends on it): `zbus-example-producer`, for example. With `$ZBUS_BINARY` set, next to that.
    public static func executablePath(_ name: String) -> String {
        if let path = ProcessInfo.processInfo.environment["ZBUS_BINARY"] {
            return URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(name).path
        }
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path,
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent(name).path,
            Bundle.main.bundleURL.appendingPathComponent(name).path,
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
    /// accepts connections (it has written the ready file).
    ///
    /// - Parameters:
    ///   - arguments: extra arguments (for example `["--config", path]`).
    ///   - directory: a directory to reuse (to restart on the same store); a fresh one by default.
    ///   - listen: the listen address (port 0 by default).
    ///   - openFileLimit: runs the node under this open-file limit (soft and hard, as `ulimit -n` sets them).
    public init(arguments: [String] = [], directory: URL? = nil, listen: String = "127.0.0.1:0", timeout: Double = 30,
                openFileLimit: Int? = nil) throws {
        preconditionMayBlock("starting zbus")
        self.directory = directory ?? Self.makeTemporaryDirectory()
        let readyFile = self.directory.appendingPathComponent("ready-\(UUID().uuidString)")
        stderrFile = self.directory.appendingPathComponent("stderr-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        let nodeArguments = arguments + [
            "--listen", listen, "--store", self.directory.appendingPathComponent("store").path, "--ready-file", readyFile.path,
        ]
        // The node writes the ready file and renames it into place: the rename is the event to wait for.
        let watch = try FileWatch(self.directory.path, mask: UInt32(IN_MOVED_TO | IN_CLOSE_WRITE))
        if let openFileLimit {
            // The shell sets the limit and replaces itself with the node, so the child's pid is the node's.
            process = try SpawnedChild(executable: "/bin/sh",
                                       arguments: ["-c", "ulimit -n \(openFileLimit) && exec \"$0\" \"$@\"", Self.binaryPath] + nodeArguments,
                                       stderrPath: stderrFile.path)
        } else {
            process = try SpawnedChild(executable: Self.binaryPath, arguments: nodeArguments, stderrPath: stderrFile.path)
        }
        let deadline = monotonicSeconds() + timeout
        while true {
            if let text = try? String(contentsOf: readyFile, encoding: .utf8),
                let portText = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").last,
                let port = Int(portText)
            {
                self.port = port
                // Written before the ready file, so it is there if the node has a TLS port.
                if let tlsText = try? String(contentsOfFile: readyFile.path + ".tls", encoding: .utf8),
                    let tlsPortText = tlsText.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").last,
                    let tlsPort = Int(tlsPortText)
                {
                    self.tlsPort = tlsPort
                }
                return
            }
            if watch.wait(until: deadline, orReadable: exit.readEnd) != .changed { break }
        }
        let exited = exit.hasExited
        if !exited {
            kill(process.processIdentifier, SIGKILL)
            exit.wait(seconds: 30)
        }
        throw WireClientError.timedOut("zbus to start (\(exited ? "exit status \(process.terminationStatus)" : "still running after \(timeout) s")): \(stderr)")
    }

    /// What the process wrote to stderr so far.
    public var stderr: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }

    /// Whether the process is still running.
    public var isRunning: Bool { !exit.hasExited }

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

    /// Waits until the node's stderr contains `text` (at least `occurrences` times: a line logged again after a
    /// second event), or `seconds` pass, or the node exits; returns whether it does.
    public func waitForLog(_ text: String, occurrences: Int = 1, within seconds: Double = 10) -> Bool {
        preconditionMayBlock("waiting for a log line")
        let found = { self.stderr.components(separatedBy: text).count - 1 >= occurrences }
        guard let watch = try? FileWatch(stderrFile.path, mask: UInt32(IN_MODIFY)) else { return found() }
        let deadline = monotonicSeconds() + seconds
        while !found() {
            switch watch.wait(until: deadline, orReadable: exit.readEnd) {
            case .changed: continue
            case .other, .deadline: return found()
            }
        }
        return true
    }

    /// Sends SIGTERM (or `signal`) and waits up to `timeout` seconds for the exit; SIGKILLs if it does not come.
    /// - Returns: the exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: Double = 15) -> Int32 {
        guard !exit.hasExited else { return process.terminationStatus }
        kill(process.processIdentifier, signal)
        if !exit.wait(seconds: timeout) {
            kill(process.processIdentifier, SIGKILL)
            exit.wait(seconds: 60)
        }
        return process.terminationStatus
    }

    /// Kills the process with SIGKILL, as a crash would, and waits until it is gone.
    public func crash() {
        guard !exit.hasExited else { return }
        kill(process.processIdentifier, SIGKILL)
        exit.wait(seconds: 60)
    }

    /// Stops the process if needed and removes the scratch directory.
    public func cleanUp() {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit {
        // No wait here (a deinit may run on any thread): the child's reaper thread reaps it when it exits.
        if !exit.hasExited { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Runs a command to completion with a time limit and returns its exit status, stdout and stderr.
public func runCommand(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> (status: Int32, stdout: String, stderr: String) {
    preconditionMayBlock("runCommand")
    return try CommandProcess(executable, arguments).finish(timeout: timeout)
}

/// A command started in the background (an example program, curl), whose output is collected in files: a chatty
/// child can never block on a full pipe.
public final class CommandProcess: @unchecked Sendable {
    private let process: SpawnedChild
    private var exit: ChildExit { process.exit }
    private let directory = ZbusProcess.makeTemporaryDirectory("zbus-cmd")
    private let outURL: URL
    private let errURL: URL

    /// Starts `executable` with `arguments` (and `environment` added to this process's).
    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        outURL = directory.appendingPathComponent("out")
        errURL = directory.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        do {
            process = try SpawnedChild(
                executable: executable, arguments: arguments,
                environment: environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { $1 },
                stdoutPath: outURL.path, stderrPath: errURL.path)
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    /// What the command wrote to stdout so far.
    public var stdout: String { (try? String(contentsOf: outURL, encoding: .utf8)) ?? "" }

    /// What the command wrote to stderr so far.
    public var stderr: String { (try? String(contentsOf: errURL, encoding: .utf8)) ?? "" }

    /// Waits up to `timeout` seconds for the exit (then SIGTERM, then SIGKILL) and returns the exit status and output.
    public func finish(timeout: Double) -> (status: Int32, stdout: String, stderr: String) {
        if !exit.wait(seconds: timeout) {
            kill(process.processIdentifier, SIGTERM)
            if !exit.wait(seconds: 10) {
                kill(process.processIdentifier, SIGKILL)
                exit.wait(seconds: 60)
            }
        }
        let result = (process.terminationStatus, stdout, stderr)
        try? FileManager.default.removeItem(at: directory)
        return result
    }

    deinit {
        if !exit.hasExited { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }
}
