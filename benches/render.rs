//! The render benchmark: `cargo bench --bench render`.
//!
//! Generates a list of recipients (100,000 by default; `BENCH_ROWS=N` to
//! change) for the example letter, then measures in one run:
//! - the cost of each stage on one core (CSV, merge, text, MIME, write),
//! - end to end to `.eml` files on all cores and on one,
//! - render to the disk against bare writes of the same 20,000 files (one
//!   `fs::write` each, on as many threads), in three alternating rounds with
//!   a `sync` before each, since the disk is noisy,
//! - a baseline on one core: the per-recipient pipeline other tools use
//!   (Handlebars on the MJML, MJML per letter, html2text per letter,
//!   lettre's builder), so figures are ratios within the same run,
//! - peak memory (VmHWM) of a run over 10,000 and over 1,000,000 rows, each
//!   in a child process, with a sink that discards the messages.
//!
//! A benchmark, not a test: it asserts nothing and takes a few minutes.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use letterpress::compose::build::Built;
use letterpress::compose::campaign::Campaign;
use letterpress::compose::message::{self, Stamp};
use letterpress::compose::recipients::Recipients;
use letterpress::compose::template::TemplateFile;
use letterpress::deliver::run::{self, Clock};
use letterpress::deliver::sink::{Envelope, FileSink, Formats, NullSink, Receipt, Sink};

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/weremember.mjml");

/// Writes `n` varied, realistic recipients (non-ASCII names, empty
/// salutations, `&` in community names) with a fixed pseudo-random sequence.
fn generate(path: &Path, n: usize) {
    const FIRST: &[&str] = &[
        "Anna",
        "Zofia",
        "Łukasz",
        "Jürgen",
        "Hélène",
        "François",
        "Miriam",
        "Eli",
        "Noa",
        "יעקב",
        "Sarah",
        "David",
    ];
    const LAST: &[&str] = &[
        "Kowalska",
        "Wiśniewska",
        "Dąbrowski",
        "Müller",
        "Lefèvre",
        "Benaïm",
        "Goldberg",
        "Friedman",
        "Levi",
        "כהן",
        "Rosenthal",
        "Breuer",
    ];
    const SAL: &[&str] = &["", "Dr.", "Rabbi", "Frau", "Mme", "Pan", "Ms."];
    const COMM: &[&str] = &[
        "Congregation Beth Israel",
        "Hillel Tel Aviv & Jaffa",
        "Jüdische Gemeinde zu Berlin",
        "",
        "Communauté juive de Lyon & Villeurbanne",
    ];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        out,
        "email,salutation,first_name,last_name,community,contact_id"
    )
    .unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut pick = |list: &[&'static str]| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        list[(x % list.len() as u64) as usize]
    };
    for i in 0..n {
        let (s, f, l, c) = (pick(SAL), pick(FIRST), pick(LAST), pick(COMM));
        writeln!(out, "contact{i}@example.org,{s},{f},{l},{c},c-{i}").unwrap();
    }
}

