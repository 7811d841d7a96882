import Foundation
import Testing
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The test support's child processes (``SpawnedChild``, behind ``ZbusProcess`` and ``runCommand(_:_:timeout:)``):
/// what the child inherits and how its end is reported.
@Suite("Spawned children", .blockingIO)
struct SpawnedChildTests {
    @Test("a child gets only stdin, stdout and stderr, however many descriptors the test process has open without close-on-exec")
    func onlyStandardDescriptors() throws {
        let inherited = open("/dev/null", O_RDONLY)  // no O_CLOEXEC: a plain fork and exec would pass it on
        #expect(inherited > 2)
        defer { close(inherited) }
        let result = try runCommand("/bin/sh", ["-c", "ls /proc/$$/fd"], timeout: 20)
        #expect(result.status == 0, "\(result.stderr)")
        let descriptors = Set(result.stdout.split(whereSeparator: \.isWhitespace).compactMap { Int32($0) })
        #expect(!descriptors.contains(inherited), "\(descriptors)")
        #expect(descriptors.isSuperset(of: [0, 1, 2]), "\(descriptors)")
    }

    @Test("the exit code, or the signal that ended the child, is its termination status; a missing executable is an error")
    func exitAndSignal() throws {
        #expect(try runCommand("/bin/sh", ["-c", "exit 7"], timeout: 20).status == 7)
        let child = try SpawnedChild(executable: "/bin/sleep", arguments: ["600"])
        #expect(!child.hasExited)
        kill(child.processIdentifier, SIGKILL)
        #expect(child.wait(seconds: 20))
        #expect(child.terminationStatus == SIGKILL)
        #expect(throws: SpawnError.self) { try SpawnedChild(executable: "/nonexistent/zbus-nothing", arguments: []) }
    }
}
