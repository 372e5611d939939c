//! Secret detection over bytes: one multi-pattern pass finds anchors, then small hand-written
//! validators check the shape around each anchor.
//!
//! A regex per rule (what gitleaks and trivy do) walks the data once per rule; here one
//! Aho-Corasick automaton walks it once for every rule at once, and only the rare anchor
//! hits pay for validation. Text and binary data are treated alike, so a token compiled into
//! an executable is found too. Values are never kept: a hit carries its span, and reports
//! show the first four characters and a hash ([`redact`]).

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use sha2::{Digest as _, Sha256};

use crate::Severity;

/// A kind of secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    /// Stable id (use it in `.kilnignore`).
    pub id: &'static str,
    /// What it is.
    pub title: &'static str,
    /// How bad a leak is.
    pub severity: Severity,
}

macro_rules! rules {
    ($($name:ident = $id:literal, $title:literal, $sev:ident;)*) => {
        $(
            #[doc = $title]
            pub const $name: Rule = Rule { id: $id, title: $title, severity: Severity::$sev };
        )*
        /// Every rule, for documentation and SARIF rule lists.
        pub const RULES: &[Rule] = &[$($name),*];
    };
}

rules! {
    AWS_ACCESS_KEY = "aws-access-key-id", "AWS access key ID", Critical;
    AWS_SECRET_KEY = "aws-secret-access-key", "AWS secret access key", Critical;
    GCP_API_KEY = "gcp-api-key", "Google Cloud API key", High;
    GCP_OAUTH_SECRET = "gcp-oauth-client-secret", "Google OAuth client secret", High;
    AZURE_STORAGE_KEY = "azure-storage-account-key", "Azure storage account key", Critical;
    AZURE_CLIENT_SECRET = "azure-client-secret", "Azure AD client secret", High;
    GITHUB_TOKEN = "github-token", "GitHub token", Critical;
    GITHUB_PAT = "github-fine-grained-pat", "GitHub fine-grained personal access token", Critical;
    GITLAB_TOKEN = "gitlab-token", "GitLab token", Critical;
    SLACK_TOKEN = "slack-token", "Slack token", High;
    SLACK_WEBHOOK = "slack-webhook-url", "Slack incoming webhook URL", Medium;
    STRIPE_KEY = "stripe-secret-key", "Stripe secret key", Critical;
    NPM_TOKEN = "npm-access-token", "npm access token", Critical;
    PYPI_TOKEN = "pypi-upload-token", "PyPI upload token", Critical;
    PRIVATE_KEY = "private-key", "Private key (PEM or OpenSSH)", High;
    JWT = "jwt", "JSON Web Token", Medium;
    URL_CREDENTIALS = "url-credentials", "Password in a URL", High;
    GENERIC = "generic-secret-assignment", "High-entropy value assigned to a secret-looking name", Medium;
}

/// One secret found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Which rule.
    pub rule: Rule,
    /// Byte span of the secret value.
    pub start: usize,
    /// End of the span.
    pub end: usize,
}

#[derive(Clone, Copy)]
enum Anchor {
    Aws,
    GcpKey,
    GcpOauth,
    AzureKey,
    AzureClient,
    Github,
    GithubPat,
    Gitlab,
    Slack,
    SlackHook,
    Stripe,
    Npm,
    Pypi,
    PemBegin,
    Jwt,
    Url,
    Name,
}

