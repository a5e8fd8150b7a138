//! The DKIM signer letterpress had before mail-auth (src/deliver/dkim.rs
//! up to commit 664b30c): RSA with the `rsa` crate, Ed25519 with
//! ed25519-dalek, relaxed/relaxed. Kept unchanged, apart from this comment
//! and the unit tests, as the baseline of the DKIM benchmark.

use base64::Engine as _;
use sha2::{Digest, Sha256};

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

enum Key {
    Rsa(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A loaded key with its selector and domain.
pub struct Signer {
    key: Key,
    selector: String,
    domain: String,
}

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
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        let text = key_text.trim();
        let key = if text.contains("BEGIN RSA PRIVATE KEY") {
            let k = rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .map_err(|e| format!("not a usable RSA key: {e}"))?;
            Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(k)))
        } else if text.contains("BEGIN PRIVATE KEY") {
            match ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
                Ok(k) => Key::Ed25519(Box::new(k)),
                Err(_) => {
                    let k =
                        <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_pem(text)
                            .map_err(|e| format!("not a usable RSA or Ed25519 key: {e}"))?;
                    Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(k)))
                }
            }
        } else {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(
                    "is neither a PEM private key (RSA or Ed25519) nor the base64 of a \
                     32-byte Ed25519 seed",
                )?;
            Key::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&raw)))
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

    /// Returns the message with a `DKIM-Signature` header in front.
    pub fn sign(&self, eml: &[u8], time: i64) -> Vec<u8> {
        let split = find(eml, b"\r\n\r\n").map_or(eml.len(), |i| i + 2);
        let (head, body) = (&eml[..split], eml.get(split + 2..).unwrap_or(b""));
        let bh =
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(relaxed_body(body)));
        let headers = parse_headers(head);
        let mut names = Vec::new();
        let mut data = Vec::with_capacity(1024);
        for want in SIGNED {
            // The last occurrence, as RFC 6376 5.4.2 has verifiers pick.
            if let Some((name, value)) = headers
                .iter()
                .rev()
                .find(|(n, _)| n.eq_ignore_ascii_case(want))
            {
                names.push(want.to_ascii_lowercase());
                relaxed_header(name, value, &mut data);
                data.extend_from_slice(b"\r\n");
            }
        }
        let value = format!(
            "v=1; a={}; c=relaxed/relaxed; d={}; s={};\r\n t={time}; h={};\r\n bh={bh};\r\n b=",
            self.algorithm(),
            self.domain,
            self.selector,
            names.join(":")
        );
        relaxed_header("DKIM-Signature", value.as_bytes(), &mut data);
        let hash = Sha256::digest(&data);
        let sig = match &self.key {
            Key::Rsa(k) => {
                use rsa::signature::SignatureEncoding as _;
                use rsa::signature::Signer as _;
                k.sign(&data).to_vec()
            }
            Key::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(&hash).to_bytes().to_vec()
            }
        };
        let b = base64::engine::general_purpose::STANDARD.encode(sig);
        let mut out = Vec::with_capacity(eml.len() + value.len() + b.len() + 32);
        out.extend_from_slice(b"DKIM-Signature: ");
        out.extend_from_slice(value.as_bytes());
        // Folded every 76 characters: whitespace in b= is ignored.
        for (i, chunk) in b.as_bytes().chunks(76).enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n ");
            }
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(eml);
        out
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
/// empty lines at the end, CRLF at the end of a non-empty body.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut blank_run = 0usize;
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut l = Vec::with_capacity(line.len());
        let mut space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                space = true;
            } else {
                if space {
                    l.push(b' ');
                }
                space = false;
                l.push(b);
            }
        }
        if l.is_empty() {
            blank_run += 1;
        } else {
            for _ in 0..blank_run {
                out.extend_from_slice(b"\r\n");
            }
            blank_run = 0;
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}