fn open(csv: &Path) -> (Campaign, Recipients) {
    let template = TemplateFile::load(Path::new(TEMPLATE)).unwrap();
    let recipients = Recipients::open(csv.to_str().unwrap(), None).unwrap();
    let campaign = Campaign::compile(template, recipients.columns(), "bench.csv").unwrap();
    (campaign, recipients)
}

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn us(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

/// Child mode: run `n` rows through a discarding sink, print peak memory.
fn memory_child(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("r.csv");
    generate(&csv, n);
    let before = peak_rss_kb();
    let (campaign, recipients) = open(&csv);
    let t = Instant::now();
    let s = run::run(
        &campaign,
        recipients,
        &NullSink,
        Clock::Fixed(0),
        |_| Ok(()),
        |_, _| {},
    )
    .unwrap();
    println!(
        "{} {} {:.0} {before}",
        s.rendered,
        peak_rss_kb(),
        per_sec(s.rendered, t.elapsed())
    );
}

fn stages(csv: &Path, n: usize, scratch: &Path) {
    let (campaign, mut recipients) = open(csv);
    let mut rows = Vec::with_capacity(n);
    let t = Instant::now();
    while let Some(r) = recipients.next_row().unwrap() {
        if rows.len() < n {
            rows.push(r.unwrap());
        }
    }
    let csv_time = t.elapsed();
    let total_rows = rows.len().max(1);
    let (mut merge, mut text, mut mime, mut write) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let mut bytes = 0usize;
    for r in &rows {
        let t = Instant::now();
        let letter = campaign.render(r).unwrap();
        merge += t.elapsed();
        let t = Instant::now();
        std::hint::black_box(campaign.merge_text(r).unwrap());
        text += t.elapsed();
        let t = Instant::now();
        let eml = message::build(
            &letter.parts,
            &Stamp {
                date: 0,
                id: letter.fingerprint,
            },
        )
        .unwrap();
        mime += t.elapsed();
        bytes += eml.len();
        let t = Instant::now();
        std::fs::write(scratch.join(format!("{}.eml", r.row)), &eml).unwrap();
        write += t.elapsed();
    }
    let merge_only = merge.saturating_sub(text);
    println!(
        "stage costs on one core, {} letters of {} bytes on average:",
        rows.len(),
        bytes / total_rows
    );
    println!(
        "  read CSV        {:8.2} us/letter (whole file, streamed)",
        us(csv_time, total_rows)
    );
    println!(
        "  merge (headers + HTML) {:8.2} us/letter",
        us(merge_only, rows.len())
    );
    println!(
        "  text (merge + wrap)    {:8.2} us/letter",
        us(text, rows.len())
    );
    println!(
        "  MIME encoding          {:8.2} us/letter",
        us(mime, rows.len())
    );
    println!(
        "  write .eml             {:8.2} us/letter",
        us(write, rows.len())
    );
}

/// The per-recipient pipeline of the usual tools, in Rust: Handlebars on
/// the MJML source, mrml per letter, html2text per letter, lettre's builder.
fn baseline(csv: &Path, n: usize, scratch: &Path) -> f64 {
    use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
    let template = TemplateFile::load(Path::new(TEMPLATE)).unwrap();
    let mut hb = handlebars::Handlebars::new();
    hb.register_template_string("mjml", &template.body).unwrap();
    hb.register_template_string("to", &template.header("To").unwrap().value)
        .unwrap();
    let opts = mrml::prelude::render::RenderOptions {
        fonts: Default::default(),
        ..Default::default()
    };
    let mut recipients = Recipients::open(csv.to_str().unwrap(), None).unwrap();
    let t = Instant::now();
    let mut done = 0;
    while let Some(r) = recipients.next_row().unwrap() {
        if done == n {
            break;
        }
        let r = r.unwrap();
        let ctx = r.to_json();
        let mjml = hb.render("mjml", &ctx).unwrap();
        let html = mrml::parse(&mjml).unwrap().element.render(&opts).unwrap();
        let text = html2text::from_read(html.as_bytes(), 76).unwrap();
        let to: Mailbox = format!(
            "\"{} {}\" <{}>",
            r.get("first_name").unwrap(),
            r.get("last_name").unwrap(),
            r.get("email").unwrap()
        )
        .parse()
        .unwrap();
        let msg = lettre::Message::builder()
            .from(
                "World Jewish Congress <weremember@wjc.example.org>"
                    .parse()
                    .unwrap(),
            )
            .to(to)
            .subject("Join our #WeRemember Campaign")
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )
            .unwrap();
        std::fs::write(scratch.join(format!("b{}.eml", r.row)), msg.formatted()).unwrap();
        done += 1;
    }
    per_sec(done, t.elapsed())
}