const ANCHORS: &[(&str, Anchor)] = &[
    ("AKIA", Anchor::Aws),
    ("ASIA", Anchor::Aws),
    ("AIza", Anchor::GcpKey),
    ("GOCSPX-", Anchor::GcpOauth),
    ("AccountKey=", Anchor::AzureKey),
    ("Q~", Anchor::AzureClient),
    ("ghp_", Anchor::Github),
    ("gho_", Anchor::Github),
    ("ghu_", Anchor::Github),
    ("ghs_", Anchor::Github),
    ("ghr_", Anchor::Github),
    ("github_pat_", Anchor::GithubPat),
    ("glpat-", Anchor::Gitlab),
    ("glrt-", Anchor::Gitlab),
    ("gldt-", Anchor::Gitlab),
    ("xoxb-", Anchor::Slack),
    ("xoxp-", Anchor::Slack),
    ("xoxa-", Anchor::Slack),
    ("xoxr-", Anchor::Slack),
    ("xoxs-", Anchor::Slack),
    ("xoxe-", Anchor::Slack),
    ("hooks.slack.com/services/", Anchor::SlackHook),
    ("sk_live_", Anchor::Stripe),
    ("rk_live_", Anchor::Stripe),
    ("sk_test_", Anchor::Stripe),
    ("npm_", Anchor::Npm),
    ("pypi-AgEIcHlwaS5vcmc", Anchor::Pypi),
    ("-----BEGIN ", Anchor::PemBegin),
    ("eyJ", Anchor::Jwt),
    ("://", Anchor::Url),
    // Secret-looking names (matched case-insensitively).
    ("secret", Anchor::Name),
    ("passw", Anchor::Name),
    ("token", Anchor::Name),
    ("apikey", Anchor::Name),
    ("api_key", Anchor::Name),
    ("api-key", Anchor::Name),
    ("access_key", Anchor::Name),
    ("accesskey", Anchor::Name),
    ("credential", Anchor::Name),
    ("private_key", Anchor::Name),
];

static AUTOMATON: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(ANCHORS.iter().map(|(p, _)| p.as_bytes()))
        .expect("the anchor patterns are valid")
});

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}
fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}
fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='
}

/// Length of the run of bytes satisfying `f` from `at`.
fn run(data: &[u8], at: usize, f: impl Fn(u8) -> bool) -> usize {
    data[at.min(data.len())..].iter().take_while(|&&c| f(c)).count()
}

/// True if `at` is at a token boundary (start of data or a byte that is not `f`).
fn boundary_before(data: &[u8], at: usize, f: impl Fn(u8) -> bool) -> bool {
    at == 0 || !f(data[at - 1])
}

/// Finds every secret in `data`, in order of position.
pub fn scan(data: &[u8]) -> Vec<Hit> {
    let mut hits = Vec::new();
    let mut last_end = 0usize;
    for m in AUTOMATON.find_iter(data) {
        if m.start() < last_end {
            continue;
        }
        let (pat, anchor) = ANCHORS[m.pattern().as_usize()];
        let exact = &data[m.start()..m.end()] == pat.as_bytes();
        let hit = match anchor {
            // A specific rule inside the assigned value names the secret better.
            Anchor::Name => name_assignment(data, m.start(), m.end()).map(|h| specific_in(data, &h).unwrap_or(h)),
            _ if !exact => None,
            // A token used as a URL's password is reported as that token.
            Anchor::Url => url_credentials(data, m.start(), m.end()).map(|h| specific_in(data, &h).unwrap_or(h)),
            a => fixed(data, a, m.start(), m.end()),
        };
        if let Some(h) = hit {
            last_end = h.end;
            // A private-key block is a key whatever its body says; other values may be examples.
            if h.rule == PRIVATE_KEY || !allowed(&data[h.start..h.end]) {
                hits.push(h);
            }
        }
    }
    hits
}

/// The first fixed-prefix rule matching inside `h`'s span.
fn specific_in(data: &[u8], h: &Hit) -> Option<Hit> {
    let input = aho_corasick::Input::new(data).span(h.start..h.end);
    AUTOMATON.find_iter(input).find_map(|m| {
        let (pat, anchor) = ANCHORS[m.pattern().as_usize()];
        if matches!(anchor, Anchor::Name) || &data[m.start()..m.end()] != pat.as_bytes() {
            return None;
        }
        fixed(data, anchor, m.start(), m.end())
    })
}

/// Values that are documentation examples, not secrets.
fn allowed(value: &[u8]) -> bool {
    let v = String::from_utf8_lossy(value).to_ascii_lowercase();
    [
        "example",
        "dummy",
        "placeholder",
        "changeme",
        "xxxxxxxx",
        "00000000",
        "redacted",
        "<your",
        "your_",
    ]
    .iter()
    .any(|w| v.contains(w))
}

