//! The DKIM benchmark: `cargo bench --bench dkim`.
//!
//! Signs one letter of the example campaign N times on one thread
//! (`BENCH_SIGNS=N`, default 2,000 with RSA-2048 and ten times that with
//! Ed25519), with keys made by `openssl genpkey` at the start, in three
//! rounds, and prints the best round's signs/s, all from one run, for:
//! - the signer letterpress had before mail-auth (`rsa` crate,
//!   ed25519-dalek; benches/dkim/old_signer.rs), the whole job: headers
//!   picked and canonicalized, body hashed, signed, header prepended;
//! - letterpress's `Signer` (src/deliver/dkim.rs), the same job;
//! - mail-auth 0.13's own `DkimSigner` with its `ring` backend, the same
//!   job with the same header names (it stamps `t=` from the system clock);
//! - ring 0.17, a bare signature of 1 KB: the floor under mail-auth;
//! - `openssl speed -seconds 3 rsa2048 ed25519`, a bare signature, for scale.
//!
//! A benchmark, not a test: it asserts nothing.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use letterpress::compose::campaign::Source;
use letterpress::compose::message::{self, Stamp};
use letterpress::deliver::dkim::Signer;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{DkimSigner, Done};

#[path = "dkim/old_signer.rs"]
mod old_signer;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The header names letterpress signs, for mail-auth's signer.
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

/// The first letter of the example campaign, as `send` builds it.
fn letter() -> Vec<u8> {
    let source = Source {
        template: Path::new(ROOT).join("templates/weremember.mjml"),
        recipients: format!("{ROOT}/recipients.example.csv"),
        delimiter: None,
        limits: Default::default(),
        attach: Default::default(),
        fonts: Default::default(),
        lang: Default::default(),
    };
    let (campaign, mut recipients) = source.open().unwrap();
    let row = recipients.next_row().unwrap().unwrap().unwrap();
    let letter = campaign.render(&row).unwrap();
    let stamp = Stamp {
        date: 1_764_460_800,
        id: letter.fingerprint,
    };
    message::build(&letter.parts, &stamp).unwrap()
}

fn sh(dir: &Path, script: &str) -> Option<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Measured in rounds: see `main`.
const ROUNDS: usize = 3;

/// One signature, given its number.
type Job<'a> = Box<dyn FnMut(usize) + 'a>;

