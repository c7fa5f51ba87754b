//! The canonical request target: the one reading of a request's path that every decision of the
//! gateway and the app behind it share.
//!
//! The gateway decides on paths (health, webhook, get-or-create, public paths, the gate,
//! rate-limit routes) and the app routes on them. If the two read the same bytes differently
//! (`/x/../walker`, `/%77alker`, `//walker`), a decision is made about one resource and another
//! is served. So the path is normalized once at the edge as RFC 3986 §6.2.2 says (unreserved
//! escapes decoded, the hex of the others uppercased, dot segments removed, repeated slashes
//! merged), the request is rewritten to it, and what different stacks would still read
//! differently is refused ([`PathError`]). Prefix options match whole segments of that path
//! ([`PathPrefix`]).
//!
//! This module only reads and rewrites text; it knows nothing of requests or config files.

use std::borrow::Cow;

use http::Uri;
use http::header::{HOST, HeaderMap, HeaderValue};

/// How paths are normalized and which refusals are relaxed; built by `config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathPolicy {
    /// `//a///b` is `/a/b`. On by default: most routers and nginx merge them.
    pub merge_slashes: bool,
    /// Refusals the operator relaxed, each at a documented risk.
    pub allow: Vec<Relax>,
}

/// A refusal that `paths.allow` can relax, by its config name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relax {
    EncodedSlash,
    Backslash,
    DoubleEncoding,
    Control,
    InvalidUtf8,
    AboveRoot,
    Semicolon,
}

impl Relax {
    pub const ALL: [Relax; 7] = [
        Relax::EncodedSlash,
        Relax::Backslash,
        Relax::DoubleEncoding,
        Relax::Control,
        Relax::InvalidUtf8,
        Relax::AboveRoot,
        Relax::Semicolon,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Relax::EncodedSlash => "encoded_slash",
            Relax::Backslash => "backslash",
            Relax::DoubleEncoding => "double_encoding",
            Relax::Control => "control",
            Relax::InvalidUtf8 => "invalid_utf8",
            Relax::AboveRoot => "above_root",
            Relax::Semicolon => "semicolon",
        }
    }

    pub fn from_name(name: &str) -> Option<Relax> {
        Relax::ALL.into_iter().find(|r| r.name() == name)
    }

    /// What an operator takes on by relaxing this refusal, for `check` to say.
    pub fn risk(self) -> &'static str {
        match self {
            Relax::EncodedSlash => {
                "%2F and %5C reach the app encoded; an app that decodes them before routing sees \
                 segments the gateway did not, so a gated or protected path can be reached as \
                 /walker%2Fsecret"
            }
            Relax::Backslash => {
                "a raw \\ reaches the app; stacks that read it as / (IIS, some Windows and Node \
                 routers) see segments the gateway did not"
            }
            Relax::DoubleEncoding => {
                "%25 followed by hex reaches the app; an app that decodes twice reads %252F as / \
                 and sees segments the gateway did not"
            }
            Relax::Control => {
                "encoded control characters (%00, %0A, ...) reach the app; C-string and log \
                 parsers may truncate or split the path there"
            }
            Relax::InvalidUtf8 => {
                "escapes that are not UTF-8 reach the app; stacks replace or drop such bytes \
                 differently, so two paths may read as one"
            }
            Relax::AboveRoot => {
                "dot segments above the root are dropped (/../a is /a) instead of refused; apps \
                 that resolve them against a file system may read them otherwise"
            }
            Relax::Semicolon => {
                "; reaches the app as part of a segment; servlet containers and some frameworks \
                 strip ;params before routing, so /walker;x/secret is served as /walker/secret \
                 while the gateway saw the segment walker;x"
            }
        }
    }
}