fn hit(rule: Rule, start: usize, end: usize) -> Option<Hit> {
    Some(Hit { rule, start, end })
}

/// Validators for the anchors with a fixed prefix.
fn fixed(data: &[u8], anchor: Anchor, s: usize, e: usize) -> Option<Hit> {
    match anchor {
        Anchor::Aws => {
            let n = run(data, e, |c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c));
            (boundary_before(data, s, is_alnum) && n == 16 && !data.get(e + n).is_some_and(|c| is_alnum(*c)))
                .then_some(())?;
            hit(AWS_ACCESS_KEY, s, e + 16)
        }
        Anchor::GcpKey => {
            let n = run(data, e, is_b64url);
            (boundary_before(data, s, is_b64url) && n == 35).then_some(())?;
            hit(GCP_API_KEY, s, e + n)
        }
        Anchor::GcpOauth => {
            let n = run(data, e, is_b64url);
            (n == 28).then_some(())?;
            hit(GCP_OAUTH_SECRET, s, e + n)
        }
        Anchor::AzureKey => {
            let n = run(data, e, is_b64);
            (86..=88).contains(&n).then_some(())?;
            hit(AZURE_STORAGE_KEY, e, e + n)
        }
        Anchor::AzureClient => {
            // [A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}
            let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'~' || c == b'.';
            (s >= 4 && data[s - 1].is_ascii_digit() && data[s - 4..s - 1].iter().all(|&c| ok(c))).then_some(())?;
            (boundary_before(data, s - 4, ok)).then_some(())?;
            let n = run(data, e, |c| ok(c) || c == b'-');
            (31..=34).contains(&n).then_some(())?;
            hit(AZURE_CLIENT_SECRET, s - 4, e + n)
        }
        Anchor::Github => {
            let n = run(data, e, is_alnum);
            (boundary_before(data, s, is_alnum) && n == 36).then_some(())?;
            hit(GITHUB_TOKEN, s, e + n)
        }
        Anchor::GithubPat => {
            let n = run(data, e, |c| is_alnum(c) || c == b'_');
            (n >= 82).then_some(())?;
            hit(GITHUB_PAT, s, e + n)
        }
        Anchor::Gitlab => {
            let n = run(data, e, is_b64url);
            (boundary_before(data, s, is_alnum) && (20..=64).contains(&n) && has_digit(&data[e..e + n]))
                .then_some(())?;
            hit(GITLAB_TOKEN, s, e + n)
        }
        Anchor::Slack => {
            let n = run(data, e, |c| is_alnum(c) || c == b'-');
            let body = &data[e..e + n];
            let dashes = body.iter().filter(|&&c| c == b'-').count();
            (n >= 20 && dashes >= 2 && has_digit(body)).then_some(())?;
            hit(SLACK_TOKEN, s, e + n)
        }
        Anchor::SlackHook => {
            let n = run(data, e, |c| is_alnum(c) || c == b'/');
            let parts: Vec<&[u8]> = data[e..e + n].split(|&c| c == b'/').collect();
            (parts.len() >= 3
                && parts[0].first() == Some(&b'T')
                && parts[1].first() == Some(&b'B')
                && parts[2].len() >= 20)
                .then_some(())?;
            hit(SLACK_WEBHOOK, s, e + n)
        }
        Anchor::Stripe => {
            let n = run(data, e, is_alnum);
            (boundary_before(data, s, is_alnum) && (24..=247).contains(&n) && has_digit(&data[e..e + n]))
                .then_some(())?;
            hit(STRIPE_KEY, s, e + n)
        }
        Anchor::Npm => {
            let n = run(data, e, is_alnum);
            (boundary_before(data, s, is_alnum) && n == 36 && has_digit(&data[e..e + n])).then_some(())?;
            hit(NPM_TOKEN, s, e + n)
        }
        Anchor::Pypi => {
            let n = run(data, e, is_b64url);
            (n >= 50).then_some(())?;
            hit(PYPI_TOKEN, s, e + n)
        }
        Anchor::PemBegin => pem(data, s, e),
        Anchor::Jwt => jwt(data, s),
        Anchor::Url => url_credentials(data, s, e),
        Anchor::Name => None,
    }
}

