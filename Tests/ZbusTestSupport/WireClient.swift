import NIOCore
import ZbusKernel

#if canImport(Glibc)
import Glibc
#endif

/// Errors of the test wire client.
public enum WireClientError: Error, CustomStringConvertible {
    case connectFailed(String)
    case timedOut(String)
    case closed
    case decoding(MessageDecodingError)

    public var description: String {
        switch self {
        case .connectFailed(let why): return "connect failed: \(why)"
        case .timedOut(let what): return "timed out waiting for \(what)"
        case .closed: return "connection closed by peer"
        case .decoding(let error): return "reply not decodable: \(error)"
        }
    }
}

/// A blocking TCP client that speaks raw bytes and reads back zbus messages, for tests against a real node.
///
/// Plain POSIX sockets on purpose: tests must see exactly the bytes a 2016 client would send and receive. Its calls
/// block their thread, so they run in tests under the ``Trait/blockingIO`` trait or on threads of their own, never on
/// Swift's cooperative pool (checked: see ``preconditionMayBlock(_:file:line:)``).
public final class WireClient: @unchecked Sendable {
    private let fd: Int32
    private var input = ByteBuffer()
    private var parser = MessageParser(limits: MessageLimits(maxHeaderBytes: 1 << 20, maxBodyBytes: 1 << 30))

    /// Connects to `host:port` (IPv4).
    public init(host: String = "127.0.0.1", port: Int) throws {
        preconditionMayBlock("WireClient")
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw WireClientError.connectFailed("socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw WireClientError.connectFailed("connect to \(host):\(port): errno \(code)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { Glibc.close(fd) }

    /// Sends raw bytes; returns false if the peer has gone.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        preconditionMayBlock("WireClient.send")
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    /// Sends raw text.
    @discardableResult
    public func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Sends what the socket takes right now, without waiting: the number of bytes taken, 0 when the socket's buffer
    /// is full, nil when the peer has gone.
    public func sendWithoutWaiting(_ bytes: ArraySlice<UInt8>) -> Int? {
        let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        if sent >= 0 { return sent }
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : nil
    }

    /// Waits up to `timeout` seconds until the socket takes more bytes; returns whether it does.
    public func waitUntilWritable(timeout: Double) -> Bool {
        preconditionMayBlock("WireClient.waitUntilWritable")
        let deadline = Self.now() + timeout
        while true {
            let left = deadline - Self.now()
            guard left > 0 else { return false }
            var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&pollfd, 1, Int32(max(1, left * 1000)))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return false }
        }
    }

    /// Sends a message in zbus framing.
    @discardableResult
    public func send(_ message: Message) -> Bool {
        let buffer = MessageSerializer.serialize(message)
        return send(Array(buffer.readableBytesView))
    }

    /// Sends a request built from headers and an optional body.
    @discardableResult
    public func request(_ headers: [(String, String)], body: String? = nil, method: String = "GET", uri: String = "/") -> Bool {
        send(Message(method: method, uri: uri, headers: Headers(headers), body: body.map { ByteBuffer(string: $0) }))
    }

    /// Reads the next message, waiting up to `timeout` seconds.
    public func receive(timeout: Double = 5) throws -> Message {
        let deadline = Self.now() + timeout
        while true {
            do {
                if let message = try parser.next(&input) { return message }
            } catch {
                throw WireClientError.decoding(error)
            }
            let left = deadline - Self.now()
            guard left > 0 else { throw WireClientError.timedOut("a message") }
            guard try readSome(timeout: left) else { throw WireClientError.closed }
        }
    }

    /// Returns the next message if one arrives within `timeout`, or nil.
    public func receiveIfAny(timeout: Double) throws -> Message? {
        do { return try receive(timeout: timeout) } catch WireClientError.timedOut { return nil }
    }

    /// Reads everything until the peer closes or `timeout` passes; returns the bytes and whether the peer closed.
    public func readUntilClose(timeout: Double) throws -> (bytes: [UInt8], closed: Bool) {
        let deadline = Self.now() + timeout
        while Self.now() < deadline {
            if try !readSome(timeout: deadline - Self.now()) {
                return (Array(input.readableBytesView), true)
            }
        }
        return (Array(input.readableBytesView), false)
    }

    /// Reads once; false when the peer closed. Throws on timeout only via the caller's deadline.
    private func readSome(timeout: Double) throws -> Bool {
        preconditionMayBlock("WireClient's reads")
        var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pollfd, 1, Int32(max(1, timeout * 1000)))
        if ready == 0 || (ready < 0 && errno == EINTR) { return true }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count <= 0 { return false }
        input.writeBytes(chunk[0..<count])
        return true
    }

    /// Closes the socket now (abortive close when `reset` is true).
    public func close(reset: Bool = false) {
        if reset {
            var lingerValue = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lingerValue, socklen_t(MemoryLayout<linger>.size))
        }
        shutdown(fd, Int32(SHUT_RDWR))
    }

    static func now() -> Double { monotonicSeconds() }
}
