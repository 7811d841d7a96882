import ZbusRPC

/// The demo service `calc` (module `calc`, alias `Calc`), for trying RPC with curl and for tests and benchmarks.
///
/// | method | does |
/// |---|---|
/// | `plus(a: Int, b: Int) -> Int`, `plus(a: Int, b: Int, c: Int) -> Int` | adds (an overload by parameter count) |
/// | `minus(a: Int, b: Int) -> Int` | subtracts |
/// | `divide(a: Int, b: Int) throws -> Int` | divides; dividing by zero fails |
/// | `echo(text: String) -> String` | returns its argument |
/// | `sleep(milliseconds: Int) async -> Int` | waits (at most a minute), then returns the milliseconds |
/// | `fail(message: String) throws` | always fails with `message` |
public enum CalcService {
    /// Why a `calc` method failed.
    public enum Failure: Error, Sendable, CustomStringConvertible {
        /// `divide` by zero.
        case divisionByZero(Int)
        /// `fail` was called.
        case requested(String)

        /// What went wrong, in one line.
        public var description: String {
            switch self {
            case .divisionByZero(let dividend): return "cannot divide \(dividend) by zero"
            case .requested(let message): return message
            }
        }
    }

    /// The processor with the `calc` module.
    public static var processor: RpcProcessor {
        var processor = RpcProcessor()
        processor.module("calc", aliases: ["Calc"]) { calc in
            calc.method("plus") { (a: Int, b: Int) in a &+ b }
            calc.method("plus") { (a: Int, b: Int, c: Int) in a &+ b &+ c }
            calc.method("minus") { (a: Int, b: Int) in a &- b }
            calc.method("divide") { (a: Int, b: Int) throws -> Int in
                guard b != 0 else { throw Failure.divisionByZero(a) }
                return a.dividedReportingOverflow(by: b).partialValue
            }
            calc.method("echo") { (text: String) in text }
            calc.method("sleep") { (milliseconds: Int) async throws -> Int in
                try await Task.sleep(for: .milliseconds(min(max(0, milliseconds), 60_000)))
                return milliseconds
            }
            calc.method("fail") { (message: String) throws in throw Failure.requested(message) }
        }
        return processor
    }
}