fn has_digit(b: &[u8]) -> bool {
    b.iter().any(u8::is_ascii_digit)
}

/// Base64 characters the first body line of a key block needs at least (real ones have 64).
const MIN_KEY_LINE: usize = 8;

/// How far a key block is followed (the largest RSA keys are about 12 KiB of base64).
const MAX_KEY_BLOCK: usize = 16 * 1024;

/// A private-key block: `-----BEGIN … PRIVATE KEY-----` (PEM, PKCS #8, OpenSSH, OpenPGP) ending
/// its line, optional RFC 1421 / OpenPGP armor headers (`Proc-Type:`, `DEK-Info:`,
/// `Version:`), then a line of base64. That is a key, whatever its body looks like. Lines end
/// with a newline, or with the two characters `\n` of a JSON or shell string (a service
/// account's `private_key`). A header alone is not a key: a parser's string constant
/// (`"-----BEGIN RSA PRIVATE KEY-----\n"` in source), or a header followed by anything but a
/// base64 line.
fn pem(data: &[u8], _s: usize, e: usize) -> Option<Hit> {
    let label_len = data[e..].iter().take(48).position(|&c| c == b'-')?;
    let label = &data[e..e + label_len];
    if !(label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK")) {
        return None;
    }
    let after = e + label_len;
    if !data[after..].starts_with(b"-----") {
        return None;
    }
    let limit = (after + MAX_KEY_BLOCK).min(data.len());
    let mut i = line_break(data, after + 5, limit)?;
    // Armor headers, and the blank line after them.
    for _ in 0..8 {
        let (start, end, next) = key_line(data, i, limit);
        let line = &data[start..end];
        let is_header = line.first().is_some_and(u8::is_ascii_alphabetic)
            && line
                .iter()
                .position(|&c| c == b':')
                .is_some_and(|colon| line[..colon].iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-'));
        if !(is_header || (line.is_empty() && next > i)) {
            break;
        }
        i = next;
    }
    let (first, first_end, _) = key_line(data, i, limit);
    let mut end = first;
    loop {
        let (start, stop, next) = key_line(data, i, limit);
        if start == stop || !data[start..stop].iter().all(|&c| is_b64(c)) {
            break;
        }
        // The span runs to the start of the next line, as it always has, so a key's redacted
        // hash stays the same across kiln versions.
        if next == i {
            end = stop;
            break;
        }
        end = next;
        i = next;
    }
    // The first body line is base64 (the loop took it) and long enough to be one.
    (end > first && first_end - first >= MIN_KEY_LINE).then_some(())?;
    hit(PRIVATE_KEY, first, end)
}

/// The position after a line break at `at` (spaces before it allowed): `\n`, `\r\n`, or the
/// escapes `\\n` and `\\r\\n` of a string literal.
fn line_break(data: &[u8], at: usize, limit: usize) -> Option<usize> {
    let rest = &data[at.min(limit)..limit];
    let spaces = rest.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    let rest = &rest[spaces..];
    for nl in [&b"\r\n"[..], b"\n", b"\\r\\n", b"\\n"] {
        if rest.starts_with(nl) {
            return Some(at + spaces + nl.len());
        }
    }
    None
}

/// The line of a key block starting at `at`: where its text starts and ends (without
/// surrounding spaces or its break), and where the next line starts (`at` itself when this
/// one runs to `limit` without a break).
fn key_line(data: &[u8], at: usize, limit: usize) -> (usize, usize, usize) {
    let at = at.min(limit);
    let rest = &data[at..limit];
    let mut n = 0;
    while n < rest.len() && rest[n] != b'\n' && !rest[n..].starts_with(b"\\n") && !rest[n..].starts_with(b"\\r\\n") {
        n += 1;
    }
    let text = &rest[..n];
    let lead = text.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let trail = text[lead..]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_whitespace())
        .count();
    let next = line_break(data, at + n, limit).unwrap_or(at);
    (at + lead, at + n - trail, next)
}

