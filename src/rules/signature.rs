//! OpenSSH detached signatures ("SSHSIG") over batch files and approvals, checked against an
//! OpenSSH `allowed_signers` file.
//!
//! A signature is what `ssh-keygen -Y sign -n NAMESPACE -f KEY FILE` writes to `FILE.sig`; the
//! `allowed_signers` file is the one git uses for SSH-signed commits (`man ssh-keygen`, section
//! ALLOWED SIGNERS): `PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]` a line. [`verify`] answers
//! who signed, or why the signature is refused; [`sign`] signs in process with an unencrypted
//! OpenSSH private key, byte for byte as `ssh-keygen -Y sign` would for an ed25519 key.
//!
//! Accepted keys: `ssh-ed25519`, `ecdsa-sha2-nistp256` and `ssh-rsa` of 2048 to 4096 bits (with
//! `rsa-sha2-256` or `rsa-sha2-512` signatures, never SHA-1). Certificates (`cert-authority`),
//! security keys (`sk-*`) and other curves are refused when the file is parsed, naming the line.
//! [`sign`] signs with ed25519 and ecdsa keys only: rsa keys and encrypted keys are left to
//! `ssh-keygen -Y sign` ([`SignError::falls_back_to_ssh_keygen`]).
//!
//! Everything here is pure: no file or network I/O and no clock. The caller reads the files and
//! passes the current time to [`verify`]. Times in `valid-after` and `valid-before` must be UTC
//! (a trailing `Z`): a time in the machine's local zone would need a clock-and-zone read, so it is
//! refused with a message saying how to write it.

use chrono::{DateTime, NaiveDate};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The namespace batch files are signed in.
pub const BATCH_NAMESPACE: &str = "ccpayout-batch";
/// The namespace approvals ([`approval_message`]) are signed in.
pub const APPROVAL_NAMESPACE: &str = "ccpayout-approval";
/// A signature file larger than this is refused before parsing.
pub const MAX_SIGNATURE_BYTES: usize = 64 * 1024;

const BEGIN_ARMOR: &str = "-----BEGIN SSH SIGNATURE-----";
const END_ARMOR: &str = "-----END SSH SIGNATURE-----";
/// ssh-keygen wraps the base64 of a signature at 70 columns.
const ARMOR_WIDTH: usize = 70;
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;

/// A parsed allowed_signers file: one entry per key line, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedSigners {
    entries: Vec<Entry>,
}

/// One line of an allowed_signers file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The principals field as written (comma-separated, patterns kept as patterns).
    principals: String,
    key: KeyData,
    /// `namespaces="..."`: a pattern list the signature's namespace must match.
    namespaces: Option<String>,
    /// `valid-after="..."`, in Unix seconds.
    valid_after: Option<i64>,
    /// `valid-before="..."`, in Unix seconds.
    valid_before: Option<i64>,
}

/// A line of an allowed_signers file that cannot be read: displayed as "PATH:LINE: message".
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct SignersError {
    /// The file as the caller named it (`source` in [`AllowedSigners::parse`]).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

/// Who signed: the principal(s) of the allowed_signers line(s) naming the key, the key type and
/// the SHA256 fingerprint as `ssh-keygen -l` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signer {
    /// The principals field of the line that allows the signature. When several lines name the
    /// same key and allow it, their principals joined with "," in file order (the first line's
    /// first), each principal once.
    pub principal: String,
    /// The OpenSSH key type, as in the allowed_signers line: "ssh-ed25519", "ecdsa-sha2-nistp256"
    /// or "ssh-rsa".
    pub key_type: String,
    /// "SHA256:" and the unpadded base64 of the key's SHA-256, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Why a signature is refused, in the order [`verify`] checks.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error(
        "the signature file is {bytes} bytes, more than the {MAX_SIGNATURE_BYTES} a signature may be \
         (ssh-keygen writes a few hundred): pass the .sig file that `ssh-keygen -Y sign` wrote, not the signed file"
    )]
    TooLarge { bytes: usize },
    #[error(
        "the signature file is not an ssh signature: {0}; sign the file with \
         `ssh-keygen -Y sign -n NAMESPACE -f KEY FILE`, which writes FILE.sig"
    )]
    NotASignature(String),
    #[error(
        "the signature was made for namespace \"{found}\", not \"{expected}\": \
         sign it with `ssh-keygen -Y sign -n {expected} -f KEY FILE`"
    )]
    WrongNamespace { found: String, expected: String },
    #[error(
        "the signing key {fingerprint} is in no line of the allowed signers file: sign with a listed key, \
         or add the signer's line (`PRINCIPAL KEYTYPE BASE64`, from their KEY.pub) to the file"
    )]
    UnknownKey { fingerprint: String },
    #[error("the key of {principal} is listed but not allowed here: {why}")]
    NotAllowed { principal: String, why: String },
    #[error(
        "the signature does not match the file: the file changed after it was signed, or the signature \
         belongs to another file; sign the file as it is now"
    )]
    Mismatch,
    #[error("{0}")]
    UnsupportedKey(String),
}

/// Why [`sign`] could not sign.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error(
        "the private key is encrypted with a passphrase, which ccpayout does not read: \
         sign with `ssh-keygen -Y sign -n NAMESPACE -f KEY FILE`, which asks for it"
    )]
    Encrypted,
    /// An rsa key: ssh-keygen signs with it, and [`verify`] accepts the result.
    #[error(
        "ccpayout cannot sign with an rsa key itself: sign with `ssh-keygen -Y sign -n NAMESPACE -f KEY FILE`, \
         or use an ed25519 key"
    )]
    Rsa,
    #[error("{0}")]
    NotAKey(String),
    #[error("{0}")]
    UnsupportedKey(String),
    #[error("signing failed: {0}")]
    Failed(String),
}