fn end_to_end(csv: &Path, out: &Path, threads: usize, sink_kind: &str) -> (usize, f64) {
    let (campaign, recipients) = open(csv);
    let _ = std::fs::remove_dir_all(out);
    let files = FileSink::create(out, "eml".parse::<Formats>().unwrap(), false).unwrap();
    let sink: &dyn Sink = if sink_kind == "null" {
        &NullSink
    } else {
        &files
    };
    // As `render` runs: into files, more threads than cores
    // ([`run::FILE_THREADS_PER_CORE`]).
    let threads = if sink_kind == "files" {
        threads * run::FILE_THREADS_PER_CORE
    } else {
        threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let t = Instant::now();
    let s = pool.install(|| {
        run::run(
            &campaign,
            recipients,
            sink,
            Clock::Fixed(0),
            |_| Ok(()),
            |_, _| {},
        )
        .unwrap()
    });
    let rate = per_sec(s.rendered, t.elapsed());
    let _ = std::fs::remove_dir_all(out);
    (s.rendered, rate)
}

/// Keeps every letter's `.eml` file, named as `render` names it, in memory:
/// the files the bare-write baseline writes.
#[derive(Default)]
struct Capture(std::sync::Mutex<Vec<(String, Vec<u8>)>>);

impl Sink for Capture {
    fn deliver(
        &self,
        _: &Envelope<'_>,
        built: &Built,
    ) -> Result<Receipt, letterpress::deliver::sink::Failure> {
        let formats: Formats = "eml".parse().unwrap();
        let mut files = self.0.lock().unwrap();
        for (_, name, bytes) in formats.files(built) {
            files.push((name, bytes.to_vec()));
        }
        Ok(Receipt {
            reply: String::new(),
            delivered: Default::default(),
        })
    }
}

/// Writes `files` into `out` on `threads` threads with one `fs::write`
/// each, nothing else: the floor for writing these letters.
fn bare_writes(out: &Path, files: &[(String, Vec<u8>)], threads: usize) -> f64 {
    use rayon::prelude::*;
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let t = Instant::now();
    pool.install(|| {
        files
            .par_iter()
            .for_each(|(name, bytes)| std::fs::write(out.join(name), bytes).unwrap())
    });
    let rate = per_sec(files.len(), t.elapsed());
    let _ = std::fs::remove_dir_all(out);
    rate
}

/// Flushes what earlier rounds left dirty, so that no round pays for the
/// writeback of another.
fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

/// `render` to the disk against bare writes of the very same files, in
/// alternating rounds (the disk here is noisy): the ratio of the rates per
/// round, and the median.
fn against_bare_writes(csv: &Path, out: &Path, threads: usize, rounds: usize) {
    let (campaign, recipients) = open(csv);
    let capture = Capture::default();
    run::run(
        &campaign,
        recipients,
        &capture,
        Clock::Fixed(0),
        |_| Ok(()),
        |_, _| {},
    )
    .unwrap();
    let files = capture.0.into_inner().unwrap();
    let bytes: usize = files.iter().map(|f| f.1.len()).sum();
    println!(
        "\nrender to .eml files on disk ({}) against bare writes of the same {} files ({} MB), {threads} cores, {rounds} alternating rounds:",
        out.display(),
        files.len(),
        bytes >> 20
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        settle();
        let bare = bare_writes(out, &files, threads);
        settle();
        let more = threads * run::FILE_THREADS_PER_CORE;
        let bare_more = bare_writes(out, &files, more);
        settle();
        let (_, ours) = end_to_end(csv, out, threads, "files");
        // The baseline is the faster of the two bare runs.
        let floor = bare.max(bare_more);
        ratios.push(ours / floor);
        println!(
            "  round {round}: bare writes {bare:6.0} files/s on {threads} threads, {bare_more:6.0} on {more}; render {ours:6.0} letters/s: {:.2}x",
            ours / floor
        );
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  median: render runs at {:.2}x the bare writes (goal: at least 0.8x)",
        ratios[ratios.len() / 2]
    );
}

/// What the filesystem alone takes: `n` files of `size` bytes written by
/// `threads` threads, no rendering. The ceiling for any renderer.
fn write_floor(out: &Path, n: usize, size: usize, threads: usize) -> f64 {
    use rayon::prelude::*;
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let body = vec![b'x'; size];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let t = Instant::now();
    pool.install(|| {
        (0..n).into_par_iter().for_each(|i| {
            std::fs::write(
                out.join(format!("{i:06}-contact{i}_example.org.eml")),
                &body,
            )
            .unwrap()
        })
    });
    let rate = per_sec(n, t.elapsed());
    let _ = std::fs::remove_dir_all(out);
    rate
}

/// The example campaign's templates (the English default, its Hebrew and
/// French variants, the calendar files) copied into `dir`; with `only`,
/// just that one renamed as the default, so that it compiles alone.
fn copy_campaign(dir: &Path, only: Option<&str>) -> std::path::PathBuf {
    let src = Path::new(TEMPLATE).parent().unwrap();
    std::fs::create_dir_all(dir.join("events")).unwrap();
    for e in std::fs::read_dir(src.join("events")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("events").join(e.file_name())).unwrap();
    }
    let names = match only {
        Some(name) => vec![(name, "weremember.mjml")],
        None => [
            "weremember.mjml",
            "weremember.he.mjml",
            "weremember.fr.mjml",
        ]
        .iter()
        .map(|n| (*n, *n))
        .collect(),
    };
    for (from, to) in names {
        std::fs::copy(src.join(from), dir.join(to)).unwrap();
    }
    dir.join("weremember.mjml")
}