/// base64url without padding, as JWTs write it; a final lone character (six bits, no whole
/// byte) is dropped rather than refused, so a truncated header still decodes.
fn b64url_decode(s: &[u8]) -> Vec<u8> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const JWT_B64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let whole = if s.len() % 4 == 1 { &s[..s.len() - 1] } else { s };
    JWT_B64.decode(whole).unwrap_or_default()
}

/// `header.payload.signature`, base64url, whose header decodes to JSON naming `alg`.
fn jwt(data: &[u8], s: usize) -> Option<Hit> {
    if !boundary_before(data, s, is_b64url) {
        return None;
    }
    let h = run(data, s, is_b64url);
    if h < 10 || data.get(s + h) != Some(&b'.') {
        return None;
    }
    let p0 = s + h + 1;
    let p = run(data, p0, is_b64url);
    if p < 10 || data.get(p0 + p) != Some(&b'.') {
        return None;
    }
    let s0 = p0 + p + 1;
    let sig = run(data, s0, is_b64url);
    if sig < 16 {
        return None;
    }
    let header = b64url_decode(&data[s..s + h]);
    if !header.windows(5).any(|w| w == b"\"alg\"") {
        return None;
    }
    hit(JWT, s, s0 + sig)
}

/// `scheme://user:password@host`, with placeholders (`${PASS}`, `<password>`, `pass`) left alone.
fn url_credentials(data: &[u8], s: usize, e: usize) -> Option<Hit> {
    let scheme = data[..s]
        .iter()
        .rev()
        .take(32)
        .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'.' || c == b'-')
        .count();
    if scheme < 2 {
        return None;
    }
    let userinfo_ok = |c: u8| !(c.is_ascii_whitespace() || b"/?#@\"'`<>\\[]{}|^".contains(&c)) && c >= 0x21;
    let n = data[e..].iter().take(256).take_while(|&&c| userinfo_ok(c)).count();
    if data.get(e + n) != Some(&b'@') {
        return None;
    }
    let userinfo = &data[e..e + n];
    let colon = userinfo.iter().position(|&c| c == b':')?;
    let user = &userinfo[..colon];
    let pass = &userinfo[colon + 1..];
    // A host must follow.
    let host = run(data, e + n + 1, |c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
    if host == 0 || user.is_empty() || pass.len() < 4 {
        return None;
    }
    if pass.starts_with(b"$") || pass.starts_with(b"%") || pass.starts_with(b"*") || pass.contains(&b'$') {
        return None;
    }
    let lower = String::from_utf8_lossy(pass).to_ascii_lowercase();
    // Words documentation uses for a password (apt's package descriptions show
    // `mysql://keystone:foobar@127.0.0.1/keystone`).
    if [
        "pass",
        "password",
        "passwd",
        "secret",
        "pwd",
        "token",
        "user",
        "username",
        "foobar",
        "foobaz",
        "quux",
        "xyzzy",
        "test",
        "testing",
        "mypassword",
        "mysecret",
    ]
    .contains(&lower.as_str())
    {
        return None;
    }
    if pass.iter().all(|&c| c == pass[0]) {
        return None;
    }
    let start = e + colon + 1;
    hit(URL_CREDENTIALS, start, start + pass.len())
}

use kiln_oci::entropy::bits_per_byte as entropy;

