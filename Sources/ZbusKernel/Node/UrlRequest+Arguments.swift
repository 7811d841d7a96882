extension UrlRequest {
    /// The RPC arguments this URL carries in ``params`` (see ``arguments(fromParams:)``).
    public var arguments: [JSONValue] { Self.arguments(fromParams: params) }

    /// The RPC arguments written in a URL's params: the one reading of URL arguments, shared by URL calls to an
    /// RPC-mode MQ and by the direct RPC server.
    ///
    /// What arrives here was already cut out of the URL by ``UrlRequest/init(uri:)``:
    /// - from the query, `params=TEXT` or a bare token without `=` (`/plus?1,2`), percent-decoded, with `+` read as a
    ///   space; when several are given, the last `params=` wins, and a bare token counts only when there is no `params=`;
    ///   `params=` with nothing after it is empty;
    /// - or, for the MQ's `/<mq>/<module>/<method>/<params>`, a path segment: percent-decoded, `+` kept as it is.
    ///
    /// It is read as:
    /// - nothing, an empty text or only spaces → no arguments;
    /// - JSON values separated by commas (standard JSON plus what ``JSONParser`` accepts from zbus 6 peers):
    ///   `1,2` → `[1, 2]`, `"a,b",true` → `["a,b", true]`, `[1,2]` → `[[1, 2]]`;
    /// - otherwise each comma-separated piece, trimmed of spaces, is JSON if it parses and a string if not:
    ///   `hello,world` → `["hello", "world"]`, `say "hi"` → `["say \"hi\""]`, `1,,x` → `[1, "", "x"]`.
    ///
    /// No Foundation: the parser is ``JSONParser``, the same one that reads RPC bodies.
    public static func arguments(fromParams text: String?) -> [JSONValue] {
        guard let text, text.contains(where: { !$0.isWhitespace }) else { return [] }
        if case .array(let items)? = try? JSONParser.parse("[" + text + "]") { return items }
        return text.split(separator: ",", omittingEmptySubsequences: false).map { piece in
            let trimmed = trimmingWhitespace(piece)
            if let value = try? JSONParser.parse(trimmed) { return value }
            return .string(trimmed)
        }
    }

    private static func trimmingWhitespace(_ piece: Substring) -> String {
        var slice = piece
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }
}
