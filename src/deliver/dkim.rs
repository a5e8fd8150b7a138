//! DKIM signing (RFC 6376) of a built message, relaxed/relaxed, with an
//! RSA or an Ed25519 key (RFC 8463). Pure: the signing time comes in.
//!
//! Ed25519 keys and signatures, and the `DKIM-Signature` field, are
//! mail-auth's (0.13, on its `ring` backend: the last with ring, and the
//! last that builds on rustc 1.95). RSA signatures are OpenSSL's (the
//! `openssl` crate, behind mail-auth's `SigningKey` trait), because RSA-2048
//! is what most senders use and ring signs it at about half OpenSSL's speed.
//! One run of `cargo bench --bench dkim` (the example letter, one thread,
//! everything a signature costs): RSA-2048 2,072 signs/s with OpenSSL
//! against 1,347 for mail-auth's own ring signer and 587 for the `rsa`
//! crate signer of before (3.5x), 85% of `openssl speed`'s bare signatures;
//! Ed25519 10,909/s (1.5x before). In a send at concurrency 4
//! (bench/send.sh) RSA went from 0.41x of the unsigned rate with ring to
//! 0.44x. RSA keys of 1024 to 8192 bits are taken (RFC 8301: use 2048).
//!
//! Picking and canonicalizing the headers stays here: mail-auth's
//! `DkimSigner::sign` stamps `t=` from the system clock (0.13 has no way to
//! pass a time in) and lists absent header names in `h=`. Signed: From, To,
//! Subject, Date, Message-ID, Reply-To, List-Unsubscribe,
//! List-Unsubscribe-Post, MIME-Version, those present. Not Content-Type
//! (DESIGN.md 5: relays rewrite its folding). Not lettre's `dkim` feature:
//! it signs only lettre's own `Message`, and letterpress builds the bytes
//! itself (message.rs).

use base64::Engine as _;
use mail_auth::common::crypto::{Algorithm, CryptoError, Ed25519Key, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter as _, Writable, Writer};
use mail_auth::dkim::{Canonicalization, Signature};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivatePkcs8KeyDer;

const SIGNED: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
];

/// A DKIM signing key.
enum Key {
    Rsa(OpensslRsa),
    Ed25519(Ed25519Key),
}

/// An RSA private key, signing RSASSA-PKCS1-v1_5 with SHA-256 through
/// OpenSSL.
struct OpensslRsa(openssl::pkey::PKey<openssl::pkey::Private>);

impl SigningKey for OpensslRsa {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(1024);
        input.write(&mut data);
        let crypto = |e: openssl::error::ErrorStack| {
            mail_auth::Error::Crypto(CryptoError::Library(e.to_string()))
        };
        let mut signer =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &self.0)
                .map_err(crypto)?;
        signer.sign_oneshot_to_vec(&data).map_err(crypto)
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::RsaSha256
    }
}

impl SigningKey for Key {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        match self {
            Key::Rsa(k) => k.sign(input),
            Key::Ed25519(k) => k.sign(input),
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            Key::Rsa(k) => k.algorithm(),
            Key::Ed25519(k) => k.algorithm(),
        }
    }
}

/// A loaded key with its selector and domain.
pub struct Signer {
    key: Key,
    selector: String,
    domain: String,
}