impl SignError {
    /// Whether `ssh-keygen -Y sign` can sign where [`sign`] cannot: an encrypted key (ssh-keygen
    /// asks for the passphrase) or an rsa key.
    pub fn falls_back_to_ssh_keygen(&self) -> bool {
        matches!(self, SignError::Encrypted | SignError::Rsa)
    }
}

impl AllowedSigners {
    /// Parses the text of an allowed_signers file. `source` names the file in errors:
    /// "PATH:LINE: message".
    ///
    /// Comments (`#`) and blank lines are skipped. A line is `PRINCIPALS [OPTIONS] KEYTYPE BASE64
    /// [COMMENT]`: principals comma-separated (patterns with `*` and `?` kept as written, the field
    /// may be double-quoted); options comma-separated, each value double-quoted as ssh-keygen
    /// requires: `namespaces="a,b"` (a pattern list, `!` negates), `valid-after="YYYYMMDD[HHMM[SS]]Z"`
    /// and `valid-before="..."` (UTC only). `cert-authority` and certificate keys are refused, as
    /// are key types other than those the module doc lists. A line it cannot read is an error
    /// naming the source and line, never skipped.
    pub fn parse(text: &str, source: &str) -> Result<AllowedSigners, SignersError> {
        let mut entries = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = parse_line(line).map_err(|message| SignersError {
                file: source.to_owned(),
                line: index + 1,
                message,
            })?;
            entries.push(entry);
        }
        Ok(AllowedSigners { entries })
    }

    /// How many key lines the file has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every key line as a [`Signer`] (its principals field, key type and fingerprint), in file
    /// order: for `doctor` and logs.
    pub fn signers(&self) -> Vec<Signer> {
        self.entries
            .iter()
            .map(|entry| Signer {
                principal: entry.principals.clone(),
                key_type: entry.key.algorithm().as_str().to_owned(),
                fingerprint: fingerprint_of(&entry.key),
            })
            .collect()
    }
}

/// Parses one non-blank, non-comment line.
fn parse_line(line: &str) -> Result<Entry, String> {
    let fields = split_fields(line)?;
    let Some((&principals_field, rest)) = fields.split_first() else {
        return Err("the line is empty".to_owned());
    };
    let principals = unquote(principals_field);
    if principals.is_empty() || principals.split(',').any(str::is_empty) {
        return Err(format!(
            "the principals field {principals_field:?} has an empty name: write names separated by commas, no spaces"
        ));
    }
    let (options, key_fields) = match rest.split_first() {
        Some((&first, after)) if !looks_like_key_type(first) => (Some(first), after),
        _ => (None, rest),
    };
    let options = match options {
        Some(text) => parse_options(text)?,
        None => Options::default(),
    };
    let [key_type, base64, ..] = key_fields else {
        return Err(
            "the line has no key: write `PRINCIPALS [OPTIONS] KEYTYPE BASE64`, the key part copied from the signer's KEY.pub"
                .to_owned(),
        );
    };
    if key_type.contains("-cert-v0") {
        return Err(format!(
            "{key_type} is a certificate, and certificates are not supported: list the signer's plain public key"
        ));
    }
    let key = PublicKey::from_openssh(&format!("{key_type} {base64}")).map_err(|e| {
        format!(
            "cannot read the {key_type} key ({}): copy the key type and base64 from the signer's KEY.pub",
            describe(&e)
        )
    })?;
    let key = key.key_data().clone();
    check_key_supported(&key)?;
    Ok(Entry {
        principals: principals.to_owned(),
        key,
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
    })
}

/// Splits a line on whitespace outside double quotes.
fn split_fields(line: &str) -> Result<Vec<&str>, String> {
    let mut fields = Vec::new();
    let mut start: Option<usize> = None;
    let mut quoted = false;
    for (at, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
        }
        if c.is_whitespace() && !quoted {
            if let Some(from) = start.take() {
                fields.push(&line[from..at]);
            }
        } else if start.is_none() {
            start = Some(at);
        }
    }
    if quoted {
        return Err("a double quote is not closed".to_owned());
    }
    if let Some(from) = start {
        fields.push(&line[from..]);
    }
    Ok(fields)
}

fn unquote(field: &str) -> &str {
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
}

/// Whether a field is a key type rather than options: key types have these shapes, options never.
fn looks_like_key_type(field: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-", "rsa-"]
        .iter()
        .any(|prefix| field.starts_with(prefix))
}

