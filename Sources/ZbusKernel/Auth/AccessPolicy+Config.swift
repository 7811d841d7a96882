extension AccessPolicy {
    /// The keys allowed under `auth:`.
    public static let keys = ["tokens", "anonymous", "metrics_open", "report_token", "report_token_file"]
    /// The keys allowed in one entry of `auth.tokens`.
    public static let tokenKeys = ["name", "secret", "secret_file", "sha256", "produce", "consume", "admin", "tracker"]
    /// The keys allowed under `auth.anonymous`.
    public static let grantKeys = ["produce", "consume", "admin", "tracker"]

    /// Reads the `auth` section. Error messages name the file, line and key, and never quote a secret.
    ///
    /// - Parameters:
    ///   - section: the `auth:` mapping.
    ///   - directory: where relative `secret_file` paths start (the node file's directory).
    /// - Throws: ``ConfigError`` for an unknown key, a token without a name or secret, a duplicate name or secret,
    ///   a malformed digest or an unreadable secret file.
    public static func parse(_ section: ConfigSection, directory: String) throws(ConfigError) -> AccessPolicy {
        var tokens: [String: Token] = [:]
        var names: Set<String> = []
        if let list = section["tokens"] {
            guard case .sequence(let items) = list.kind else {
                throw list.error("expected a list of tokens (`- name: ...`), found \(list.typeName)")
            }
            for item in items {
                let entry = try ConfigSection(item, allowedKeys: tokenKeys)
                guard let name = try entry.string("name"), !name.isEmpty else {
                    throw item.error("missing `name:` (a token is named in logs and refusals instead of its secret)")
                }
                guard names.insert(name).inserted else { throw entry["name"]!.error("token name '\(name)' is used twice") }
                let digest = try digest(of: entry, name: name, directory: directory)
                guard tokens[digest] == nil else {
                    throw item.error("token '\(name)' has the same secret as token '\(tokens[digest]!.name)'")
                }
                tokens[digest] = Token(name: name, grants: try grants(entry))
            }
        }
        let anonymous = try section.section("anonymous", allowedKeys: grantKeys).map { section throws(ConfigError) in try grants(section) } ?? Grants()
        var reportToken = try section.string("report_token")
        if let file = section["report_token_file"] {
            guard reportToken == nil else { throw file.keyError("give report_token or report_token_file, not both") }
            reportToken = try readSecret(file, directory: directory)
        }
        return AccessPolicy(tokensByDigest: tokens, anonymous: anonymous,
                            metricsOpen: try section.bool("metrics_open") ?? false, reportToken: reportToken)
    }

    private static func digest(of entry: ConfigSection, name: String, directory: String) throws(ConfigError) -> String {
        let given = ["secret", "secret_file", "sha256"].filter { entry.contains($0) }
        guard given.count == 1 else {
            let problem = given.isEmpty ? "has no secret" : "has \(given.joined(separator: " and "))"
            throw entry.value.error("token '\(name)' \(problem); give exactly one of secret_file, sha256 or secret")
        }
        switch given[0] {
        case "sha256":
            guard case .scalar(let text) = entry["sha256"]!.kind,
                text.count == 64, text.allSatisfy({ $0.isHexDigit })
            else {
                throw entry["sha256"]!.error("expected the SHA-256 digest of the token as 64 hex digits (`printf %s TOKEN | sha256sum`)")
            }
            return text.lowercased()
        case "secret_file":
            return TokenDigest.hex(try readSecret(entry["secret_file"]!, directory: directory))
        default:
            guard case .scalar(let secret) = entry["secret"]!.kind, !secret.isEmpty else {
                throw entry["secret"]!.error("expected a non-empty string")
            }
            return TokenDigest.hex(secret)
        }
    }

    /// The first line of the file `value` names (surrounding blanks and the line break dropped).
    private static func readSecret(_ value: ConfigValue, directory: String) throws(ConfigError) -> String {
        guard case .scalar(let path) = value.kind, !path.isEmpty else { throw value.error("expected a file path") }
        let resolved = path.hasPrefix("/") || directory.isEmpty ? path : directory + "/" + path
        let text: String
        do {
            text = try readTextFile(resolved)
        } catch {
            throw value.error("cannot read '\(resolved)': \(error)")
        }
        let line = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingBlanks() } ?? ""
        guard !line.isEmpty else { throw value.error("'\(resolved)' holds no token (its first line is empty)") }
        return line
    }

    private static func grants(_ section: ConfigSection) throws(ConfigError) -> Grants {
        var grants = Grants()
        for (key, permission) in [("produce", Permissions.produce), ("consume", .consume), ("admin", .admin)] {
            for pattern in try section.stringList(key) ?? [] {
                guard !pattern.isEmpty else { throw section[key]!.error("an empty MQ name pattern matches nothing") }
                grants.rules.append((NamePattern(pattern), permission))
            }
        }
        grants.tracker = try section.bool("tracker") ?? false
        return grants
    }
}

extension Substring {
    fileprivate func trimmingBlanks() -> String {
        var slice = self
        while let first = slice.first, first == " " || first == "\t" || first == "\r" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" || last == "\r" { slice = slice.dropLast() }
        return String(slice)
    }
}
