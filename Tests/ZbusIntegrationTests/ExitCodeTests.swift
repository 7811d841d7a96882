import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The `zbus` command's exit statuses (0, 1, 2, 64), as `--help` and docs/operations.md list them.
@Suite("zbus exit codes", .blockingIO(.heavy))
struct ExitCodeTests {
    @Test("--help and run --help list every exit code")
    func helpListsExitCodes() throws {
        for arguments in [["--help"], ["run", "--help"]] {
            let help = try runCommand(ZbusProcess.binaryPath, arguments)
            #expect(help.status == 0)
            #expect(help.stdout.contains("Exit codes:"), "\(arguments)")
            for line in ["0   normal stop", "1   start-up failure", "2   configuration error", "64  command-line usage error"] {
                #expect(help.stdout.contains(line), "\(arguments): \(line)")
            }
        }
    }

    @Test("a command-line usage error exits 64 naming what was wrong", arguments: [
        (["--no-such-option"], "--no-such-option"), (["check-config"], "<file>"), (["run", "--listen"], "--listen"),
    ])
    func usageError(arguments: [String], named: String) throws {
        let result = try runCommand(ZbusProcess.binaryPath, arguments, timeout: 20)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains(named), "\(arguments): \(result.stderr)")
    }

    @Test("a busy port exits 1 with one line: the address, the system's reason and errno, no stray parenthesis")
    func busyPortText() throws {
        let first = try ZbusProcess()
        defer { first.cleanUp() }
        let store = ZbusProcess.makeTemporaryDirectory("zbus-busy")
        defer { try? FileManager.default.removeItem(at: store) }
        let result = try runCommand(ZbusProcess.binaryPath, ["--listen", "127.0.0.1:\(first.port)", "--store", store.path], timeout: 20)
        #expect(result.status == 1)
        let expected = "zbus: cannot listen on 127.0.0.1:\(first.port): bind: \(ErrorText.reason(errno: EADDRINUSE)) (errno \(EADDRINUSE))"
            + " (choose another `node.listen` or pass --listen HOST:PORT)\n"
        #expect(result.stderr.hasSuffix(expected), "\(result.stderr)")
        #expect(!result.stderr.contains(") (errno"))
    }
}
