import Foundation
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Why driving the browser failed.
enum HeadlessBrowserError: Error, CustomStringConvertible {
    case notInstalled(String)
    case spawnFailed(Int32)
    case closed(String)
    case timedOut(String)
    case protocolError(String)

    var description: String {
        switch self {
        case .notInstalled(let path): return "no Chromium at \(path): install Debian's `chromium` (`apt-get install -y chromium`; .ci/run does)"
        case .spawnFailed(let code): return "Chromium could not be started: posix_spawn failed with \(String(cString: strerror(code)))"
        case .closed(let log): return "Chromium closed its DevTools pipe; its log: \(log)"
        case .timedOut(let what): return "timed out waiting for Chromium: \(what)"
        case .protocolError(let text): return "Chromium answered with an error: \(text)"
        }
    }
}

/// Headless Chromium driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`: commands on the
/// child's descriptor 3, answers and events on 4, each a JSON text ended by a NUL byte). No port is opened, and every
/// wait is on the browser's own answers, bounded by a deadline.
final class HeadlessBrowser {
    static let executable = ProcessInfo.processInfo.environment["ZBUS_CHROMIUM"] ?? "/usr/bin/chromium"

    private let pid: pid_t
    private let toBrowser: Int32
    private let fromBrowser: Int32
    private let profile: URL
    private let logFile: URL
    private var pending: [UInt8] = []
    private var nextId = 0
    /// The page session commands go to, once ``open(_:timeout:)`` attached one.
    private var session: String?
    /// Events read while waiting for an answer, for ``waitForEvent(_:timeout:)``.
    private var events: [[String: Any]] = []

    init(width: Int = 1280, height: Int = 900) throws {
        preconditionMayBlock("starting Chromium")
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else { throw HeadlessBrowserError.notInstalled(Self.executable) }
        profile = ZbusProcess.makeTemporaryDirectory("zbus-chromium")
        logFile = profile.appendingPathComponent("chromium.log")
        var commands: [Int32] = [0, 0]
        var answers: [Int32] = [0, 0]
        guard pipe(&commands) == 0, pipe(&answers) == 0 else { throw HeadlessBrowserError.spawnFailed(errno) }
        for descriptor in commands + answers { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        // The child's ends are moved to descriptors 3 and 4; ends that already sit there are copied higher first,
        // so that the moves cannot clobber each other.
        let childIn = fcntl(commands[0], F_DUPFD_CLOEXEC, 10)
        let childOut = fcntl(answers[1], F_DUPFD_CLOEXEC, 10)
        Glibc.close(commands[0])
        Glibc.close(answers[1])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, childIn, 3)
        posix_spawn_file_actions_adddup2(&actions, childOut, 4)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Chromium keeps its two pipe ends (3 and 4) and nothing else of the test process.
        SpawnedChild.closeDescriptors(from: 5, in: &actions)
        let arguments = [
            Self.executable, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
            "--disable-extensions", "--user-data-dir=\(profile.path)", "--window-size=\(width),\(height)", "about:blank",
        ]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        let status = SpawnGate.shared.whileSpawning { posix_spawn(&child, Self.executable, &actions, nil, &argv, environ) }
        Glibc.close(childIn)
        Glibc.close(childOut)
        guard status == 0 else {
            Glibc.close(commands[1])
            Glibc.close(answers[0])
            throw HeadlessBrowserError.spawnFailed(status)
        }
        pid = child
        toBrowser = commands[1]
        fromBrowser = answers[0]
    }

    /// What Chromium logged so far.
    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Opens `url` in a new page, attaches to it, and waits for its load event.
    func open(_ url: String, timeout: Double = 30) throws {
        let deadline = monotonicSeconds() + timeout
        let target = try call("Target.createTarget", ["url": "about:blank"], deadline: deadline)
        guard let targetId = target["targetId"] as? String else { throw HeadlessBrowserError.protocolError("no targetId: \(target)") }
        let attached = try call("Target.attachToTarget", ["targetId": targetId, "flatten": true], deadline: deadline)
        guard let sessionId = attached["sessionId"] as? String else { throw HeadlessBrowserError.protocolError("no sessionId: \(attached)") }
        session = sessionId
        _ = try call("Page.enable", [:], deadline: deadline)
        _ = try call("Page.navigate", ["url": url], deadline: deadline)
        try waitForEvent("Page.loadEventFired", deadline: deadline)
    }