#[derive(Debug, Default)]
struct Options {
    namespaces: Option<String>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

/// Parses the options field: `name` or `name="value"`, comma-separated.
fn parse_options(text: &str) -> Result<Options, String> {
    let mut options = Options::default();
    let mut rest = text;
    while !rest.is_empty() {
        let name_end = rest.find([',', '=']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = &rest[name_end..];
        let value = if let Some(after) = rest.strip_prefix('=') {
            let Some(inner) = after.strip_prefix('"') else {
                return Err(format!("the value of {name} must be in double quotes: {name}=\"...\""));
            };
            let Some(close) = inner.find('"') else {
                return Err(format!("the value of {name} has no closing double quote"));
            };
            rest = &inner[close + 1..];
            Some(&inner[..close])
        } else {
            None
        };
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None if rest.is_empty() => {}
            None => return Err(format!("expected a comma after option {name}, found {rest:?}")),
        }
        let lower = name.to_ascii_lowercase();
        match (lower.as_str(), value) {
            ("cert-authority", _) => {
                return Err(
                    "cert-authority lines are not supported: ccpayout checks signatures by plain keys, \
                     not certificates; list each signer's own public key instead"
                        .to_owned(),
                );
            }
            ("namespaces", Some(value)) => {
                if options.namespaces.is_some() {
                    return Err("namespaces is given twice: list every namespace in one namespaces=\"a,b\"".to_owned());
                }
                if value.is_empty() {
                    return Err("namespaces=\"\" allows no namespace: remove the option or name one".to_owned());
                }
                options.namespaces = Some(value.to_owned());
            }
            ("valid-after", Some(value)) => {
                if options.valid_after.is_some() {
                    return Err("valid-after is given twice".to_owned());
                }
                options.valid_after = Some(parse_time("valid-after", value)?);
            }
            ("valid-before", Some(value)) => {
                if options.valid_before.is_some() {
                    return Err("valid-before is given twice".to_owned());
                }
                options.valid_before = Some(parse_time("valid-before", value)?);
            }
            ("namespaces" | "valid-after" | "valid-before", None) => {
                return Err(format!("option {name} needs a value: {name}=\"...\""));
            }
            _ => {
                return Err(format!(
                    "unknown option {name:?}: the options are namespaces=\"...\", valid-after=\"...\" and \
                     valid-before=\"...\", comma-separated with no spaces"
                ));
            }
        }
    }
    if let (Some(after), Some(before)) = (options.valid_after, options.valid_before)
        && before <= after
    {
        return Err("valid-before is not after valid-after: the line would never be valid".to_owned());
    }
    Ok(options)
}

/// Parses `YYYYMMDD[HHMM[SS]]Z` (UTC) into Unix seconds.
fn parse_time(option: &str, value: &str) -> Result<i64, String> {
    let Some(digits) = value.strip_suffix(['Z', 'z']) else {
        return Err(format!(
            "{option}=\"{value}\" is in local time, which ccpayout does not read: write it in UTC with a \
             trailing Z, {option}=\"{value}Z\" (after converting it to UTC)"
        ));
    };
    let bad =
        || format!("{option}=\"{value}\" is not a time: write YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS and a Z (UTC)");
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let number = |from: usize, to: usize| digits.get(from..to).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    let year = i32::try_from(number(0, 4)).map_err(|_| bad())?;
    let time = NaiveDate::from_ymd_opt(year, number(4, 6), number(6, 8))
        .and_then(|date| date.and_hms_opt(number(8, 10), number(10, 12), number(12, 14)))
        .ok_or_else(bad)?;
    Ok(time.and_utc().timestamp())
}

fn show_time(unix: i64) -> String {
    match DateTime::from_timestamp(unix, 0) {
        Some(time) => time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => format!("{unix} (Unix seconds)"),
    }
}

/// OpenSSH's `match_pattern`: `*` matches any run of characters, `?` any one character.
fn match_pattern(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// OpenSSH's `match_pattern_list`: true when some pattern matches and no negated (`!`) one does.
fn match_pattern_list(text: &str, list: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if match_pattern(text, negated) => return false,
            Some(_) => {}
            None => matched |= match_pattern(text, pattern),
        }
    }
    matched
}

