//! The project's one URL redactor: what every log line, error message, `Debug` output and
//! health or status body shows of a URL.
//!
//! Node and signer URLs often carry an API key in the user info (`https://user:key@host`), the
//! path (`https://mainnet.example/v3/KEY`) or the query (`?apikey=KEY`). Only the scheme, the host
//! and the port are shown; `/…` marks that a path, query or fragment was cut. It lives in this
//! crate because every other crate that handles URLs (the actors, the binary) depends on it.
//!
//! - [`parse_http_url`]: the one parser of `http(s)` URLs (configuration checks and clients).
//! - [`redact_url`] / [`redact_url_str`]: one URL, parsed or as text.
//! - [`redact_urls_in`]: every URL inside a message (errors of libraries that embed the URL).
//! - [`UrlSecrets`]: one client's URL, and the secret parts of it, cut from any text it produces.
//! - [`reqwest_error`]: a reqwest error as text with its causes and without its URL.

use reqwest::Url;

/// Shown for text that does not even look like a URL (no `scheme://`).
const UNPARSABLE: &str = "<unparsable URL>";

/// Parses an `http` or `https` URL with a host. The error says what is wrong without repeating
/// the input (which may carry a secret); show [`redact_url_str`] of it instead.
pub fn parse_http_url(text: &str) -> Result<Url, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("not an http(s) URL: it has no scheme://".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err("not an http(s) URL: only http and https are supported".to_owned());
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err("not an http(s) URL: it has no host".to_owned());
    }
    if text.contains(char::is_whitespace) {
        return Err("not an http(s) URL: it contains whitespace".to_owned());
    }
    // `url::ParseError`'s Display names the problem ("invalid port number"), never the input.
    let url = Url::parse(text).map_err(|e| format!("not an http(s) URL: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("not an http(s) URL: it has no host".to_owned());
    }
    Ok(url)
}

/// `scheme://host[:port]`, plus `/…` when a path, query or fragment was cut. User info is
/// always dropped.
pub fn redact_url(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    let cut = !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some();
    if cut {
        out.push_str("/…");
    }
    out
}

/// [`redact_url`] of `text`; text that does not parse is cut the same way as text (after
/// `scheme://`, what precedes the first `/`, `?` or `#`, without anything up to an `@`).
pub fn redact_url_str(text: &str) -> String {
    if let Ok(url) = Url::parse(text)
        && url.host_str().is_some_and(|h| !h.is_empty())
    {
        return redact_url(&url);
    }
    let Some((scheme, rest)) = text.split_once("://") else { return UNPARSABLE.to_owned() };
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return UNPARSABLE.to_owned();
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let more = if rest.len() > authority.len() { "/…" } else { "" };
    format!("{scheme}://{host}{more}")
}

/// `text` with every URL in it (`scheme://…` up to whitespace, a quote, `<`, `>`, `` ` `` or
/// `)`) replaced by [`redact_url_str`] of it.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the ASCII letters, digits, `+`, `-` and `.` right before `://`.
        let start = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || "+-.".contains(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = rest[at..].find(|c: char| c.is_whitespace() || "\"'<>`)".contains(c)).map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        if start == at {
            // `://` without a scheme: not a URL; keep it and go on after it.
            out.push_str("://");
            rest = &rest[at + 3..];
            continue;
        }
        out.push_str(&redact_url_str(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Parts of a URL's user info, path and query shorter than this are not looked for in free text
/// ([`UrlSecrets::scrub`]): they are rarely keys, and would garble unrelated words.
const MIN_SECRET_LEN: usize = 8;

/// What of one URL must never be shown, to cut from text that may quote it: an error that names
/// the URL, or a node's or a proxy's error page that echoes the request path ("Cannot POST
/// /v3/KEY"). `Debug` shows nothing of it.
#[derive(Clone, Default)]
pub struct UrlSecrets {
    /// The URL as reqwest and alloy print it, and its redacted form.
    full: String,
    shown: String,
    /// The password, and the user name, path, query, path segments and query values of at
    /// least [`MIN_SECRET_LEN`] bytes; longest first.
    parts: Vec<String>,
}

impl std::fmt::Debug for UrlSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSecrets").field("url", &self.shown).finish_non_exhaustive()
    }
}

impl UrlSecrets {
    /// The secrets of `url`.
    pub fn of(url: &Url) -> Self {
        let long = |s: &str| s.len() >= MIN_SECRET_LEN;
        let mut parts: Vec<String> = url.password().map(str::to_owned).into_iter().collect();
        let path = url.path();
        let candidates = [url.username(), path.trim_start_matches('/'), url.query().unwrap_or_default()]
            .into_iter()
            .chain(path.split('/'))
            .chain(url.query().unwrap_or_default().split('&').filter_map(|kv| kv.split_once('=').map(|(_, v)| v)));
        parts.extend(candidates.filter(|s| long(s)).map(str::to_owned));
        parts.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        parts.dedup();
        parts.retain(|p| !p.is_empty());
        Self { full: url.as_str().to_owned(), shown: redact_url(url), parts }
    }

    /// `text` with the URL shown redacted, its secret parts cut to `…`, and every other URL in it
    /// redacted ([`redact_urls_in`]).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = if self.full.is_empty() { text.to_owned() } else { text.replace(&self.full, &self.shown) };
        for part in &self.parts {
            if out.contains(part.as_str()) {
                out = out.replace(part.as_str(), "…");
            }
        }
        redact_urls_in(&out)
    }
}

