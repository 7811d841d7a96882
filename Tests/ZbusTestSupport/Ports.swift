#if canImport(Glibc)
import Glibc
#endif

/// A loopback port that refuses connections: the OS chooses a free one for a socket that stays bound, and never
/// listens, for the rest of the test process (a connection to it is reset, and no other socket can take the port).
/// Tests point clients and adapters at it when nothing may answer, instead of at a fixed port where a developer's own
/// node (15555) or some other service could be listening.
public func refusingPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    precondition(fd >= 0, "socket: errno \(errno)")
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    precondition(bound, "bind 127.0.0.1:0: errno \(errno)")
    return Int(UInt16(bigEndian: address.sin_port))
}

/// `127.0.0.1:PORT` of ``refusingPort()``.
public func refusingAddress() -> String { "127.0.0.1:\(refusingPort())" }