/// Refuses the key types this module does not verify, saying what to use instead.
fn check_key_supported(key: &KeyData) -> Result<(), String> {
    match key {
        KeyData::Ed25519(_) => Ok(()),
        KeyData::Ecdsa(ecdsa) if ecdsa.curve() == EcdsaCurve::NistP256 => Ok(()),
        KeyData::Rsa(rsa) => {
            let bits = rsa.n.as_positive_bytes().map_or(0, |bytes| match bytes.first() {
                Some(top) => (bytes.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
                None => 0,
            });
            if (RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                Ok(())
            } else {
                Err(format!(
                    "the ssh-rsa key has {bits} bits; rsa keys of {RSA_MIN_BITS} to {RSA_MAX_BITS} bits are \
                     accepted: make a new key with `ssh-keygen -t ed25519`"
                ))
            }
        }
        other => Err(format!(
            "{} keys are not supported: use ssh-ed25519 (`ssh-keygen -t ed25519`), ecdsa-sha2-nistp256 \
             or ssh-rsa",
            other.algorithm().as_str()
        )),
    }
}

/// The SHA256 fingerprint as `ssh-keygen -l` prints it.
fn fingerprint_of(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The SHA256 fingerprint ("SHA256:...", as `ssh-keygen -lf KEY.pub` prints it) of an OpenSSH
/// public key line (`KEYTYPE BASE64 [COMMENT]`, the text of a KEY.pub).
pub fn public_key_fingerprint(public_key_openssh: &str) -> Result<String, SignError> {
    let key = PublicKey::from_openssh(public_key_openssh.trim()).map_err(|e| {
        SignError::NotAKey(format!(
            "not an openssh public key ({}): give the text of a KEY.pub, `KEYTYPE BASE64 [COMMENT]`",
            describe(&e)
        ))
    })?;
    Ok(fingerprint_of(key.key_data()))
}

/// The crate's error text, lowercased to match this module's messages.
fn describe(error: &ssh_key::Error) -> String {
    error.to_string().to_lowercase()
}

/// Verifies `signature` (the bytes of the .sig file) over `message` in `namespace` at `now_unix`
/// (Unix seconds), against `signers`.
///
/// Checks, in this order: the size ([`SignatureError::TooLarge`]), the armor and decoding
/// ([`SignatureError::NotASignature`]), the namespace ([`SignatureError::WrongNamespace`]), that
/// some line names the key ([`SignatureError::UnknownKey`]), that some such line's options
/// allow it (namespaces, valid-after, valid-before: [`SignatureError::NotAllowed`]), and last the
/// signature itself ([`SignatureError::Mismatch`]). Signatures over SHA-256 and SHA-512 are
/// accepted.
pub fn verify(
    signers: &AllowedSigners,
    namespace: &str,
    message: &[u8],
    signature: &[u8],
    now_unix: i64,
) -> Result<Signer, SignatureError> {
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Err(SignatureError::TooLarge { bytes: signature.len() });
    }
    let sig = decode_armored(signature)?;
    if sig.namespace() != namespace {
        return Err(SignatureError::WrongNamespace {
            found: sig.namespace().to_owned(),
            expected: namespace.to_owned(),
        });
    }
    let key = sig.public_key();
    let naming: Vec<&Entry> = signers.entries.iter().filter(|entry| entry.key == *key).collect();
    let Some(first) = naming.first() else {
        return Err(SignatureError::UnknownKey {
            fingerprint: fingerprint_of(key),
        });
    };
    let allowing: Vec<&Entry> = naming
        .iter()
        .copied()
        .filter(|entry| refusal(entry, namespace, now_unix).is_none())
        .collect();
    if allowing.is_empty() {
        return Err(SignatureError::NotAllowed {
            principal: first.principals.clone(),
            why: refusal(first, namespace, now_unix).unwrap_or_default(),
        });
    }
    if let Algorithm::Rsa { hash: None } = sig.algorithm() {
        return Err(SignatureError::UnsupportedKey(
            "the signature is ssh-rsa over sha-1, which is refused: sign again with ssh-keygen from openssh 8.2 \
             or later (it signs rsa-sha2-512)"
                .to_owned(),
        ));
    }
    let public = PublicKey::new(key.clone(), "");
    public
        .verify(namespace, message, &sig)
        .map_err(|_| SignatureError::Mismatch)?;
    let mut principals: Vec<&str> = Vec::new();
    for entry in &allowing {
        for principal in entry.principals.split(',') {
            if !principals.contains(&principal) {
                principals.push(principal);
            }
        }
    }
    Ok(Signer {
        principal: principals.join(","),
        key_type: key.algorithm().as_str().to_owned(),
        fingerprint: fingerprint_of(key),
    })
}

/// Why `entry` does not allow a signature in `namespace` at `now`, or `None` if it does.
fn refusal(entry: &Entry, namespace: &str, now: i64) -> Option<String> {
    if let Some(namespaces) = &entry.namespaces
        && !match_pattern_list(namespace, namespaces)
    {
        return Some(format!(
            "its line says namespaces=\"{namespaces}\", which does not include \"{namespace}\": \
             add {namespace} to the line, or sign with another key"
        ));
    }
    if let Some(after) = entry.valid_after
        && now < after
    {
        return Some(format!(
            "its line is valid only from {} (valid-after)",
            show_time(after)
        ));
    }
    if let Some(before) = entry.valid_before
        && now > before
    {
        return Some(format!("its line expired at {} (valid-before)", show_time(before)));
    }
    None
}

/// Decodes an armored signature the way ssh-keygen does: the BEGIN line first (after leading
/// whitespace), base64 in any wrapping and line ending, up to the END line.
fn decode_armored(bytes: &[u8]) -> Result<SshSig, SignatureError> {
    let not = |why: &str| SignatureError::NotASignature(why.to_owned());
    let text = std::str::from_utf8(bytes).map_err(|_| not("it is not text"))?;
    let Some(after_begin) = text.trim_start().strip_prefix(BEGIN_ARMOR) else {
        return Err(not(&format!("it does not start with {BEGIN_ARMOR}")));
    };
    let Some(end) = after_begin.find(END_ARMOR) else {
        return Err(not(&format!("it has no {END_ARMOR} line (is it cut short?)")));
    };
    let body: String = after_begin[..end].chars().filter(|c| !c.is_whitespace()).collect();
    if body.is_empty() {
        return Err(not("it has no base64 between its BEGIN and END lines"));
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(not("its body is not base64"));
    }
    let mut pem = String::with_capacity(body.len() + body.len() / ARMOR_WIDTH + 64);
    pem.push_str(BEGIN_ARMOR);
    pem.push('\n');
    for chunk in body.as_bytes().chunks(ARMOR_WIDTH) {
        // The body is ASCII, so every chunk is valid UTF-8.
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str(END_ARMOR);
    pem.push('\n');
    SshSig::from_pem(&pem).map_err(|e| match e {
        ssh_key::Error::Version { number } => not(&format!(
            "it is version {number} of the format, and only version 1 is known"
        )),
        other => SignatureError::NotASignature(format!("it cannot be decoded ({})", describe(&other))),
    })
}

/// Signs `message` in `namespace` with an unencrypted OpenSSH private key (the text of the key
/// file), with SHA-512 as ssh-keygen does, and returns the armored signature exactly as
/// `ssh-keygen -Y sign` writes it (70-column base64, LF line endings, a final newline).
///
/// An encrypted key is [`SignError::Encrypted`] and an rsa key [`SignError::Rsa`]: the caller
/// then falls back to ssh-keygen ([`SignError::falls_back_to_ssh_keygen`]).
pub fn sign(private_key_openssh: &str, namespace: &str, message: &[u8]) -> Result<String, SignError> {
    let key = PrivateKey::from_openssh(private_key_openssh.trim()).map_err(|e| {
        SignError::NotAKey(format!(
            "not an openssh private key ({}): give a key file that starts with \
             -----BEGIN OPENSSH PRIVATE KEY----- (`ssh-keygen -p -f KEY` rewrites an older one)",
            describe(&e)
        ))
    })?;
    if key.is_encrypted() {
        return Err(SignError::Encrypted);
    }
    check_key_supported(key.public_key().key_data()).map_err(SignError::UnsupportedKey)?;
    if key.public_key().key_data().is_rsa() {
        // ssh-key 0.6.7 builds the RSA private key from p twice instead of p and q, so RSA signing
        // always fails there (fixed upstream after 0.6.7); verifying RSA signatures works.
        return Err(SignError::Rsa);
    }
    if namespace.is_empty() {
        return Err(SignError::Failed("the namespace is empty".to_owned()));
    }
    let signature = key
        .sign(namespace, HashAlg::Sha512, message)
        .map_err(|e| SignError::Failed(describe(&e)))?;
    let mut armored = signature
        .to_pem(LineEnding::LF)
        .map_err(|e| SignError::Failed(describe(&e)))?;
    if !armored.ends_with('\n') {
        armored.push('\n');
    }
    Ok(armored)
}

/// The bytes an approver signs in [`APPROVAL_NAMESPACE`]:
/// `"ccpayout approval v1\nbatch {batch_id}\ndigest {digest}\n"`, the digest lowercased.
///
/// Batch ids and hex digests hold no newline, so the three lines cannot be confused.
pub fn approval_message(batch_id: &str, digest: &str) -> Vec<u8> {
    format!(
        "ccpayout approval v1\nbatch {batch_id}\ndigest {}\n",
        digest.to_ascii_lowercase()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/signing/",
                $name
            ))
        };
    }

    const ALLOWED: &str = fixture!("allowed_signers");
    const BATCH: &str = fixture!("batch.csv");
    const ALICE_SIG: &str = fixture!("batch.csv.sig");
    const ALICE_KEY: &str = fixture!("alice");
    const ALICE_PUB: &str = fixture!("alice.pub");
    const CAROL_KEY: &str = fixture!("carol");
    const DAVE_KEY: &str = fixture!("dave");
    /// `ssh-keygen -lf alice.pub`.
    const ALICE_FINGERPRINT: &str = "SHA256:gkteShvS9LPYB5AaPYvUakxuE2QcPmWIpO9f6buq0kA";
    const CAROL_FINGERPRINT: &str = "SHA256:0PkBVLO0Ph2qjCH3z15NPlTHSz7QlZ8n1OxLwpSMruI";
    const DAVE_FINGERPRINT: &str = "SHA256:sINIT/nBzUYUNlxM27wgxvQ2Gk/9cDLtvSjXIcawYuI";
    const MALLORY_FINGERPRINT: &str = "SHA256:NZ4cZzK/n0iPbeveiAn5REvkV6QZkSeiregob4df8j0";
    /// 2026-01-01 00:00:00 UTC.
    const NOW: i64 = 1_767_225_600;

    fn signers() -> AllowedSigners {
        AllowedSigners::parse(ALLOWED, "allowed_signers").expect("the fixture parses")
    }

    fn verify_batch(signature: &str) -> Result<Signer, SignatureError> {
        verify(&signers(), BATCH_NAMESPACE, BATCH.as_bytes(), signature.as_bytes(), NOW)
    }

    /// The key part (`KEYTYPE BASE64`) of a .pub file.
    fn key_part(public: &str) -> String {
        public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    fn parse_error(text: &str) -> SignersError {
        AllowedSigners::parse(text, "signers.txt").expect_err("the line is refused")
    }

    #[test]
    fn ssh_keygen_signature_verifies_and_names_alice() {
        let signer = verify_batch(ALICE_SIG).expect("alice's signature verifies");
        assert_eq!(
            signer,
            Signer {
                principal: "alice".to_owned(),
                key_type: "ssh-ed25519".to_owned(),
                fingerprint: ALICE_FINGERPRINT.to_owned(),
            }
        );
    }

    #[test]
    fn ssh_keygen_rsa_and_ecdsa_signatures_verify() {
        let dave = verify_batch(fixture!("batch.csv.dave.sig")).expect("dave's rsa signature verifies");
        assert_eq!((dave.principal.as_str(), dave.key_type.as_str()), ("dave", "ssh-rsa"));
        assert_eq!(dave.fingerprint, DAVE_FINGERPRINT);
        let carol = verify(
            &signers(),
            APPROVAL_NAMESPACE,
            BATCH.as_bytes(),
            fixture!("batch.csv.carol-approval.sig").as_bytes(),
            NOW,
        )
        .expect("carol may sign approvals");
        assert_eq!(
            (
                carol.principal.as_str(),
                carol.key_type.as_str(),
                carol.fingerprint.as_str()
            ),
            ("carol", "ecdsa-sha2-nistp256", CAROL_FINGERPRINT)
        );
    }

    #[test]
    fn a_file_changed_by_one_byte_is_a_mismatch() {
        let signers = signers();
        let mut altered = BATCH.as_bytes().to_vec();
        let last_digit = altered.len() - 2; // "10\n" -> "11\n"
        altered[last_digit] = b'1';
        assert_ne!(altered, BATCH.as_bytes());
        let result = verify(&signers, BATCH_NAMESPACE, &altered, ALICE_SIG.as_bytes(), NOW);
        assert_eq!(result, Err(SignatureError::Mismatch));
        let mut appended = BATCH.as_bytes().to_vec();
        appended.push(b'\n');
        assert_eq!(
            verify(&signers, BATCH_NAMESPACE, &appended, ALICE_SIG.as_bytes(), NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_forged_signature_body_is_a_mismatch() {
        // alice's signature with its last signature byte flipped: still decodes, names alice's
        // key, but does not verify.
        let signature = SshSig::from_pem(ALICE_SIG).expect("fixture decodes");
        let mut bytes = signature.signature_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let forged = SshSig::new(
            signature.public_key().clone(),
            signature.namespace(),
            signature.hash_alg(),
            ssh_key::Signature::new(signature.algorithm(), bytes).expect("a signature value"),
        )
        .expect("a signature")
        .to_pem(LineEnding::LF)
        .expect("encodes");
        assert_eq!(verify_batch(&forged), Err(SignatureError::Mismatch));
    }

    #[test]
    fn bobs_signature_in_another_namespace_is_refused() {
        assert_eq!(
            verify_batch(fixture!("batch.csv.bob-wrong-ns.sig")),
            Err(SignatureError::WrongNamespace {
                found: "file".to_owned(),
                expected: BATCH_NAMESPACE.to_owned()
            })
        );
        // Alice's batch signature is no approval either.
        let result = verify(
            &signers(),
            APPROVAL_NAMESPACE,
            BATCH.as_bytes(),
            ALICE_SIG.as_bytes(),
            NOW,
        );
        assert!(
            matches!(result, Err(SignatureError::WrongNamespace { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn mallory_is_an_unknown_key() {
        assert_eq!(
            verify_batch(fixture!("batch.csv.mallory.sig")),
            Err(SignatureError::UnknownKey {
                fingerprint: MALLORY_FINGERPRINT.to_owned()
            })
        );
    }

    #[test]
    fn carol_may_not_sign_batches() {
        let result = verify_batch(fixture!("batch.csv.carol.sig"));
        let Err(SignatureError::NotAllowed { principal, why }) = result else {
            panic!("expected NotAllowed, got {result:?}");
        };
        assert_eq!(principal, "carol");
        assert!(
            why.contains("namespaces=\"ccpayout-approval\"") && why.contains("ccpayout-batch"),
            "{why}"
        );
    }

    #[test]
    fn validity_window_is_enforced_inclusively() {
        let line = |options: &str| format!("alice {options} {}\n", key_part(ALICE_PUB));
        let check = |text: &str, now: i64| {
            let signers = AllowedSigners::parse(text, "t").expect("parses");
            verify(&signers, BATCH_NAMESPACE, BATCH.as_bytes(), ALICE_SIG.as_bytes(), now)
        };
        // valid-before in the past.
        let expired = line("valid-before=\"20200101Z\"");
        let result = check(&expired, NOW);
        let Err(SignatureError::NotAllowed { principal, why }) = result else {
            panic!("expected NotAllowed, got {result:?}");
        };
        assert_eq!(principal, "alice");
        assert!(why.contains("expired at 2020-01-01 00:00:00 UTC"), "{why}");
        // valid-after in the future.
        let future = line("valid-after=\"20300101000000Z\"");
        let result = check(&future, NOW);
        assert!(
            matches!(&result, Err(SignatureError::NotAllowed { why, .. }) if why.contains("valid only from 2030-01-01")),
            "{result:?}"
        );
        // Both ends are inclusive, as in ssh-keygen.
        let window = line("valid-after=\"202601010000Z\",valid-before=\"20260102Z\"");
        assert!(check(&window, NOW).is_ok());
        assert!(check(&window, NOW + 86_400).is_ok());
        assert!(check(&window, NOW - 1).is_err());
        assert!(check(&window, NOW + 86_401).is_err());
    }

    #[test]
    fn another_line_for_the_same_key_can_allow_it() {
        let key = key_part(ALICE_PUB);
        let text = format!(
            "alice valid-before=\"20200101Z\" {key}\n\
             alice@example.com,ops namespaces=\"ccpayout-*\" {key}\n\
             \"ops,audit\" namespaces=\"ccpayout-batch\" {key}\n\
             nobody namespaces=\"file\" {key}\n"
        );
        let signers = AllowedSigners::parse(&text, "t").expect("parses");
        assert_eq!(signers.len(), 4);
        let signer = verify(&signers, BATCH_NAMESPACE, BATCH.as_bytes(), ALICE_SIG.as_bytes(), NOW).expect("allowed");
        assert_eq!(signer.principal, "alice@example.com,ops,audit");
    }

    #[test]
    fn namespace_patterns_match_like_openssh() {
        assert!(match_pattern_list("ccpayout-batch", "ccpayout-*"));
        assert!(match_pattern_list("ccpayout-batch", "file,ccpayout-b?tch"));
        assert!(!match_pattern_list("ccpayout-batch", "ccpayout-*,!ccpayout-batch"));
        assert!(!match_pattern_list("ccpayout-batch", "!file"));
        assert!(!match_pattern_list("ccpayout-batch", "ccpayout"));
        assert!(match_pattern("abc", "*"));
        assert!(match_pattern("abcabd", "*abd"));
        assert!(!match_pattern("ab", "a?c"));
    }

    #[test]
    fn a_signature_over_64_kib_is_refused_before_parsing() {
        let huge = vec![b'a'; MAX_SIGNATURE_BYTES + 1];
        let result = verify(&signers(), BATCH_NAMESPACE, BATCH.as_bytes(), &huge, NOW);
        assert_eq!(
            result,
            Err(SignatureError::TooLarge {
                bytes: MAX_SIGNATURE_BYTES + 1
            })
        );
        let at_limit = vec![b'a'; MAX_SIGNATURE_BYTES];
        let result = verify(&signers(), BATCH_NAMESPACE, BATCH.as_bytes(), &at_limit, NOW);
        assert!(matches!(result, Err(SignatureError::NotASignature(_))), "{result:?}");
    }

    #[test]
    fn text_that_is_no_signature_is_refused() {
        let cut_short = &ALICE_SIG[..ALICE_SIG.len() / 2];
        let missing_bytes = ALICE_SIG.replacen("U1NIU0lH", "U1NI", 1);
        let no_sshsig = format!("{BEGIN_ARMOR}\naGVsbG8gd29ybGQ=\n{END_ARMOR}\n");
        let not_base64 = format!("{BEGIN_ARMOR}\nnot base64!\n{END_ARMOR}\n");
        for (input, why) in [
            ("order_id,coin\npay-1,USDT\n", "does not start with"),
            ("", "does not start with"),
            (cut_short, "no -----END SSH SIGNATURE-----"),
            (missing_bytes.as_str(), "cannot be decoded"),
            (no_sshsig.as_str(), "cannot be decoded"),
            (not_base64.as_str(), "not base64"),
        ] {
            let result = verify_batch(input);
            assert!(
                matches!(&result, Err(SignatureError::NotASignature(text)) if text.contains(why)),
                "{input:?}: {result:?}"
            );
        }
        let binary = verify(&signers(), BATCH_NAMESPACE, BATCH.as_bytes(), &[0xff, 0xfe, 0], NOW);
        assert_eq!(binary, Err(SignatureError::NotASignature("it is not text".to_owned())));
    }

    #[test]
    fn rewrapped_and_crlf_signatures_still_verify() {
        let crlf = ALICE_SIG.replace('\n', "\r\n");
        assert!(verify_batch(&crlf).is_ok());
        let body: String = ALICE_SIG
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let one_line = format!("\n  {BEGIN_ARMOR}\n{body}\n{END_ARMOR}");
        assert_eq!(verify_batch(&one_line).map(|s| s.principal), Ok("alice".to_owned()));
    }

    #[test]
    fn sign_ed25519_matches_ssh_keygen_byte_for_byte() {
        // Ed25519 signatures are deterministic, so ours equals the one ssh-keygen wrote.
        let ours = sign(ALICE_KEY, BATCH_NAMESPACE, BATCH.as_bytes()).expect("signs");
        assert_eq!(ours, ALICE_SIG);
        let signer = verify_batch(&ours).expect("verifies");
        assert_eq!(signer.fingerprint, ALICE_FINGERPRINT);
    }

    #[test]
    fn sign_then_verify_round_trips_for_each_key_type() {
        let message = approval_message("b-20260101-0001", "ABCDEF0123");
        for (key, principal) in [(ALICE_KEY, "alice"), (CAROL_KEY, "carol")] {
            let signature = sign(key, APPROVAL_NAMESPACE, &message).expect("signs");
            assert!(signature.starts_with(BEGIN_ARMOR) && signature.ends_with(&format!("{END_ARMOR}\n")));
            assert!(signature.lines().all(|line| line.len() <= ARMOR_WIDTH), "{signature}");
            let signer = verify(&signers(), APPROVAL_NAMESPACE, &message, signature.as_bytes(), NOW).expect("verifies");
            assert_eq!(signer.principal, principal);
            let other = approval_message("b-20260101-0002", "abcdef0123");
            assert_eq!(
                verify(&signers(), APPROVAL_NAMESPACE, &other, signature.as_bytes(), NOW),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn a_signature_made_by_sign_and_checked_by_ssh_keygen_verifies() {
        // Made by sign() with carol's key; `ssh-keygen -Y verify` accepted it (see the README).
        let message = approval_message("b-20260101-0001", "abcdef0123");
        assert_eq!(message, fixture!("approval.txt").as_bytes());
        let signer = verify(
            &signers(),
            APPROVAL_NAMESPACE,
            &message,
            fixture!("approval.carol.sig").as_bytes(),
            NOW,
        )
        .expect("verifies");
        assert_eq!(signer.principal, "carol");
    }

    #[test]
    fn sign_refuses_encrypted_and_non_keys() {
        assert_eq!(
            sign(fixture!("locked"), BATCH_NAMESPACE, b"x"),
            Err(SignError::Encrypted)
        );
        assert!(SignError::Encrypted.to_string().contains("ssh-keygen -Y sign"));
        assert!(SignError::Encrypted.falls_back_to_ssh_keygen());
        // RSA signing is broken in ssh-key 0.6.7; ssh-keygen signs and verify() accepts (see
        // ssh_keygen_rsa_and_ecdsa_signatures_verify).
        assert_eq!(sign(DAVE_KEY, BATCH_NAMESPACE, b"x"), Err(SignError::Rsa));
        assert!(SignError::Rsa.falls_back_to_ssh_keygen());
        for not_a_key in [
            ALICE_PUB,
            "",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        ] {
            let result = sign(not_a_key, BATCH_NAMESPACE, b"x");
            assert!(
                matches!(&result, Err(SignError::NotAKey(why)) if why.contains("not an openssh private key")),
                "{result:?}"
            );
        }
        assert!(matches!(sign(ALICE_KEY, "", b"x"), Err(SignError::Failed(_))));
        assert!(!SignError::Failed("x".to_owned()).falls_back_to_ssh_keygen());
    }

    #[test]
    fn parse_skips_comments_and_blank_lines_and_reads_options() {
        let signers = signers();
        assert_eq!(signers.len(), 4);
        assert!(!signers.is_empty());
        let listed = signers.signers();
        assert_eq!(listed[0].fingerprint, ALICE_FINGERPRINT);
        assert_eq!(listed[2].key_type, "ecdsa-sha2-nistp256");
        assert!(
            AllowedSigners::parse("# nothing\n\n   \n", "t")
                .expect("parses")
                .is_empty()
        );
        let with_bom = format!("\u{feff}alice {}\r\n", key_part(ALICE_PUB));
        let parsed = AllowedSigners::parse(&with_bom, "t").expect("a BOM and CRLF are fine");
        assert_eq!(parsed.signers()[0].principal, "alice");
        let key = key_part(ALICE_PUB);
        let text = format!(
            "  alice   NAMESPACES=\"a,b\",Valid-After=\"20240101Z\",valid-before=\"20990101z\"\t{key} alice@laptop\n"
        );
        let parsed = AllowedSigners::parse(&text, "t").expect("parses");
        let entry = &parsed.entries[0];
        assert_eq!(entry.namespaces.as_deref(), Some("a,b"));
        assert_eq!(entry.valid_after, Some(1_704_067_200));
        assert_eq!(entry.valid_before, Some(4_070_908_800));
    }

    #[test]
    fn parse_errors_name_the_file_and_line() {
        let key = key_part(ALICE_PUB);
        let cases = [
            (format!("# ok\nalice {key}\nbob ssh-ed25519 AAAAnotakey\n"), 3, "cannot read the ssh-ed25519 key"),
            (format!("alice bogus=\"x\" {key}\n"), 1, "unknown option \"bogus\""),
            (format!("\nalice restrict {key}\n"), 2, "unknown option \"restrict\""),
            (format!("ca@example.com cert-authority {key}\n"), 1, "cert-authority lines are not supported"),
            (format!("alice namespaces=ccpayout-batch {key}\n"), 1, "must be in double quotes"),
            (format!("alice namespaces=\"a {key}\n"), 1, "double quote is not closed"),
            (format!("alice valid-after=\"20240101\" {key}\n"), 1, "local time"),
            (format!("alice valid-after=\"2024-01-01Z\" {key}\n"), 1, "is not a time"),
            (format!("alice valid-after=\"20240230Z\" {key}\n"), 1, "is not a time"),
            (format!("alice valid-after=\"20250101Z\",valid-before=\"20240101Z\" {key}\n"), 1, "never be valid"),
            (format!("alice namespaces=\"a\",namespaces=\"b\" {key}\n"), 1, "given twice"),
            ("alice\n".to_owned(), 1, "has no key"),
            ("alice ssh-ed25519\n".to_owned(), 1, "has no key"),
            (format!("alice,,bob {key}\n"), 1, "empty name"),
            ("alice ssh-ed25519-cert-v01@openssh.com AAAA\n".to_owned(), 1, "certificates are not supported"),
            (format!("alice {}\n", key.replace("ssh-ed25519", "ecdsa-sha2-nistp256")), 1, "cannot read"),
            (
                "erin ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBIBDlE8TLIIbPfwdkszTW6ZlIoQsG3pBo/ySD7KWRZ1Eo3wcmxRo6GFTmjjsLrBBN71bJ3SnNox7eRtnYoaiTkuhpyR8Pj4Dw1aDSSfwymb0CygAjANCcCqtleVKcFQKHg==\n".to_owned(),
                1,
                "ecdsa-sha2-nistp384 keys are not supported",
            ),
            (
                "tiny ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDFGadz8+CaZqPQWN1l0BxTMYAaLQKl7KfTrFeXGFKAlWNFxedVn9cXyJjTsddrFxzEVKHBeEeL8xqJktBE6+zpvcWPlNFDLr1TBiXsgPcJwFmLFiERJo6YF6eRBQzBoXw6eJXeXDwY4+9UWaHdmOKsUcOzlx2Rie90DVIwuEtigQ==\n".to_owned(),
                1,
                "has 1024 bits",
            ),
        ];
        for (text, line, message) in cases {
            let error = parse_error(&text);
            assert_eq!(
                (error.file.as_str(), error.line),
                ("signers.txt", line),
                "{text:?}: {error}"
            );
            assert!(error.message.contains(message), "{text:?}: {error}");
            assert!(
                error.to_string().starts_with(&format!("signers.txt:{line}: ")),
                "{error}"
            );
        }
    }

    #[test]
    fn approval_message_is_stable() {
        assert_eq!(
            approval_message("b-20260101-0001", "ABCdef0123"),
            b"ccpayout approval v1\nbatch b-20260101-0001\ndigest abcdef0123\n".to_vec()
        );
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        assert_eq!(public_key_fingerprint(ALICE_PUB), Ok(ALICE_FINGERPRINT.to_owned()));
        assert_eq!(
            public_key_fingerprint(fixture!("dave.pub")),
            Ok(DAVE_FINGERPRINT.to_owned())
        );
        assert!(matches!(public_key_fingerprint("nonsense"), Err(SignError::NotAKey(_))));
    }

    #[test]
    fn messages_are_lowercase_and_say_what_to_do() {
        let errors = [
            SignatureError::TooLarge { bytes: 70_000 },
            SignatureError::NotASignature("it is not text".to_owned()),
            SignatureError::WrongNamespace {
                found: "file".to_owned(),
                expected: BATCH_NAMESPACE.to_owned(),
            },
            SignatureError::UnknownKey {
                fingerprint: MALLORY_FINGERPRINT.to_owned(),
            },
            SignatureError::Mismatch,
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
        }
        let wrong = SignatureError::WrongNamespace {
            found: "file".to_owned(),
            expected: BATCH_NAMESPACE.to_owned(),
        };
        assert!(
            wrong
                .to_string()
                .contains("ssh-keygen -Y sign -n ccpayout-batch -f KEY FILE")
        );
    }
}