/// Why a path was refused: it has more than one reading among common stacks, and no normal
/// client sends it. Every variant is a 400 `path_ambiguous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path holds an encoded slash or backslash (%2F, %5C)")]
    EncodedSlash,
    #[error("the path holds a backslash")]
    Backslash,
    #[error("the path holds an encoded percent sign before hex digits (double encoding)")]
    DoubleEncoding,
    #[error("the path holds a control character")]
    Control,
    #[error("the path's escapes do not decode to UTF-8")]
    InvalidUtf8,
    #[error("the path's dot segments climb above the root")]
    AboveRoot,
    #[error("the path holds a ';' path parameter")]
    Semicolon,
    #[error("the path holds a malformed percent-escape")]
    MalformedEscape,
    #[error("the request target has no path")]
    NoPath,
}

impl PathPolicy {
    fn allows(&self, relax: Relax) -> bool {
        self.allow.contains(&relax)
    }

    fn refuse(&self, relax: Relax, error: PathError) -> Result<(), PathError> {
        if self.allows(relax) { Ok(()) } else { Err(error) }
    }

    /// The canonical form of `path` (the path of a request target, without its query), borrowed
    /// when it is canonical already, which a normal client's path is: checking it costs one pass
    /// over its bytes and no allocation.
    ///
    /// `*` (the asterisk form of `OPTIONS *`) is its own canonical form.
    ///
    /// # Errors
    /// A [`PathError`] for a path that stacks read differently, unless its refusal is relaxed.
    pub fn canonical<'a>(&self, path: &'a str) -> Result<Cow<'a, str>, PathError> {
        if path == "*" || self.is_canonical(path.as_bytes()) {
            return Ok(Cow::Borrowed(path));
        }
        if !path.starts_with('/') {
            return Err(PathError::NoPath);
        }
        let decoded = self.decode(path.as_bytes())?;
        let resolved = self.resolve(&decoded)?;
        // Every byte written is ASCII: escapes stay `%XX`, other bytes are the path's own.
        let text = String::from_utf8(resolved).map_err(|_| PathError::InvalidUtf8)?;
        Ok(if text == path {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(text)
        })
    }

    /// True when nothing in `path` would change or be refused: no escape, no `;` or `\`, no dot
    /// segment, and (when merging) no empty segment but a trailing one.
    fn is_canonical(&self, path: &[u8]) -> bool {
        if path.first() != Some(&b'/') {
            return false;
        }
        let mut start = 1;
        for (i, &b) in path.iter().enumerate().skip(1) {
            match b {
                b'/' => {
                    if !self.plain_segment(&path[start..i], false) {
                        return false;
                    }
                    start = i + 1;
                }
                b'%' | b';' | b'\\' => return false,
                _ => {}
            }
        }
        self.plain_segment(&path[start..], true)
    }

    fn plain_segment(&self, segment: &[u8], last: bool) -> bool {
        match segment {
            b"." | b".." => false,
            b"" => last || !self.merge_slashes,
            _ => true,
        }
    }

    /// Decodes the escapes of unreserved characters and uppercases the rest, refusing what
    /// decodes to something stacks read differently. The result has the same separators as the
    /// input: an encoded slash stays `%2F`, so every `/` in it is one the client wrote.
    fn decode(&self, path: &[u8]) -> Result<Vec<u8>, PathError> {
        let mut out = Vec::with_capacity(path.len());
        // Every escape's byte, to check that together with the plain ASCII they form UTF-8.
        let mut high = false;
        let mut i = 0;
        while i < path.len() {
            let b = path[i];
            match b {
                b'%' => {
                    let byte = escape_at(path, i).ok_or(PathError::MalformedEscape)?;
                    if byte == b'%' && hex_pair_follows(path, i + 3) {
                        self.refuse(Relax::DoubleEncoding, PathError::DoubleEncoding)?;
                    }
                    match byte {
                        b'/' | b'\\' => self.refuse(Relax::EncodedSlash, PathError::EncodedSlash)?,
                        0x00..=0x1f | 0x7f => self.refuse(Relax::Control, PathError::Control)?,
                        0x80.. => high = true,
                        _ => {}
                    }
                    if is_unreserved(byte) {
                        out.push(byte);
                    } else {
                        push_escape(&mut out, byte);
                    }
                    i += 3;
                    continue;
                }
                b'\\' => self.refuse(Relax::Backslash, PathError::Backslash)?,
                b';' => self.refuse(Relax::Semicolon, PathError::Semicolon)?,
                0x00..=0x1f | 0x7f => self.refuse(Relax::Control, PathError::Control)?,
                _ => {}
            }
            out.push(b);
            i += 1;
        }
        if high && !decodes_to_utf8(&out) {
            self.refuse(Relax::InvalidUtf8, PathError::InvalidUtf8)?;
        }
        Ok(out)
    }

    /// Removes dot segments (RFC 3986 §5.2.4) and, when merging, empty segments; a trailing
    /// dot segment or slash leaves a trailing slash.
    fn resolve(&self, decoded: &[u8]) -> Result<Vec<u8>, PathError> {
        let segments: Vec<&[u8]> = decoded[1..].split(|b| *b == b'/').collect();
        let mut kept: Vec<&[u8]> = Vec::with_capacity(segments.len());
        let mut trailing_slash = false;
        let count = segments.len();
        for (i, segment) in segments.into_iter().enumerate() {
            let last = i + 1 == count;
            trailing_slash = last;
            match segment {
                b"." => {}
                b".." => {
                    if kept.pop().is_none() {
                        self.refuse(Relax::AboveRoot, PathError::AboveRoot)?;
                    }
                }
                b"" if last || self.merge_slashes => {}
                _ => {
                    kept.push(segment);
                    trailing_slash = false;
                }
            }
        }
        let mut out = Vec::with_capacity(decoded.len());
        for segment in &kept {
            out.push(b'/');
            out.extend_from_slice(segment);
        }
        if trailing_slash || kept.is_empty() {
            out.push(b'/');
        }
        Ok(out)
    }
}