/// A reqwest error as `what: cause: cause…`, without the request URL (reqwest's Display names
/// it in full) and with any other URL in the text redacted.
pub fn reqwest_error(e: reqwest::Error) -> String {
    redact_urls_in(&error_chain(&e.without_url()))
}

/// An error with its sources, `a: b: c` (a source whose text already ends the line is skipped).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [&str; 4] = ["SECRET123", "SECRET456", "hunter2", "alice"];

    fn assert_clean(text: &str) {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in {text:?}");
        }
    }

    #[test]
    fn keeps_scheme_host_and_port_only() {
        for (url, shown) in [
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://127.0.0.1:8545/", "http://127.0.0.1:8545"),
            ("https://alice:hunter2@node.example", "https://node.example"),
            ("https://node.example/v3/SECRET123", "https://node.example/…"),
            ("https://node.example?apikey=SECRET456", "https://node.example/…"),
            ("http://alice:hunter2@127.0.0.1:9/key/SECRET123?apikey=SECRET456#x", "http://127.0.0.1:9/…"),
            ("http://[::1]:8545/SECRET123", "http://[::1]:8545/…"),
            ("https://node.example:443/", "https://node.example"),
        ] {
            let parsed = Url::parse(url).unwrap();
            assert_eq!(redact_url(&parsed), shown, "{url}");
            assert_eq!(redact_url_str(url), shown, "{url}");
            assert_clean(&redact_url_str(url));
        }
    }

    #[test]
    fn text_that_does_not_parse_is_cut_as_text() {
        assert_eq!(redact_url_str("http://[::1"), "http://[::1");
        assert_eq!(redact_url_str("http://127.0.0.1:99999/key/SECRET123"), "http://127.0.0.1:99999/…");
        assert_eq!(redact_url_str("http://alice:hunter2@[::1/SECRET123"), "http://[::1/…");
        assert_eq!(redact_url_str("alice:hunter2@host/SECRET123"), UNPARSABLE);
        assert_eq!(redact_url_str(""), UNPARSABLE);
    }

    #[test]
    fn urls_inside_messages_are_redacted() {
        let text = "error sending request for url (http://alice:hunter2@127.0.0.1:9/key/SECRET123?apikey=SECRET456): \
                    see \"https://node.example/v3/SECRET123\" and ws://h/SECRET456 or a://b, not ://SECRET123x";
        let out = redact_urls_in(text);
        assert_eq!(
            out,
            "error sending request for url (http://127.0.0.1:9/…): see \"https://node.example/…\" and ws://h/… or a://b, not ://SECRET123x"
        );
        assert_eq!(redact_urls_in("no url here: connection refused"), "no url here: connection refused");
        assert_eq!(redact_urls_in("ends with http://h:1/SECRET123"), "ends with http://h:1/…");
        assert_eq!(redact_urls_in("ünïcode http://h/ü?SECRET456 ü"), "ünïcode http://h/… ü");
    }

    #[test]
    fn parses_only_http_urls_with_a_host_without_echoing_them() {
        assert!(parse_http_url("http://127.0.0.1:8545").is_ok());
        assert!(parse_http_url("https://alice:hunter2@node.example/v3/SECRET123?apikey=SECRET456").is_ok());
        for bad in [
            "http://[::1",
            "http://127.0.0.1:99999",
            "http://alice:hunter2@127.0.0.1:99999/SECRET123",
            "ftp://h",
            "ws://127.0.0.1:1",
            "localhost",
            "http://",
            "http:///x",
            "http://a b",
            "not a url",
        ] {
            let err = parse_http_url(bad).expect_err(bad);
            assert_clean(&err);
            assert!(err.starts_with("not an http(s) URL"), "{bad}: {err}");
        }
        assert!(parse_http_url("http://127.0.0.1:99999").unwrap_err().contains("invalid port number"));
        assert!(parse_http_url("http://[::1").unwrap_err().contains("invalid IPv6 address"));
    }

    #[test]
    fn a_urls_secret_parts_are_cut_from_text_that_echoes_them() {
        let url = Url::parse("http://alice:hunter2@127.0.0.1:9/key/SECRET123?apikey=SECRET456&v=1").unwrap();
        let secrets = UrlSecrets::of(&url);
        let echo = format!(
            "{url} failed: Cannot POST /key/SECRET123?apikey=SECRET456&v=1; key SECRET123 (user alice, password hunter2)"
        );
        let out = secrets.scrub(&echo);
        assert_eq!(out, "http://127.0.0.1:9/… failed: Cannot POST /…?…; key … (user alice, password …)");
        assert!(!format!("{secrets:?}").contains("SECRET"), "{secrets:?}");
        // Short parts are not looked for in free text, and a URL without secrets changes nothing.
        let plain = UrlSecrets::of(&Url::parse("http://127.0.0.1:8545/rpc?v=1").unwrap());
        assert_eq!(plain.scrub("the rpc answered v=1"), "the rpc answered v=1");
        assert_eq!(UrlSecrets::default().scrub("x http://h/SECRET123"), "x http://h/…");
    }

    #[tokio::test]
    async fn reqwest_errors_lose_the_url_and_keep_the_cause() {
        // A port nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://alice:hunter2@127.0.0.1:{port}/key/SECRET123?apikey=SECRET456");
        let err = reqwest::Client::new().get(&url).send().await.unwrap_err();
        assert!(err.to_string().contains("SECRET123"), "reqwest names the URL: {err}");
        let text = reqwest_error(err);
        assert_clean(&text);
        assert!(text.contains("error sending request") && text.to_lowercase().contains("connect"), "{text}");
    }
}