/// Signs/s of `job` called `n` times, after one call to warm up.
fn rate(n: usize, job: &mut Job) -> f64 {
    job(0);
    let t = Instant::now();
    for i in 0..n {
        job(i);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn dkim_signer<K: SigningKey>(key: K) -> DkimSigner<K, Done> {
    DkimSigner::from_key(key)
        .domain("example.org")
        .selector("sel")
        .headers(SIGNED.iter().copied())
}

/// mail-auth's whole job, as letterpress's: the header, then the message.
fn mail_auth<'a, K: SigningKey>(signer: &'a DkimSigner<K, Done>, eml: &'a [u8]) -> Job<'a> {
    Box::new(move |_| {
        let header = signer.sign(eml).unwrap().to_header();
        let mut out = Vec::with_capacity(header.len() + eml.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(eml);
        black_box(out);
    })
}

/// sign/s from the last table of `openssl speed`: the data line's last
/// columns line up with the header line's.
fn openssl_sign_rate(out: &str, row: &str) -> Option<f64> {
    let header: Vec<&str> = out
        .lines()
        .rev()
        .find(|l| l.contains("sign/s"))?
        .split_whitespace()
        .collect();
    let data: Vec<&str> = out
        .lines()
        .rev()
        .find(|l| l.contains(row))?
        .split_whitespace()
        .collect();
    let col = header.iter().position(|h| *h == "sign/s")?;
    data.get(data.len().checked_sub(header.len())? + col)?
        .parse()
        .ok()
}

fn main() {
    let n: usize = std::env::var("BENCH_SIGNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sh(
        d,
        "set -e
         openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null
         openssl genpkey -algorithm ed25519 -out ed.pem
         openssl pkey -in rsa.pem -outform DER -out rsa.der
         openssl pkey -in ed.pem -outform DER -out ed.der",
    )
    .expect("openssl is needed to make the keys (Debian package `openssl`)");
    let read = |f: &str| std::fs::read(d.join(f)).unwrap();
    let text = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    let eml = letter();
    println!(
        "letterpress DKIM benchmark: the example letter ({} bytes), signed on one thread, \
         {n} times with RSA-2048 and {} times with Ed25519\n",
        eml.len(),
        10 * n
    );

    let time = 1_764_460_800;
    let old_rsa = old_signer::Signer::new(&text("rsa.pem"), "sel", "example.org").unwrap();
    let old_ed = old_signer::Signer::new(&text("ed.pem"), "sel", "example.org").unwrap();
    let new_rsa = Signer::new(&text("rsa.pem"), "sel", "example.org").unwrap();
    let new_ed = Signer::new(&text("ed.pem"), "sel", "example.org").unwrap();
    let rsa_der = read("rsa.der");
    let ed_der = read("ed.der");
    let ma_rsa = dkim_signer(
        RsaKey::<Sha256>::from_key_der(rsa_der.as_slice().try_into().unwrap()).unwrap(),
    );
    let ma_ed = dkim_signer(Ed25519Key::from_pkcs8_maybe_unchecked_der(&ed_der).unwrap());
    let rng = ring::rand::SystemRandom::new();
    let data = [b'x'; 1024];
    let ring_rsa = ring::rsa::KeyPair::from_der(&rsa_der).unwrap();
    let mut sig = vec![0; ring_rsa.public().modulus_len()];
    let ring_ed = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&ed_der).unwrap();
    let eml = eml.as_slice();

    let mut rows: Vec<(&str, Job, Job)> = vec![
        (
            "before: rsa crate, ed25519-dalek",
            Box::new(|i| {
                black_box(old_rsa.sign(eml, time + i as i64));
            }),
            Box::new(|i| {
                black_box(old_ed.sign(eml, time + i as i64));
            }),
        ),
        (
            "letterpress Signer (RSA: OpenSSL, Ed25519: ring)",
            Box::new(|i| {
                black_box(new_rsa.sign(eml, time + i as i64));
            }),
            Box::new(|i| {
                black_box(new_ed.sign(eml, time + i as i64));
            }),
        ),
        (
            "mail-auth 0.13 DkimSigner (ring)",
            mail_auth(&ma_rsa, eml),
            mail_auth(&ma_ed, eml),
        ),
        (
            "ring 0.17, bare signature of 1 KB",
            Box::new(|_| {
                ring_rsa
                    .sign(&ring::signature::RSA_PKCS1_SHA256, &rng, &data, &mut sig)
                    .unwrap();
                black_box(&sig);
            }),
            Box::new(|_| {
                black_box(ring_ed.sign(&data));
            }),
        ),
    ];
    // Rounds with the rows in turn, the best round of each kept: a busy
    // neighbour then slows a round, not a whole row.
    let mut best = vec![(0f64, 0f64); rows.len()];
    for _ in 0..ROUNDS {
        for ((_, rsa, ed), best) in rows.iter_mut().zip(&mut best) {
            best.0 = best.0.max(rate(n / ROUNDS, rsa));
            best.1 = best.1.max(rate(10 * n / ROUNDS, ed));
        }
    }
    let mut table: Vec<(&str, f64, f64)> = rows
        .iter()
        .zip(&best)
        .map(|((name, _, _), b)| (*name, b.0, b.1))
        .collect();

    let speed = sh(
        d,
        "openssl speed -seconds 3 rsa2048 2>/dev/null; openssl speed -seconds 3 ed25519 2>/dev/null",
    )
    .unwrap_or_default();
    let openssl = (
        openssl_sign_rate(&speed, "rsa 2048 bits").unwrap_or(f64::NAN),
        openssl_sign_rate(&speed, "Ed25519").unwrap_or(f64::NAN),
    );
    table.push(("openssl speed, bare signature", openssl.0, openssl.1));

    let before = (table[0].1, table[0].2);
    println!(
        "{:<42} {:>9} {:>7} {:>8} {:>9} {:>7} {:>8}",
        "signs/s, one thread", "RSA-2048", "/before", "/openssl", "Ed25519", "/before", "/openssl"
    );
    for (name, r, e) in table {
        println!(
            "{name:<42} {r:>9.0} {:>6.2}x {:>7.2}x {e:>9.0} {:>6.2}x {:>7.2}x",
            r / before.0,
            r / openssl.0,
            e / before.1,
            e / openssl.1
        );
    }
}
