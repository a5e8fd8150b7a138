//! The attachment benchmark: `cargo bench --bench attach`.
//!
//! The example letter with one 200 KB PDF, built for `BENCH_ROWS` contacts
//! (2,000 by default) on one core through the one build step, four ways in
//! the same run:
//! - **none**: the letter without the attachment;
//! - **shared**: `Attachment: files/programme.pdf`, read and base64-encoded
//!   once when the campaign compiles, copied into each letter;
//! - **per letter** (the baseline): `Attachment: files/{{pdf}}` with the
//!   same file name in every row, which letterpress must treat as a
//!   per-contact file: read and encoded for each letter;
//! - **copy**: the floor, copying a finished letter's bytes.
//!
//! The shared attachment should cost about the copy of its base64, not
//! its encoding. A benchmark, not a test: it asserts nothing.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use letterpress::compose::build::Builder;
use letterpress::compose::campaign::Campaign;
use letterpress::compose::recipients::{Recipient, Recipients};
use letterpress::compose::stamp::Clock;
use letterpress::compose::template::TemplateFile;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/weremember.mjml");
const PDF_BYTES: usize = 200 * 1024;

/// The example template with its `Attachment:` lines replaced by `line`
/// (none when empty), written into `dir`.
fn template(dir: &Path, name: &str, line: &str) -> std::path::PathBuf {
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let mut out = String::new();
    for l in example.lines() {
        if l.starts_with("Attachment:") {
            continue;
        }
        if l.is_empty() && !line.is_empty() && !out.contains(line) {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(l);
        out.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

fn rows(csv: &Path, n: usize) -> Vec<Recipient> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(csv).unwrap());
    writeln!(
        f,
        "email,salutation,first_name,last_name,community,contact_id,pdf"
    )
    .unwrap();
    for i in 0..n {
        writeln!(
            f,
            "c{i}@example.org,,Zofia,Wiśniewska,Hillel Tel Aviv & Jaffa,c-{i},programme.pdf"
        )
        .unwrap();
    }
    drop(f);
    let mut r = Recipients::open(csv.to_str().unwrap(), None).unwrap();
    let mut out = Vec::with_capacity(n);
    while let Some(row) = r.next_row().unwrap() {
        out.push(row.unwrap());
    }
    out
}

fn compile(t: &Path, csv: &Path) -> Campaign {
    let r = Recipients::open(csv.to_str().unwrap(), None).unwrap();
    Campaign::compile(TemplateFile::load(t).unwrap(), r.columns(), "bench.csv").unwrap()
}

/// Builds every row on this thread; the time and the size of one letter.
fn build_all(c: &Campaign, rows: &[Recipient]) -> (Duration, usize) {
    let b = Builder::new(c, Clock::Fixed(0), 0);
    let mut size = 0;
    let t = Instant::now();
    for r in rows {
        let built = b.build(r).unwrap();
        size = std::hint::black_box(built.eml.len());
    }
    (t.elapsed(), size)
}

fn us(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let n: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    let pdf: Vec<u8> = (0..PDF_BYTES)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    std::fs::write(dir.path().join("files/programme.pdf"), &pdf).unwrap();
    let csv = dir.path().join("r.csv");
    let rows = rows(&csv, n);

    let none = compile(&template(dir.path(), "none.mjml", ""), &csv);
    let shared = compile(
        &template(dir.path(), "shared.mjml", "Attachment: files/programme.pdf"),
        &csv,
    );
    let per_letter = compile(
        &template(dir.path(), "per.mjml", "Attachment: files/{{pdf}}"),
        &csv,
    );
    // Warm the page cache and the allocator.
    build_all(&per_letter, &rows[..rows.len().min(50)]);

    let (t_none, s_none) = build_all(&none, &rows);
    let (t_shared, s_shared) = build_all(&shared, &rows);
    let (t_per, s_per) = build_all(&per_letter, &rows);
    assert_eq!(s_shared, s_per, "the same letter both ways");

    // The floor: copying the finished letter's bytes (what the shared
    // attachment adds is one copy of its base64 into the letter).
    let letter = Builder::new(&shared, Clock::Fixed(0), 0)
        .build(&rows[0])
        .unwrap()
        .eml;
    let t = Instant::now();
    for _ in 0..n {
        let mut v: Vec<u8> = Vec::with_capacity(letter.len());
        v.extend_from_slice(&letter);
        std::hint::black_box(&v);
    }
    let t_copy = t.elapsed();
    // The encoding alone, as the per-letter path does it.
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(letterpress::compose::attach::base64_lines(&pdf));
    }
    let t_encode = t.elapsed();

    let (none_us, shared_us, per_us) = (us(t_none, n), us(t_shared, n), us(t_per, n));
    println!(
        "attach bench: {n} letters of the example, one core, a {} KB PDF",
        PDF_BYTES / 1024
    );
    println!("  no attachment              {none_us:9.1} µs/letter  ({s_none} bytes)");
    println!(
        "  shared (encoded once)      {shared_us:9.1} µs/letter  ({s_shared} bytes), +{:.1} µs",
        shared_us - none_us
    );
    println!(
        "  per letter (baseline)      {per_us:9.1} µs/letter, +{:.1} µs",
        per_us - none_us
    );
    println!("  copy of a whole letter     {:9.1} µs", us(t_copy, n));
    println!("  base64 of the PDF          {:9.1} µs", us(t_encode, n));
    println!(
        "  ratio: the attachment costs {:.1}x less shared than per letter; \
         shared letter / no attachment {:.2}x; added cost / whole-letter copy {:.2}x",
        (per_us - none_us) / (shared_us - none_us).max(0.01),
        shared_us / none_us,
        (shared_us - none_us) / us(t_copy, n),
    );
}