/// `NAME = value`, `NAME: "value"`, `"NAME": "value"`, `NAME := value` where NAME contains the
/// keyword and the value looks random (length, entropy, letters and digits).
fn name_assignment(data: &[u8], s: usize, e: usize) -> Option<Hit> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.';
    let name_start = s - data[..s].iter().rev().take(64).take_while(|&&c| ident(c)).count();
    let mut i = e + run(data, e, ident);
    let name = &data[name_start..i];
    // Optional closing quote of a JSON/YAML key, spaces, then the operator.
    if matches!(data.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    i += run(data, i, |c| c == b' ' || c == b'\t');
    match data.get(i..i + 2) {
        Some(b":=") | Some(b"=>") => i += 2,
        // Comparisons and paths (`a == b`, `secret::Key`) are code.
        Some(b"==") | Some(b"::") => return None,
        _ => match data.get(i) {
            Some(b'=') | Some(b':') => i += 1,
            _ => return None,
        },
    }
    i += run(data, i, |c| c == b' ' || c == b'\t');
    let quote = match data.get(i) {
        Some(&q @ (b'"' | b'\'' | b'`')) => {
            i += 1;
            Some(q)
        }
        _ => None,
    };
    let value_ok = |c: u8| match quote {
        Some(q) => c != q && c != b'\n' && c != b'\r' && c != b' ' && c != b'\\',
        // Unquoted values end at anything a token would not contain (code, markup).
        None => c.is_ascii_alphanumeric() || b"+/=_-.~!@#%^*".contains(&c),
    };
    let n = data[i..].iter().take(257).take_while(|&&c| value_ok(c)).count();
    if !(16..=256).contains(&n) {
        return None;
    }
    let value = &data[i..i + n];
    // A path (`/etc/x`, `./key.pem`), but not base64 that happens to start with `/`.
    let path_like = (value[0] == b'/' || value[0] == b'.') && !value.iter().any(|&c| c == b'+' || c == b'=');
    if path_like || value[0] == b'$' || value[0] == b'<' || value[0] == b'%' {
        return None;
    }
    if value.windows(2).any(|w| w == b"${" || w == b"{{" || w == b"$(") {
        return None;
    }
    // A value cut short by code syntax (`Key<T>`, `a::b`, `f(x)`, `&x`) is not a literal.
    if quote.is_none() && matches!(data.get(i + n), Some(b'(' | b'<' | b':' | b'[' | b'{' | b'&')) {
        return None;
    }
    if quote.is_none() && value.contains(&b'_') && value.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_') {
        // An unquoted identifier (`TLS13_AES_128_GCM_SHA256`): a constant's name.
        return None;
    }
    // URLs, ARNs, elided examples (`eyJ...`), UUIDs (request ids) and dotted names
    // (`pkg.module.Class`) are not secret literals.
    if value.windows(3).any(|w| w == b"://" || w == b"...") || value.starts_with(b"arn:") {
        return None;
    }
    if is_uuid(value) || is_dotted_name(value) {
        return None;
    }
    let letters = value.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let digits = value.iter().filter(|c| c.is_ascii_digit()).count();
    if letters == 0 || digits == 0 || entropy(value) < 3.5 {
        return None;
    }
    // Dotted identifiers and words joined by underscores are code, not secrets.
    let symbols = value.iter().filter(|c| !c.is_ascii_alphanumeric()).count();
    if value
        .iter()
        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.')
        && digits * 4 < n
    {
        return None;
    }
    if symbols * 3 > n {
        return None;
    }
    let lname = String::from_utf8_lossy(name).to_ascii_lowercase();
    // Pagination and request tokens are opaque but not secret (API docs are full of them).
    let squashed: String = lname.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if [
        "nexttoken",
        "pagetoken",
        "continuationtoken",
        "paginationtoken",
        "startingtoken",
        "clienttoken",
        "idempotencytoken",
        "csrftoken",
        "tokentype",
        "maxtokens",
    ]
    .iter()
    .any(|w| squashed.contains(w))
    {
        return None;
    }
    let rule = if lname.contains("aws") && n == 40 && value.iter().all(|&c| is_b64(c)) {
        AWS_SECRET_KEY
    } else {
        GENERIC
    };
    hit(rule, i, i + n)
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// `a.b.C` made of identifiers (a module path, a type).
fn is_dotted_name(v: &[u8]) -> bool {
    let parts: Vec<&[u8]> = v.split(|&c| c == b'.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            p.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                && p.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        })
}

/// How a secret is shown: its first four characters and a short SHA-256 of the whole value,
/// so two reports can be compared without either revealing it.
pub fn redact(value: &[u8]) -> String {
    let head: String = String::from_utf8_lossy(&value[..value.len().min(4)]).into_owned();
    let h = Sha256::digest(value);
    format!("{head}… (sha256:{})", &hex::encode(h)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &str) -> Vec<&'static str> {
        scan(s.as_bytes()).iter().map(|h| h.rule.id).collect()
    }

    #[test]
    fn finds_each_kind() {
        let cases = [
            ("key=AKIAZ3MPLQWERTYUIOP2\n", "aws-access-key-id"),
            (
                "aws_secret_access_key = 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\n",
                "aws-secret-access-key",
            ),
            (
                "aws_secret_access_key = /YzL+dCi08wOhMIxwNHreL/aSIE+YS64kt2RUMot\n",
                "aws-secret-access-key",
            ),
            ("k: AIzaSyDq3mX9zK2-fL8wN4vB7cT1yH6jR0pQ5sU\n", "gcp-api-key"),
            ("t=ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5\n", "github-token"),
            ("glpat-Xy7zQ9vB2nM4kL6pR8sT\n", "gitlab-token"),
            (
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx\n",
                "slack-token",
            ),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc9\n", "stripe-secret-key"),
            (
                "//registry.npmjs.org/:_authToken=npm_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5\n",
                "npm-access-token",
            ),
            (
                "password = pypi-AgEIcHlwaS5vcmcCJGE4ZjU5YzQ3LTM1YjMtNDY3Zi1iNmE4LWQ3ZmZiYjgxOTc1OQACKlszLCI\n",
                "pypi-upload-token",
            ),
            ("postgres://admin:S3cr3tPw0rd@db.internal:5432/app\n", "url-credentials"),
            (
                "API_TOKEN=\"f3a9c1e7b2d84a6f9e0c5b7d1a3f8e2c\"\n",
                "generic-secret-assignment",
            ),
            (
                "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;",
                "azure-storage-account-key",
            ),
            (
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "jwt",
            ),
        ];
        for (text, id) in cases {
            assert_eq!(ids(text), [id], "{text}");
        }
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDx0V3m2rVvF1Z2lYb9pJ4m1o3QwZ5z8y3X2Q9Z7v5rAAAAJj2kP9R9pD/\n-----END OPENSSH PRIVATE KEY-----\n";
        assert_eq!(ids(key), ["private-key"]);
    }

    #[test]
    fn innocent_text_is_quiet() {
        let quiet = [
            "const PEM_HEADER = \"-----BEGIN RSA PRIVATE KEY-----\";",
            "password = os.environ[\"DB_PASSWORD\"]",
            "token = request.headers.get(\"Authorization\")",
            "\"js-tokens\": \"^4.0.0\",",
            "postgres://user:password@localhost/db",
            "secret_key = settings.SECRET_KEY_FALLBACK_VALUE",
            "AKIAIOSFODNN7EXAMPLE",
            "max_tokens = 4096",
            ":type  tokens: antlr4.BufferedTokenStream.BufferedTokenStream",
            "\"RequestToken\": \"20999d87-e304-4725-ad84-832dcbfd7fc5\"",
            "\"token_url\": \"https://graph.facebook.com/v2.9/oauth/access_token\"",
            "\"PurchaseToken\": \"eyJ2IjoiMSIsInMiOjEsImMiOi...\"",
            "\"PreTokenGeneration\": \"arn:aws:lambda:us-west-2:123456789012:function:MyPreTokenGenerationFunction\"",
            "\"NextToken\": \"abCDeFGhiJKlmnOPqrSTuvwxYZ1aBCdEFghijK7LM51nOpqRSTuv3WxY3ZabC5dEFGhI2Jk3LmnoPQ6RST9\"",
            "url = \"https://${USER}:${PASS}@host\"",
            "if password == \"a8f5f167f44f4964e6c998dee827110c\":",
            // apt's Translation-en (python3-os-apply-config's description).
            "  connection = mysql://keystone:foobar@127.0.0.1/keystone",
        ];
        for q in quiet {
            assert!(ids(q).is_empty(), "{q}: {:?}", ids(q));
        }
    }

    /// A deterministic base64 body of `n` characters in 64-character lines.
    fn body(n: usize) -> String {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let chars: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % 64) as usize]
            })
            .collect();
        chars
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_key_block_is_a_finding_whatever_its_body_looks_like() {
        let b = body(900);
        let blocks = [
            format!("-----BEGIN RSA PRIVATE KEY-----\n{b}\n-----END RSA PRIVATE KEY-----\n"),
            format!(
                "-----BEGIN PRIVATE KEY-----\r\n{}\r\n-----END PRIVATE KEY-----\r\n",
                b.replace('\n', "\r\n")
            ),
            format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{b}\n-----END OPENSSH PRIVATE KEY-----"),
            format!(
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0123456789ABCDEF0123456789ABCDEF\n\n{b}\n-----END RSA PRIVATE KEY-----\n"
            ),
            format!(
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n{b}\n=AbCd\n-----END PGP PRIVATE KEY BLOCK-----\n"
            ),
            // Short, placeholder-looking and repetitive bodies are still key blocks.
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIexample\n-----END EC PRIVATE KEY-----\n".to_string(),
            "-----BEGIN RSA PRIVATE KEY-----\nxxxxxxxxxxxxxxxxxxxxxxxx\n-----END RSA PRIVATE KEY-----\n".to_string(),
            // A JSON string (a cloud service account's key file).
            format!(
                "{{\"type\": \"service_account\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{}\\n-----END PRIVATE KEY-----\\n\"}}",
                b.replace('\n', "\\n")
            ),
        ];
        for block in &blocks {
            assert_eq!(ids(block), ["private-key"], "{block}");
            // In a binary too.
            let mut bin = b"\x7fELF\0\0\0".to_vec();
            bin.extend_from_slice(block.as_bytes());
            bin.extend_from_slice(b"\0\0");
            assert_eq!(scan(&bin).len(), 1, "{block}");
        }
        // The reported span is the body, which redaction shows four characters of.
        let h = &scan(blocks[0].as_bytes())[0];
        assert!(blocks[0][h.start..h.end].starts_with(&b[..64]));
        assert!(blocks[0][h.start..h.end].ends_with(&format!("{}\n", &b[b.len() - 4..])));
    }

    #[test]
    fn a_header_alone_is_not_a_key() {
        let quiet = [
            // Parsers' string constants in source.
            "static const char *hdr = \"-----BEGIN RSA PRIVATE KEY-----\\n\";\n",
            "PEM = b'-----BEGIN PRIVATE KEY-----'\nDER = b'0\\x82'\n",
            "const char k[] = \"-----BEGIN RSA PRIVATE KEY-----\\n\"\n\"MIIEowIBAAKCAQEA\\n\";\n",
            // Templates and elided examples.
            "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\n<your private key here>\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nMIIE\n",
            // Not private keys.
            "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEt1Ru6Hh8yGkQyKRqM1xaZmRWvJ0w\n",
        ];
        for q in quiet {
            assert!(ids(q).is_empty(), "{q}: {:?}", ids(q));
        }
        // Header strings in a binary, NUL-terminated, each followed by other strings.
        let mut bin = b"\x7fELF\0".to_vec();
        for label in ["RSA ", "DSA ", "EC ", "", "ENCRYPTED ", "OPENSSH "] {
            bin.extend_from_slice(format!("-----BEGIN {label}PRIVATE KEY-----").as_bytes());
            bin.extend_from_slice(b"\0%s: cannot parse key\0\x01\x02");
        }
        assert!(scan(&bin).is_empty());
    }

    #[test]
    fn redaction_keeps_four_characters() {
        let r = redact(b"AKIAZ3MPLQWERTYUIOP2");
        assert!(r.starts_with("AKIA… (sha256:"), "{r}");
        assert!(!r.contains("Z3MP"));
    }
}
