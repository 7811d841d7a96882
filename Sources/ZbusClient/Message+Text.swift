import NIOCore

extension Message {
    /// A request message (`POST /`) whose body is the UTF-8 bytes of `text`, with optional headers.
    ///
    /// For example `Message(text: "order 42", headers: [("id", "o-42"), ("topic", "orders")])`.
    public init(text: String, headers: [(String, String)] = []) {
        self.init(method: "POST", uri: "/", headers: Headers(headers), body: ByteBuffer(string: text))
    }

    /// A response message with `status` whose body is the UTF-8 bytes of `text` (for example an answer to route).
    public init(status: Int, text: String, headers: [(String, String)] = []) {
        self.init(status: status, headers: Headers(headers), body: ByteBuffer(string: text))
    }
}
