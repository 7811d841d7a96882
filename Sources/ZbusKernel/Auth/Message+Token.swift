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

extension Message {
    /// Removes what carries a credential: the `token` and `authorization` headers, and `token=` parameters of the
    /// request string (`/Q?cmd=produce&token=...`, a URL-RPC call `/Svc/m/f?token=...`), whose other parameters stay
    /// as written. For a message passed on to other clients (stored, routed, handed to a proxied service).
    public mutating func removeCredentials() {
        headers.removeValue(lowercased: HeaderName.token)
        headers.removeValue(lowercased: "authorization")
        guard case .request(let method, let uri) = startLine, let query = uri.firstIndex(of: "?") else { return }
        let pairs = uri[uri.index(after: query)...].split(separator: "&", omittingEmptySubsequences: false)
        let kept = pairs.filter { pair in
            let key = pair.firstIndex(of: "=").map { pair[..<$0] } ?? pair
            return UrlRequest.percentDecode(key, plusIsSpace: true) != "token" || !pair.contains("=")
        }
        guard kept.count != pairs.count else { return }
        let path = uri[..<query]
        startLine = .request(method: method, uri: kept.isEmpty ? String(path) : String(path) + "?" + kept.joined(separator: "&"))
    }
}