// One signer serves every sender thread.
const _: () = send_and_sync::<Signer>();
const fn send_and_sync<T: Send + Sync>() {}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("selector", &self.selector)
            .field("domain", &self.domain)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a key: PEM PKCS#1 (`RSA PRIVATE KEY`), PEM PKCS#8 (`PRIVATE
    /// KEY`, RSA or Ed25519, as `openssl genpkey` writes them), or the
    /// base64 of a raw 32-byte Ed25519 seed. Errors say which forms work.
    pub fn new(key_text: &str, selector: &str, domain: &str) -> Result<Signer, String> {
        // PKCS#1 or PKCS#8 PEM; RFC 8301: at least 1024 bits, and 2048 is
        // what to use.
        let rsa = |pem: &str| {
            openssl::pkey::PKey::private_key_from_pem(pem.as_bytes())
                .ok()
                .filter(|k| k.rsa().is_ok() && (1024..=8192).contains(&k.bits()))
                .map(|k| Key::Rsa(OpensslRsa(k)))
                .ok_or_else(|| "not a usable RSA key (1024 to 8192 bits; use 2048)".to_string())
        };
        let text = key_text.trim();
        let key = if text.contains("BEGIN RSA PRIVATE KEY") {
            rsa(text)?
        } else if text.contains("BEGIN PRIVATE KEY") {
            let der = PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes())
                .map_err(|e| format!("not a usable RSA or Ed25519 key: {e}"))?;
            match Ed25519Key::from_pkcs8_maybe_unchecked_der(der.secret_pkcs8_der()) {
                Ok(k) => Key::Ed25519(k),
                Err(_) => rsa(text).map_err(|e| format!("not an Ed25519 key, and {e}"))?,
            }
        } else {
            let seed = base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(
                    "is neither a PEM private key (RSA or Ed25519) nor the base64 of a \
                     32-byte Ed25519 seed",
                )?;
            let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(&ed25519_pkcs8(&seed))
                .map_err(|e| format!("not a usable Ed25519 seed: {e}"))?;
            Key::Ed25519(key)
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        };
        if !ok(selector) || !ok(domain) {
            return Err(format!(
                "selector `{selector}` and domain `{domain}` must be DNS names"
            ));
        }
        Ok(Signer {
            key,
            selector: selector.into(),
            domain: domain.into(),
        })
    }

    fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// Returns the message with a `DKIM-Signature` header in front, `t=`
    /// being `time` (left out when `time` is not after 1970).
    pub fn sign(&self, eml: &[u8], time: i64) -> Vec<u8> {
        let split = find(eml, b"\r\n\r\n").map_or(eml.len(), |i| i + 2);
        let (head, body) = (&eml[..split], eml.get(split + 2..).unwrap_or(b""));
        let headers = parse_headers(head);
        let mut h = Vec::new();
        let mut data = Vec::with_capacity(1024);
        for want in SIGNED {
            // The last occurrence, as RFC 6376 5.4.2 has verifiers pick.
            if let Some((name, value)) = headers
                .iter()
                .rev()
                .find(|(n, _)| n.eq_ignore_ascii_case(want))
            {
                h.push(want.to_ascii_lowercase());
                relaxed_header(name, value, &mut data);
                data.extend_from_slice(b"\r\n");
            }
        }
        let mut signature = Signature {
            v: 1,
            a: self.key.algorithm(),
            d: self.domain.clone(),
            s: self.selector.clone(),
            h,
            bh: self
                .key
                .hash(relaxed_body(body).as_slice())
                .as_ref()
                .to_vec(),
            t: u64::try_from(time).unwrap_or(0),
            ch: Canonicalization::Relaxed,
            cb: Canonicalization::Relaxed,
            ..Signature::default()
        };
        // ring fails to sign only when the output buffer is not the
        // modulus length (mail-auth sizes it) or the system RNG fails.
        signature.b = self
            .key
            .sign(Signed {
                headers: &data,
                signature: &signature,
            })
            .expect("ring signs with a key it loaded");
        let mut field = Vec::with_capacity(512);
        signature.write_header(&mut field);
        let mut out = Vec::with_capacity(field.len() + eml.len() + 16);
        fold(&field, &mut out);
        out.extend_from_slice(eml);
        out
    }
}

/// What the signature covers (RFC 6376 3.7): the signed headers, then the
/// `DKIM-Signature` field itself, relaxed, with an empty `b=`; mail-auth
/// writes that form of the field.
struct Signed<'a> {
    headers: &'a [u8],
    signature: &'a Signature,
}

impl Writable for Signed<'_> {
    fn write(self, writer: &mut impl Writer) {
        writer.write(self.headers);
        self.signature.write(writer, false);
    }
}