    /// Evaluates `expression` in the page and returns its value; a promise is awaited (its rejection throws).
    func evaluate(_ expression: String, timeout: Double = 30) throws -> Any? {
        let result = try call("Runtime.evaluate", ["expression": expression, "awaitPromise": true, "returnByValue": true],
                              deadline: monotonicSeconds() + timeout)
        if let exception = result["exceptionDetails"] { throw HeadlessBrowserError.protocolError("the page's script failed: \(exception)") }
        return (result["result"] as? [String: Any])?["value"]
    }

    /// A PNG of the page as it is rendered now.
    func screenshot(timeout: Double = 30) throws -> Data {
        let result = try call("Page.captureScreenshot", ["format": "png"], deadline: monotonicSeconds() + timeout)
        guard let text = result["data"] as? String, let data = Data(base64Encoded: text) else {
            throw HeadlessBrowserError.protocolError("no screenshot data")
        }
        return data
    }

    /// Closes the browser, waits (bounded) for it to close its end of the pipe, reaps it and removes its profile.
    func close() {
        _ = try? send("Browser.close", [:], toSession: false)
        // The pipe reaches its end when the browser exits; a browser that does not within 10 s is killed.
        let deadline = monotonicSeconds() + 10
        while (try? read(deadline: deadline, waitingFor: "the browser to exit")) != nil {}
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == 0 {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
        }
        Glibc.close(toBrowser)
        Glibc.close(fromBrowser)
        try? FileManager.default.removeItem(at: profile)
    }

    // MARK: - Protocol

    private func call(_ method: String, _ params: [String: Any], deadline: Double) throws -> [String: Any] {
        let id = try send(method, params, toSession: method.hasPrefix("Target.") ? false : true)
        while true {
            let message = try read(deadline: deadline, waitingFor: method)
            if let answerId = message["id"] as? Int, answerId == id {
                if let error = message["error"] { throw HeadlessBrowserError.protocolError("\(method): \(error)") }
                return message["result"] as? [String: Any] ?? [:]
            }
            if message["method"] != nil { events.append(message) }
        }
    }

    private func waitForEvent(_ name: String, deadline: Double) throws {
        if let index = events.firstIndex(where: { $0["method"] as? String == name }) {
            events.remove(at: index)
            return
        }
        while true {
            let message = try read(deadline: deadline, waitingFor: name)
            if message["method"] as? String == name { return }
        }
    }

    @discardableResult
    private func send(_ method: String, _ params: [String: Any], toSession: Bool) throws -> Int {
        nextId += 1
        var message: [String: Any] = ["id": nextId, "method": method, "params": params]
        if toSession, let session { message["sessionId"] = session }
        var bytes = Array(try JSONSerialization.data(withJSONObject: message))
        bytes.append(0)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(toBrowser, $0.baseAddress, $0.count) }
            guard written > 0 else { throw HeadlessBrowserError.closed(log) }
            offset += written
        }
        return nextId
    }

    /// The next message from the browser (an answer or an event).
    private func read(deadline: Double, waitingFor what: String) throws -> [String: Any] {
        while true {
            if let end = pending.firstIndex(of: 0) {
                let text = Data(pending[..<end])
                pending.removeSubrange(...end)
                guard let message = try JSONSerialization.jsonObject(with: text) as? [String: Any] else { continue }
                return message
            }
            let remaining = deadline - monotonicSeconds()
            guard remaining > 0 else { throw HeadlessBrowserError.timedOut(what) }
            var descriptor = pollfd(fd: fromBrowser, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(min(remaining, 60) * 1000))
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fromBrowser, $0.baseAddress, $0.count) }
            guard count > 0 else { throw HeadlessBrowserError.closed(log) }
            pending.append(contentsOf: chunk[..<count])
        }
    }
}
