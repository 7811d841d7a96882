extension Message {
    /// The token the request presents: the zbus `token` header (what 2016 clients send), else an
    /// `Authorization: Bearer ...` header or a `token=` URL parameter (for browsers, curl and Prometheus).
    public var presentedToken: String? {
        if let token { return token }
        if let authorization = headers["authorization"] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]) }
        }
        if let uri, uri.contains("token=") { return urlRequest.query["token"] }
        return nil
    }
}