/// The PKCS#8 v1 form (RFC 8410) of a raw Ed25519 seed, as `openssl
/// genpkey` writes it: a fixed prefix, then the 32 bytes.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// mail-auth folds the field near 76 columns but keeps `v=`, `a=`, `s=`,
/// `d=` and `c=` on the first line, which passes 78 with an ordinary
/// selector and domain. A line over 78 is broken after its last `;` that
/// fits: verifiers unfold the break to the single space that was signed.
fn fold(field: &[u8], out: &mut Vec<u8>) {
    const MAX: usize = 78;
    for line in field.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\r\n").unwrap_or(line).len();
        let (mut rest, mut lead) = (line, 0);
        while lead + text - (line.len() - rest.len()) > MAX {
            match rest[..MAX - lead].windows(2).rposition(|w| w == b"; ") {
                Some(i) if i > 0 => {
                    out.extend_from_slice(&rest[..=i]);
                    out.extend_from_slice(b"\r\n\t");
                    rest = &rest[i + 2..];
                    lead = 1;
                }
                _ => break,
            }
        }
        out.extend_from_slice(rest);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// (name, raw value with folding) for each header of `head`.
fn parse_headers(head: &[u8]) -> Vec<(&str, &[u8])> {
    let mut out: Vec<(&str, &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let end = find(&head[i..], b"\r\n").map_or(head.len(), |p| i + p);
        let next = end + 2;
        let continues = head.get(next).is_some_and(|&c| c == b' ' || c == b'\t');
        if !continues {
            let field = &head[start..end];
            if let Some(colon) = field.iter().position(|&c| c == b':') {
                if let Ok(name) = std::str::from_utf8(&field[..colon]) {
                    out.push((name.trim(), &field[colon + 1..]));
                }
            }
            start = next;
        }
        i = next;
    }
    out
}

/// RFC 6376 3.4.2: lower-case name, unfolded value, runs of whitespace to
/// one space, none at the ends.
fn relaxed_header(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.trim().bytes().map(|b| b.to_ascii_lowercase()));
    out.push(b':');
    let mut space = false;
    let mut any = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && any {
                    out.push(b' ');
                }
                space = false;
                any = true;
                out.push(b);
            }
        }
    }
}

/// RFC 6376 3.4.4: whitespace runs to one space, none at line ends, no
/// empty lines at the end, CRLF at the end of a non-empty body. Lines and
/// spaces are found with `memchr` and the bytes between copied whole: this
/// is one pass over a 30 KB body per letter.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let wsp = |b: &u8| *b == b' ' || *b == b'\t';
    let mut out = Vec::with_capacity(body.len() + 2);
    let mut blank_run = 0usize;
    let mut start = 0;
    while start <= body.len() {
        let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |i| start + i);
        let line = &body[start..end];
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = &line[..line.iter().rposition(|b| !wsp(b)).map_or(0, |i| i + 1)];
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        for _ in 0..blank_run {
            out.extend_from_slice(b"\r\n");
        }
        blank_run = 0;
        let mut rest = line;
        while let Some(i) = memchr::memchr2(b' ', b'\t', rest) {
            out.extend_from_slice(&rest[..i]);
            out.push(b' ');
            // The line ends in a non-space, so one follows the run.
            let run = rest[i..].iter().position(|b| !wsp(b)).unwrap_or(0);
            rest = &rest[i + run..];
        }
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The build step signs through this: every sender thread signs its own
/// letters with the one shared key.
impl crate::compose::build::Sign for Signer {
    fn sign(&self, eml: &[u8], date: i64) -> Vec<u8> {
        Signer::sign(self, eml, date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EML: &[u8] = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n there\r\nContent-Type: text/plain\r\n\r\nbody  text \r\n\r\n";

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn sha256(data: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    }

    /// Checks an Ed25519 signature as a verifier does (RFC 6376 6.1.3,
    /// RFC 8463): `bh=` against the body; `b=` over the headers `h=` names,
    /// then the `DKIM-Signature` field with `b=` emptied, hashed.
    fn verifies(signed: &[u8], public_key: &[u8]) -> bool {
        let split = find(signed, b"\r\n\r\n").unwrap() + 2;
        let headers = parse_headers(&signed[..split]);
        let (name, field) = headers[0];
        assert_eq!(name, "DKIM-Signature");
        let field = String::from_utf8(field.to_vec()).unwrap();
        let tag = |t: &str| -> String {
            field
                .split(';')
                .find_map(|kv| kv.trim().strip_prefix(t)?.strip_prefix('='))
                .unwrap()
                .split_whitespace()
                .collect()
        };
        if tag("bh") != b64(sha256(&relaxed_body(&signed[split + 2..]))) {
            return false;
        }
        let mut data = Vec::new();
        for want in tag("h").split(':') {
            let (n, v) = headers[1..]
                .iter()
                .rev()
                .find(|(n, _)| n.eq_ignore_ascii_case(want))
                .unwrap();
            relaxed_header(n, v, &mut data);
            data.extend_from_slice(b"\r\n");
        }
        let b = field
            .match_indices("b=")
            .map(|(i, _)| i)
            .find(|&i| field[..i].trim_end().ends_with(';'))
            .unwrap();
        let end = field[b..].find(';').map_or(field.len(), |e| b + e);
        let unsigned = format!("{}b={}", &field[..b], &field[end..]);
        relaxed_header(name, unsigned.as_bytes(), &mut data);
        let sig = base64::engine::general_purpose::STANDARD
            .decode(tag("b"))
            .unwrap();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(&sha256(&data), &sig)
            .is_ok()
    }

    fn public_key(seed: &[u8; 32]) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn relaxed_canonicalization_follows_rfc_6376_examples() {
        // RFC 6376 3.4.5.
        let mut h = Vec::new();
        relaxed_header("A", b" X", &mut h);
        assert_eq!(h, b"a:X");
        let mut h = Vec::new();
        relaxed_header("B ", b" Y\t\r\n\tZ  ", &mut h);
        assert_eq!(h, b"b:Y Z");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"x\r\n \t\r\n\t\r\n"), b"x\r\n");
        assert_eq!(relaxed_body(b"a\r\n\r\n  b"), b"a\r\n\r\n b\r\n");
    }

