//! The request target as a browser's URL parser puts it on the wire (the WHATWG URL
//! standard): dot segments resolved (`.`, `..` and their percent-encoded forms),
//! characters outside the path and query sets percent-encoded, the fragment dropped.
//! v2 binds the target as sent, so the Rust and TypeScript libraries send and bind the
//! same bytes for the same path.

/// Bytes the path percent-encode set encodes (besides controls and non-ASCII).
const PATH_SET: &[u8] = b" \"#<>?`{}";
/// Bytes the special-query percent-encode set encodes.
const QUERY_SET: &[u8] = b" \"#<>'";

fn encode(out: &mut String, text: &str, set: &[u8]) {
    for &b in text.as_bytes() {
        if b <= 0x20 || b >= 0x7f || set.contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
}

fn is_single_dot(s: &str) -> bool {
    s == "." || s.eq_ignore_ascii_case("%2e")
}

fn is_double_dot(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        ".." | ".%2e" | "%2e." | "%2e%2e"
    )
}

/// `path` (starting with `/`, optionally with `?query` and `#fragment`) as a URL
/// parser sends it.
pub(crate) fn wire_target(path: &str) -> String {
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    // Backslashes are slashes in http(s) URLs.
    let path = path.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if is_double_dot(seg) {
            segments.pop();
            if last {
                segments.push("");
            }
        } else if is_single_dot(seg) {
            if last {
                segments.push("");
            }
        } else {
            segments.push(seg);
        }
    }
    let mut out = String::with_capacity(path.len() + 8);
    for seg in &segments {
        out.push('/');
        encode(&mut out, seg, PATH_SET);
    }
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        encode(&mut out, q, QUERY_SET);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wire_target;

    /// Each case as `new URL('http://h' + path)` gives `pathname + search` (checked in
    /// Node 20).
    #[test]
    fn targets_are_what_a_url_parser_sends() {
        for (path, wire) in [
            ("/api/orders", "/api/orders"),
            ("/api/a b/./c/../d?q=x y", "/api/a%20b/d?q=x%20y"),
            ("/api/%2e%2e/x", "/x"),
            ("/api/%2E/x", "/api/x"),
            ("/api/x/..", "/api/"),
            ("/api/x/.", "/api/x/"),
            ("/../..", "/"),
            ("/a\\b", "/a/b"),
            ("/é?ü=1", "/%C3%A9?%C3%BC=1"),
            ("/a%2Fb", "/a%2Fb"),
            ("/q?a='1'&b=\"2\"", "/q?a=%271%27&b=%222%22"),
            ("/p#frag", "/p"),
            ("/{x}`", "/%7Bx%7D%60"),
        ] {
            assert_eq!(wire_target(path), wire, "{path}");
        }
    }
}