/// The authority a request is for, read once for every decision and for the app: an
/// absolute-form target's or HTTP/2's `:authority` comes before `Host` (RFC 9112 §3.2.2,
/// RFC 9113 §8.3.1), else `Host`. The edge refuses a request with more than one `Host`.
pub fn authority(uri: &Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    match uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => headers.get(HOST).cloned(),
    }
}

/// The byte of a well-formed `%XX` at `at`, if there is one.
fn escape_at(path: &[u8], at: usize) -> Option<u8> {
    match path.get(at..at + 3)? {
        [b'%', hi, lo] => Some(hex(*hi)? << 4 | hex(*lo)?),
        _ => None,
    }
}

/// True when the two characters at `at`, each written plainly or escaped, are hex digits: what
/// follows a decoded `%` that a second decoding would read as an escape.
fn hex_pair_follows(path: &[u8], mut at: usize) -> bool {
    for _ in 0..2 {
        let digit = match path.get(at) {
            Some(b'%') => {
                at += 3;
                escape_at(path, at - 3)
            }
            Some(&b) => {
                at += 1;
                Some(b)
            }
            None => None,
        };
        if !digit.is_some_and(|d| d.is_ascii_hexdigit()) {
            return false;
        }
    }
    true
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

fn push_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
}

/// RFC 3986 §2.3: these are the same character encoded or not.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// True when the path with every escape decoded is UTF-8.
fn decodes_to_utf8(path: &[u8]) -> bool {
    let bytes: Cow<'_, [u8]> = percent_encoding::percent_decode(path).into();
    std::str::from_utf8(&bytes).is_ok()
}

/// A prefix option (`auth.public_paths`, `gate.paths`, rate-limit `routes`): a canonical path
/// that matches itself and everything below it, by whole segments, so `/walker` (or `/walker/`)
/// covers `/walker`, `/walker/` and `/walker/x` but not `/walkers-guide`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix {
    /// As configured, for messages.
    written: String,
    /// Without its trailing slash; empty for the root.
    segments: String,
    /// For apps that route case-insensitively: ASCII case is ignored.
    fold_case: bool,
}