/// Issue 11's figure: a campaign of three variants (English, Hebrew,
/// French) against the same letters made by three one-variant campaigns,
/// each rendering only its own contacts. As `render` runs (chunks, the
/// run's order), on one core, messages discarded (files are the disk's
/// business); `rounds` alternating rounds, medians. The contacts' languages
/// follow the example list: 3 of 12 Hebrew, 2 French, the others English or
/// a language without a variant.
fn variants(dir: &Path, n: usize, rounds: usize) {
    use letterpress::compose::campaign::{Source, LANG_COLUMN};
    let langs = [
        "en-US", "pl", "pl", "he", "he-IL", "de", "de", "fr", "fr-FR", "en", "", "he",
    ];
    let plain = dir.join("plain.csv");
    generate(&plain, n);
    let text = std::fs::read_to_string(&plain).unwrap();
    let mut lines = text.lines();
    let header = format!("{},{LANG_COLUMN}\n", lines.next().unwrap());
    let rows: Vec<String> = lines
        .enumerate()
        .map(|(i, l)| format!("{l},{}\n", langs[i % langs.len()]))
        .collect();
    let list = dir.join("langs.csv");
    std::fs::write(&list, header.clone() + &rows.concat()).unwrap();
    let source = |template: std::path::PathBuf, csv: &Path| Source {
        template,
        recipients: csv.to_str().unwrap().to_string(),
        delimiter: None,
        limits: Default::default(),
        attach: Default::default(),
        fonts: Default::default(),
        lang: Default::default(),
    };
    let three = source(copy_campaign(&dir.join("three"), None), &list);
    // Each one-variant campaign gets the rows the three-variant one gives
    // its language.
    let (campaign, mut all) = three.open().unwrap();
    let mut subsets: Vec<(&str, String)> = vec![
        ("en", header.clone()),
        ("he", header.clone()),
        ("fr", header.clone()),
    ];
    let mut k = 0;
    while let Some(row) = all.next_row().unwrap() {
        let lang = campaign
            .variant(&row.unwrap())
            .lang()
            .map_or("en".into(), |t| t.to_string());
        let (_, csv) = subsets.iter_mut().find(|(t, _)| *t == lang).unwrap();
        csv.push_str(&rows[k]);
        k += 1;
    }
    let singles: Vec<(&str, usize, Source)> = subsets
        .iter()
        .map(|(tag, csv)| {
            let path = dir.join(format!("{tag}.csv"));
            std::fs::write(&path, csv).unwrap();
            let file = match *tag {
                "en" => "weremember.mjml".to_string(),
                t => format!("weremember.{t}.mjml"),
            };
            let t = copy_campaign(&dir.join(tag), Some(&file));
            (*tag, csv.lines().count() - 1, source(t, &path))
        })
        .collect();
    let time = |s: &Source| {
        let (c, r) = s.open().unwrap();
        run::on_threads(1, || {
            let t = Instant::now();
            let summary =
                run::run(&c, r, &NullSink, Clock::Fixed(0), |_| Ok(()), |_, _| {}).unwrap();
            (summary.rendered, t.elapsed())
        })
    };
    println!("variants (issue 11): {n} contacts, one core, as render runs, messages discarded, {rounds} alternating rounds");
    for (tag, count, _) in &singles {
        println!("  {count} contacts get the {tag} letter");
    }
    let (mut ratios, mut one_rates, mut three_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let run_three = || time(&three).1;
        let run_singles = || -> Duration { singles.iter().map(|(_, _, s)| time(s).1).sum() };
        let (t3, t1) = if round % 2 == 0 {
            let a = run_three();
            (a, run_singles())
        } else {
            let b = run_singles();
            (run_three(), b)
        };
        let (r3, r1) = (per_sec(n, t3), per_sec(n, t1));
        println!("  round {}: three variants {r3:8.0} letters/s, the same letters by one-variant campaigns {r1:8.0} letters/s: {:.3}x", round + 1, r3 / r1);
        ratios.push(r3 / r1);
        one_rates.push(r1);
        three_rates.push(r3);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "  median: three variants {:.0}/s, one variant each {:.0}/s, ratio {:.3}x (goal: >= 0.9x)",
        median(&mut three_rates),
        median(&mut one_rates),
        median(&mut ratios)
    );
    // For reference: the English letter for every contact.
    let en = source(singles[0].2.template.clone(), &list);
    let (done, t) = time(&en);
    println!("  (the English letter for all {done} contacts: {:.0} letters/s; the Hebrew letter is longer)", per_sec(done, t));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memory-child") {
        memory_child(args[i + 1].parse().unwrap());
        return;
    }
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let csv = dir.path().join("recipients.csv");
    generate(&csv, rows);
    println!("letterpress render benchmark: {rows} generated recipients of the example letter, {cores} cores\n");

    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    if std::env::var_os("BENCH_VARIANTS_ONLY").is_some() {
        let rounds = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        variants(dir.path(), 30_000.min(rows), rounds);
        return;
    }
    if std::env::var_os("BENCH_WRITES_ONLY").is_some() {
        let small = dir.path().join("recipients-write.csv");
        generate(&small, 20_000.min(rows));
        against_bare_writes(&small, &dir.path().join("out"), cores, 3);
        return;
    }
    stages(&csv, 10_000.min(rows), &scratch);
    std::fs::remove_dir_all(&scratch).unwrap();
    if std::env::var_os("BENCH_STAGES_ONLY").is_some() {
        return;
    }
    std::fs::create_dir(&scratch).unwrap();

    let base_n = 1_000.min(rows);
    let base = baseline(&csv, base_n, &scratch);
    std::fs::remove_dir_all(&scratch).unwrap();
    println!("\nbaseline (per-recipient MJML + html2text + lettre builder), one core, {base_n} letters: {base:.0} letters/s");

    let (_, cpu_one) = end_to_end(&csv, &dir.path().join("null"), 1, "null");
    let (_, cpu_all) = end_to_end(&csv, &dir.path().join("null"), cores, "null");
    println!("letterpress without writing (messages discarded): one core {cpu_one:.0}/s ({:.0}x), {cores} cores {cpu_all:.0}/s ({:.0}x)", cpu_one / base, cpu_all / base);

    // The disk under the project, and memory (tmpfs) where there is one:
    // per-file cost differs by an order of magnitude between the two.
    let mut places = vec![("disk", dir.path().join("out"))];
    if Path::new("/dev/shm").is_dir() {
        places.push((
            "tmpfs",
            std::path::PathBuf::from("/dev/shm/letterpress-bench"),
        ));
    }
    for (label, out) in places {
        let floor = write_floor(&out, rows, 32_000, cores);
        let (_, one) = end_to_end(&csv, &out, 1, "files");
        let (n, all) = end_to_end(&csv, &out, cores, "files");
        println!(
            "\nto .eml files on {label} ({}), {n} letters:",
            out.display()
        );
        println!("  filesystem alone, {cores} threads writing 32 KB files: {floor:8.0} files/s");
        let per = run::FILE_THREADS_PER_CORE;
        println!("  letterpress, {per} threads:  {one:8.0} letters/s ({:.0}x the baseline, {:.0}% of the filesystem)", one / base, 100.0 * one / floor);
        println!("  letterpress, {} threads: {all:8.0} letters/s ({:.0}x the baseline, {:.0}% of the filesystem)", cores * per, all / base, 100.0 * all / floor);
    }

    let write_rows = 20_000.min(rows);
    let small = dir.path().join("recipients-write.csv");
    generate(&small, write_rows);
    against_bare_writes(&small, &dir.path().join("out"), cores, 3);

    println!("\npeak memory (VmHWM) of a whole run, messages discarded:");
    let exe = std::env::current_exe().unwrap();
    for n in [10_000usize, 1_000_000] {
        let out = std::process::Command::new(&exe)
            .args(["--memory-child", &n.to_string()])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 4 {
            println!(
                "  {:>9} rows: {:>7} kB peak ({} kB before the run), {} letters/s",
                f[0], f[1], f[3], f[2]
            );
        } else {
            println!(
                "  {n} rows: child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
