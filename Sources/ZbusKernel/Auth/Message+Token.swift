extension Message {
    /// The token the request presents: the zbus `token` header (what 2016 clients send), else an
    /// `Authorization: Bearer ...` header or a `token=` URL parameter (for browsers, curl and Prometheus).
    ///
    /// Asked on the produce and consume paths when access control is on: the fallbacks look only at the header block
    /// and the request string's bytes (no Foundation search, no lower-casing).
    public var presentedToken: String? {
        if let token { return token }
        if let authorization = headers.value(lowercased: "authorization") {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]) }
        }
        if let uri, uri.utf8.contains(UInt8(ascii: "?")) { return urlRequest.query["token"] }
        return nil
    }
}