/// Why a configured prefix or path is not usable as it is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("must start with /")]
    Relative,
    #[error("is not in canonical form; write it as {0:?}")]
    NotCanonical(String),
    #[error("{0}")]
    Refused(PathError),
    #[error(
        "may hold only letters, digits, - . _ ~, / and escapes of non-ASCII bytes, which have one \
         spelling in a canonical path"
    )]
    Ambiguous,
}

impl PathPrefix {
    /// # Errors
    /// The prefix is not a canonical path of plain segments (see [`PrefixError`]).
    pub fn new(written: &str, policy: &PathPolicy, fold_case: bool) -> Result<PathPrefix, PrefixError> {
        let canonical = canonical_config_path(written, policy)?;
        // Characters with two spellings that normalization keeps apart (`!` and `%21`) would
        // let a request's other spelling slip past the prefix.
        if !is_plain(canonical.as_bytes()) {
            return Err(PrefixError::Ambiguous);
        }
        Ok(PathPrefix {
            written: written.to_owned(),
            segments: canonical.trim_end_matches('/').to_owned(),
            fold_case,
        })
    }

    /// `/`, which covers every path.
    pub fn root() -> PathPrefix {
        PathPrefix {
            written: "/".into(),
            segments: String::new(),
            fold_case: false,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// `path` is canonical (the gateway rewrote the request to it at the edge).
    pub fn matches(&self, path: &str) -> bool {
        let Some(head) = path.get(..self.segments.len()) else {
            return false;
        };
        let same = if self.fold_case {
            head.eq_ignore_ascii_case(&self.segments)
        } else {
            head == self.segments
        };
        same && matches!(path.as_bytes().get(self.segments.len()), None | Some(b'/'))
    }

    /// How much of a path the prefix fixes: of two prefixes matching one path, the one with the
    /// larger value is the nearer ancestor.
    pub fn specificity(&self) -> usize {
        self.segments.len()
    }

    /// True when one prefix covers some path the other does (one is an ancestor of the other).
    pub fn overlaps(&self, other: &PathPrefix) -> bool {
        self.matches(&other.segments) || other.matches(&self.segments) || self.segments == other.segments
    }
}

/// Letters, digits, `-._~`, `/` and escapes of non-ASCII bytes: the characters a canonical path
/// spells one way only.
fn is_plain(path: &[u8]) -> bool {
    let mut i = 0;
    while i < path.len() {
        match escape_at(path, i) {
            Some(0x80..) => i += 3,
            Some(_) => return false,
            None if is_unreserved(path[i]) || path[i] == b'/' => i += 1,
            None => return false,
        }
    }
    true
}

/// A path written in the config (an exact route or a prefix) as the canonical path a request
/// must have to match it: the config must spell it canonically, or it could never match.
///
/// # Errors
/// The path is relative, refused, or not written canonically.
pub fn canonical_config_path(written: &str, policy: &PathPolicy) -> Result<String, PrefixError> {
    if !written.starts_with('/') {
        return Err(PrefixError::Relative);
    }
    match policy.canonical(written) {
        Ok(canonical) if canonical == written => Ok(canonical.into_owned()),
        Ok(canonical) => Err(PrefixError::NotCanonical(canonical.into_owned())),
        Err(e) => Err(PrefixError::Refused(e)),
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> PathPolicy {
        PathPolicy {
            merge_slashes: true,
            allow: Vec::new(),
        }
    }

    fn canon(policy: &PathPolicy, path: &str) -> Result<String, PathError> {
        policy.canonical(path).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed_as_they_are() {
        let policy = strict();
        for path in [
            "/",
            "/a",
            "/a/",
            "/api/inquiries/get-or-create",
            "/a.b/c..d/.e/f.",
            "/~u/-_.",
            "*",
        ] {
            assert!(
                matches!(policy.canonical(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn the_normalizer_table() {
        let policy = strict();
        let table: &[(&str, &str)] = &[
            // RFC 3986 §5.4 and §6.2.2's own examples of dot segments and escapes.
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/b/c/./g", "/b/c/g"),
            ("/b/c/.", "/b/c/"),
            ("/b/c/./", "/b/c/"),
            ("/b/c/..", "/b/"),
            ("/b/c/../", "/b/"),
            ("/b/c/../g", "/b/g"),
            ("/b/c/../..", "/"),
            ("/b/c/../../g", "/g"),
            ("/b/c/g.", "/b/c/g."),
            ("/b/c/.g", "/b/c/.g"),
            ("/b/c/g..", "/b/c/g.."),
            ("/b/c/..g", "/b/c/..g"),
            ("/b/c/./../g", "/b/g"),
            ("/b/c/g/.", "/b/c/g/"),
            ("/b/c/g/./h", "/b/c/g/h"),
            ("/b/c/g/../h", "/b/c/h"),
            ("/%7Euser", "/~user"),
            ("/%7euser", "/~user"),
            ("/a%c2%b1b", "/a%C2%B1b"),
            // Unreserved escapes decode; the others keep their escape, uppercased.
            ("/%77alker/secret", "/walker/secret"),
            ("/%41%42%43%2d%2E%5f%7E", "/ABC-._~"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/a%3Bb", "/a%3Bb"),
            ("/a%25b", "/a%25b"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            // Encoded dots are dots.
            ("/x/%2e%2e/walker/secret", "/walker/secret"),
            ("/x/%2E/walker", "/x/walker"),
            ("/x/.%2e/walker", "/walker"),
            // Slashes merge.
            ("//walker/secret", "/walker/secret"),
            ("/walker//secret", "/walker/secret"),
            ("/walker///", "/walker/"),
            ("//", "/"),
            ("/x/../walker/secret", "/walker/secret"),
            ("/static/../app/profile", "/app/profile"),
            ("/a//../b", "/b"),
        ];
        for (input, expected) in table {
            assert_eq!(canon(&policy, input).as_deref(), Ok(*expected), "{input}");
            // A canonical path is its own canonical form.
            assert_eq!(canon(&policy, expected).as_deref(), Ok(*expected), "{expected}");
        }
    }

    #[test]
    fn without_merging_empty_segments_are_kept() {
        let policy = PathPolicy {
            merge_slashes: false,
            allow: Vec::new(),
        };
        assert_eq!(canon(&policy, "//walker").as_deref(), Ok("//walker"));
        assert_eq!(canon(&policy, "/a//b/").as_deref(), Ok("/a//b/"));
        assert_eq!(canon(&policy, "/a//../b").as_deref(), Ok("/a/b"));
        assert!(matches!(policy.canonical("/a//b"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn each_ambiguity_is_refused() {
        let policy = strict();
        let table: &[(&str, PathError)] = &[
            ("/walker%2Fsecret", PathError::EncodedSlash),
            ("/walker%2fsecret", PathError::EncodedSlash),
            ("/walker%5Csecret", PathError::EncodedSlash),
            ("/walker\\secret", PathError::Backslash),
            ("/walker%252Fsecret", PathError::DoubleEncoding),
            ("/walker%25%32%46", PathError::DoubleEncoding),
            ("/a%00b", PathError::Control),
            ("/a%0Ab", PathError::Control),
            ("/a%7f", PathError::Control),
            ("/a%C3", PathError::InvalidUtf8),
            ("/a%FF%FE", PathError::InvalidUtf8),
            ("/a%C0%AF", PathError::InvalidUtf8),
            ("/..", PathError::AboveRoot),
            ("/../walker", PathError::AboveRoot),
            ("/a/../../walker", PathError::AboveRoot),
            ("/%2e%2e/walker", PathError::AboveRoot),
            ("/walker;x=1/secret", PathError::Semicolon),
            ("/walker/secret;jsessionid=1", PathError::Semicolon),
            ("/a%zz", PathError::MalformedEscape),
            ("/a%4", PathError::MalformedEscape),
            ("/a%", PathError::MalformedEscape),
            ("walker", PathError::NoPath),
            ("", PathError::NoPath),
        ];
        for (input, error) in table {
            assert_eq!(canon(&policy, input), Err(*error), "{input}");
        }
    }

    #[test]
    fn each_refusal_can_be_relaxed() {
        let relaxed = |relax: Relax| PathPolicy {
            merge_slashes: true,
            allow: vec![relax],
        };
        let table: &[(Relax, &str, &str)] = &[
            (Relax::EncodedSlash, "/walker%2fsecret", "/walker%2Fsecret"),
            (Relax::Backslash, "/walker\\secret", "/walker\\secret"),
            (Relax::DoubleEncoding, "/a%252F", "/a%252F"),
            (Relax::Control, "/a%0a", "/a%0A"),
            (Relax::InvalidUtf8, "/a%ff", "/a%FF"),
            (Relax::AboveRoot, "/../walker", "/walker"),
            (Relax::Semicolon, "/walker;x/./secret", "/walker;x/secret"),
        ];
        for (relax, input, expected) in table {
            assert_eq!(canon(&relaxed(*relax), input).as_deref(), Ok(*expected), "{input}");
            assert!(canon(&strict(), input).is_err(), "{input} is refused by default");
        }
        for relax in Relax::ALL {
            assert_eq!(Relax::from_name(relax.name()), Some(relax));
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let policy = strict();
        for written in ["/walker", "/walker/"] {
            let prefix = PathPrefix::new(written, &policy, false).expect("prefix");
            for path in ["/walker", "/walker/", "/walker/secret", "/walker/a/b"] {
                assert!(prefix.matches(path), "{written} covers {path}");
            }
            for path in ["/walkers-guide", "/walker-x/", "/", "/Walker/secret", "/a/walker"] {
                assert!(!prefix.matches(path), "{written} does not cover {path}");
            }
        }
        let root = PathPrefix::new("/", &policy, false).expect("root");
        assert!(root.matches("/") && root.matches("/anything/at/all"));
        let folded = PathPrefix::new("/walker/", &policy, true).expect("prefix");
        assert!(folded.matches("/WALKER/secret") && folded.matches("/Walker"));
        assert!(!folded.matches("/walkers"));
        let a = PathPrefix::new("/a/", &policy, false).expect("prefix");
        let ab = PathPrefix::new("/a/b", &policy, false).expect("prefix");
        let abc = PathPrefix::new("/ab", &policy, false).expect("prefix");
        assert!(a.overlaps(&ab) && ab.overlaps(&a) && root.overlaps(&a));
        assert!(!a.overlaps(&abc));
    }

    #[test]
    fn prefixes_must_be_written_canonically_and_plainly() {
        let policy = strict();
        assert_eq!(PathPrefix::new("walker/", &policy, false), Err(PrefixError::Relative));
        assert_eq!(
            PathPrefix::new("/a/../walker/", &policy, false),
            Err(PrefixError::NotCanonical("/walker/".into()))
        );
        assert_eq!(
            PathPrefix::new("//walker", &policy, false),
            Err(PrefixError::NotCanonical("/walker".into()))
        );
        assert_eq!(
            PathPrefix::new("/%77alker", &policy, false),
            Err(PrefixError::NotCanonical("/walker".into()))
        );
        for ambiguous in ["/a!b", "/a%21b", "/a:b", "/a@b", "/a%20b"] {
            assert_eq!(
                PathPrefix::new(ambiguous, &policy, false),
                Err(PrefixError::Ambiguous),
                "{ambiguous}"
            );
        }
        assert!(PathPrefix::new("/caf%C3%A9/", &policy, false).is_ok());
    }
}