    #[test]
    fn ed25519_seed_signature_verifies_and_names_the_headers_present() {
        let seed = [7u8; 32];
        let s = Signer::new(&b64(seed), "sel", "example.org").unwrap();
        let signed = s.sign(EML, 1_764_460_800);
        let text = String::from_utf8(signed.clone()).unwrap();
        assert!(
            text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; s=sel; d=example.org;"),
            "{text}"
        );
        assert!(text.contains("c=relaxed/relaxed;"), "{text}");
        assert!(text.contains("h=from:to:subject;"), "{text}");
        assert!(text.contains(" t=1764460800;"), "{text}");
        assert!(text.ends_with(std::str::from_utf8(EML).unwrap()));
        let head = &text[..text.len() - EML.len()];
        assert!(head.split("\r\n").all(|l| l.len() <= 78), "{head}");
        assert!(verifies(&signed, &public_key(&seed)));
        // The check checks something: a changed body, header or key fails.
        let body = text.replace("body  text", "body text!");
        assert!(!verifies(body.as_bytes(), &public_key(&seed)));
        let subject = text.replace("Subject: hi", "Subject: ho");
        assert!(!verifies(subject.as_bytes(), &public_key(&seed)));
        assert!(!verifies(&signed, &public_key(&[8u8; 32])));
    }

    #[test]
    fn the_same_letter_signs_to_the_same_bytes() {
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            b64(ed25519_pkcs8(&[9u8; 32]))
        );
        let s = Signer::new(&pem, "sel", "example.org").unwrap();
        let signed = s.sign(EML, 1);
        assert_eq!(signed, s.sign(EML, 1));
        assert!(verifies(&signed, &public_key(&[9u8; 32])));
        // The seed and the PEM of the same key sign alike.
        let seed = Signer::new(&b64([9u8; 32]), "sel", "example.org").unwrap();
        assert_eq!(seed.sign(EML, 1), signed);
        // Before 1970 there is no t=.
        let text = String::from_utf8(s.sign(EML, -5)).unwrap();
        assert!(!text.contains("t="), "{text}");
    }

    #[test]
    fn long_first_lines_fold_after_a_semicolon() {
        let s = Signer::new(&b64([7u8; 32]), "november-2026", "letters.example.org").unwrap();
        let signed = s.sign(EML, 1);
        let text = String::from_utf8(signed.clone()).unwrap();
        let head = &text[..text.len() - EML.len()];
        assert!(head.split("\r\n").all(|l| l.len() <= 78), "{head}");
        assert!(verifies(&signed, &public_key(&[7u8; 32])));
    }

    #[test]
    fn unusable_keys_and_names_are_refused() {
        let seed = b64([7u8; 32]);
        assert!(Signer::new("nonsense", "s", "d.org").is_err());
        assert!(Signer::new(&seed, "s;x", "d.org").is_err());
        let e = Signer::new(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
            "s",
            "d.org",
        )
        .unwrap_err();
        assert!(e.contains("RSA"), "{e}");
    }
}
