import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One-line descriptions of errors that come from the system through SwiftNIO, for the texts zbus shows people
/// (start-up failures, refusals, connect failures).
///
/// NIO's own `IOError` description reads `bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)`: a
/// stray `)` and the internal function's Swift signature. Error texts go through ``describe(_:)`` instead, which
/// reads `bind: Address already in use (errno 98)`, the form the queue store's errors use.
public enum ErrorText {
    /// Describes `error` in one line: an `IOError` as `operation: reason (errno N)`, anything else by its
    /// `description`.
    public static func describe(_ error: any Error) -> String {
        guard let error = error as? IOError else { return String(describing: error) }
        // NIO keeps the operation private; it is what its description holds before the system's text.
        let code = error.errnoCode
        let system = reason(errno: code)
        let text = error.description
        for suffix in [": \(system)) (errno: \(code))", ": \(system) (errno: \(code))"] where text.hasSuffix(suffix) {
            return "\(operation(String(text.dropLast(suffix.count)))): \(system) (errno \(code))"
        }
        return text
    }

    /// The system's text for an `errno` value (`strerror`).
    public static func reason(errno code: Int32) -> String {
        guard let text = strerror(code) else { return "unknown error" }
        return String(cString: text)
    }

    /// `bind(descriptor:ptr:bytes:)` becomes `bind`; any other text (`connection reset (error set)`) is kept.
    private static func operation(_ text: String) -> String {
        guard text.hasSuffix(":)"), let open = text.firstIndex(of: "("), open > text.startIndex else { return text }
        return String(text[..<open])
    }
}
