//! Reading the contact list: a CSV file streamed row by row (so a million
//! rows cost no more memory than ten), with its delimiter detected, a BOM
//! stripped, and every malformed row turned into a [`Problem`] that names its
//! line instead of stopping the run.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::report::{Problem, Severity};

/// How big a row may make a letter. A value is checked as it is read, before
/// any merge, so one huge field cannot multiply into a huge letter; the
/// header block and the whole message are checked by the build step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one CSV value (`--max-value-size`).
    pub value: usize,
    /// Bytes of a letter's header block (`--max-header-size`).
    pub header: usize,
    /// Bytes of a whole letter, signed (`--max-message-size`).
    pub message: usize,
}

impl Default for Limits {
    /// 64 KiB a value; 64 KiB of headers, which leaves room under Postfix's
    /// `header_size_limit` (102400) for the Received and DKIM headers relays
    /// add on the way; 10 MiB a message, the limit of many relays.
    fn default() -> Limits {
        Limits {
            value: 64 * 1024,
            header: 64 * 1024,
            message: 10 * 1024 * 1024,
        }
    }
}

/// A size as the options take it: bytes, or with a `K`, `M` or `G` suffix
/// (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("`{s}` is not a size; write e.g. 65536, 64K or 10M")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size; write e.g. 65536, 64K or 10M"))?;
    match n.checked_mul(1 << shift) {
        Some(0) => Err("a size limit must be more than 0".into()),
        Some(v) => Ok(v),
        None => Err(format!("`{s}` is too large")),
    }
}

/// A size for messages: `64K` for 65536, else bytes.
pub fn show_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}M", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{}K", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The column names of a contact list, with a name -> position index.
#[derive(Debug)]
pub struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Columns {
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One contact: its place in the file and its fields, in column order.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// 1-based data row (the header is row 0); names the output files.
    pub row: usize,
    /// 1-based line of the file where the row starts (a quoted newline makes
    /// a row span several lines).
    pub line: u64,
    pub columns: Arc<Columns>,
    pub fields: Vec<String>,
}

impl Recipient {
    pub fn get(&self, column: &str) -> Option<&str> {
        self.columns
            .position(column)
            .and_then(|i| self.fields.get(i))
            .map(String::as_str)
    }

    /// The row as a JSON object for Handlebars.
    pub fn to_json(&self) -> serde_json::Value {
        let map = self
            .columns
            .names()
            .iter()
            .zip(&self.fields)
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::Value::Object(map)
    }
}

/// A streaming reader of recipients.
pub struct Recipients {
    name: String,
    reader: csv::Reader<Box<dyn Read + Send>>,
    columns: Arc<Columns>,
    delimiter: u8,
    record: csv::ByteRecord,
    /// The most bytes one value may hold ([`Limits::value`]).
    max_value: usize,
    row: usize,
    /// The raw bytes csv has pulled from the input and not yet parsed past,
    /// starting at stream offset `raw_base`: csv silently accepts text after
    /// a closing quote (`"Ann"x"` reads as `Annx"`), so rows are checked
    /// against their raw bytes.
    tapped: Arc<Mutex<Tapped>>,
    raw_base: u64,
    /// Line breaks in rows cut short so far ([`Cut`]): csv never saw them.
    line_shift: u64,
    /// csv reports a record's line one too low in CRLF files (it starts the
    /// record before the `\n` of the previous terminator).
    line_fix: u64,
    /// Rows to pass over (suppressed contacts left out of `render`).
    skip: std::collections::HashSet<usize>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipients")
            .field("name", &self.name)
            .field("columns", &self.columns)
            .finish()
    }
}

/// Delimiters we recognise, in the order we prefer them on a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

impl Recipients {
    /// Opens `path`, or standard input when `path` is `-`.
    pub fn open(path: &str, delimiter: Option<u8>) -> Result<Self> {
        let input: Box<dyn Read + Send> = if path == "-" {
            Box::new(std::io::stdin())
        } else {
            let file = std::fs::File::open(path).map_err(|source| Error::Read {
                path: path.into(),
                source,
            })?;
            Box::new(file)
        };
        let name = if path == "-" {
            "<stdin>".to_string()
        } else {
            path.to_string()
        };
        Self::from_reader(name, input, delimiter)
    }

    /// Reads recipients from any byte stream; `name` is used in messages.
    pub fn from_reader(
        name: String,
        input: Box<dyn Read + Send>,
        delimiter: Option<u8>,
    ) -> Result<Self> {
        let mut input = input;
        let mut first = vec![0; 64 * 1024];
        let n = loop {
            match input.read(&mut first) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => {
                    break other.map_err(|source| Error::Read {
                        path: name.clone().into(),
                        source,
                    })?
                }
            }
        };
        first.truncate(n);
        let head = first.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&first);
        if head.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::Recipients {
                path: name,
                message: "the file is empty; it needs a header line (e.g. `email,first_name`) \
                          and one line per contact"
                    .into(),
            });
        }
        let delimiter = delimiter.unwrap_or_else(|| sniff_delimiter(head));
        let line_fix = u64::from(
            head.iter()
                .position(|&b| b == b'\n')
                .is_some_and(|i| i > 0 && head[i - 1] == b'\r'),
        );
        let tapped = Arc::new(Mutex::new(Tapped {
            raw: Vec::new(),
            cap: HEADER_CAP,
            cuts: VecDeque::new(),
            skipped: 0,
        }));
        let input = Box::new(std::io::Cursor::new(first).chain(input));
        let boxed: Box<dyn Read + Send> = Box::new(Tap::new(input, Arc::clone(&tapped), delimiter));
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(boxed);
        let mut header = csv::ByteRecord::new();
        let read = reader
            .read_byte_record(&mut header)
            .map_err(|e| Error::Recipients {
                path: name.clone(),
                message: format!("cannot read the header line: {e}"),
            })?;
        if !read {
            return Err(Error::Recipients {
                path: name,
                message: "the file is empty".into(),
            });
        }
        let columns = parse_header(&name, &header)?;
        if tapped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cuts
            .pop_front()
            .is_some()
        {
            return Err(Error::Recipients {
                path: name,
                message: format!(
                    "line 1: the header line is longer than {}; is this a CSV file?",
                    show_size(HEADER_CAP)
                ),
            });
        }
        let max_value = Limits::default().value;
        tapped.lock().unwrap_or_else(|e| e.into_inner()).cap = row_cap(columns.len(), max_value);
        Ok(Recipients {
            name,
            reader,
            columns: Arc::new(columns),
            delimiter,
            record: csv::ByteRecord::new(),
            max_value,
            row: 0,
            tapped,
            raw_base: 0,
            line_shift: 0,
            line_fix,
            skip: Default::default(),
        })
    }

    /// Passes over these rows (numbered as [`Recipient::row`]): they are
    /// not returned, and the rows after keep their numbers.
    pub fn skipping(self, rows: std::collections::HashSet<usize>) -> Recipients {
        Recipients { skip: rows, ..self }
    }

    /// Rejects a row holding a value longer than `max_value` bytes.
    pub fn limited(self, max_value: usize) -> Recipients {
        self.tapped.lock().unwrap_or_else(|e| e.into_inner()).cap =
            row_cap(self.columns.len(), max_value);
        Recipients { max_value, ..self }
    }

    /// The name used in messages: the path, or `<stdin>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn columns(&self) -> &Arc<Columns> {
        &self.columns
    }

    /// How many bytes of the input have been read: progress for a file.
    pub fn bytes_read(&self) -> u64 {
        let skipped = self
            .tapped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .skipped;
        self.reader.position().byte() + skipped
    }

    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The next row: `None` at the end, `Some(Err(problem))` for a row that
    /// cannot be used (the caller reports it and goes on), or a fatal error
    /// when the file itself cannot be read any further.
    pub fn next_row(&mut self) -> Result<Option<std::result::Result<Recipient, Problem>>> {
        loop {
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| Error::Recipients {
                    path: self.name.clone(),
                    message: format!("cannot read on: {e}"),
                })?;
            if !more {
                return Ok(None);
            }
            let end = self.reader.position().byte();
            let raw = self.take_raw();
            let line = self.record.position().map_or(0, |p| p.line()) + self.line_fix;
            let line = line + self.line_shift;
            let cut = {
                let mut tapped = self.tapped.lock().unwrap_or_else(|e| e.into_inner());
                let mut cut = false;
                while tapped.cuts.front().is_some_and(|c| c.at <= end) {
                    let c = tapped.cuts.pop_front().expect("checked");
                    self.line_shift += c.lines;
                    cut = true;
                }
                cut
            };
            if cut {
                self.row += 1;
                return Ok(Some(Err(Problem::new(
                    Severity::Error,
                    self.name.clone(),
                    format!(
                        "is longer than {}, more than {} values of at most {} each can take, \
                         so it was skipped unread; shorten its longest value, or raise the \
                         limit with --max-value-size",
                        show_size(self.tapped.lock().unwrap_or_else(|e| e.into_inner()).cap),
                        self.columns.len(),
                        show_size(self.max_value),
                    ),
                )
                .at_line(line)
                .at_row(self.row))));
            }
            // A blank line (Excel leaves them at the end) is not a contact.
            if self.record.len() == 1 && self.record[0].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.row += 1;
            if self.skip.contains(&self.row) {
                continue;
            }
            if let Some((index, at_line, column)) = stray_quote(&raw, self.delimiter) {
                let problem = Problem::new(
                    Severity::Error,
                    self.name.clone(),
                    format!(
                        "malformed quoting at line {}, column {column}: text follows the \
                         closing `\"` of a quoted value; double a `\"` inside one (`\"\"`)",
                        line + at_line
                    ),
                )
                .at_line(line)
                .at_row(self.row);
                let problem = match self.columns.names.get(index) {
                    Some(name) => problem.in_column(name.clone()),
                    None => problem,
                };
                return Ok(Some(Err(problem)));
            }
            return Ok(Some(self.convert(line)));
        }
    }

    /// The raw bytes of the record just read, dropping them from the tap.
    fn take_raw(&mut self) -> Vec<u8> {
        let start = self.record.position().map_or(0, |p| p.byte());
        let end = self.reader.position().byte();
        let mut tapped = self.tapped.lock().unwrap_or_else(|e| e.into_inner());
        let buf = &mut tapped.raw;
        let at = |pos: u64| {
            usize::try_from(pos.saturating_sub(self.raw_base))
                .map_or(buf.len(), |p| p.min(buf.len()))
        };
        let (from, to) = (at(start), at(end));
        let record = buf[from..to.max(from)].to_vec();
        // Draining in large steps keeps a million rows linear.
        if to >= 64 * 1024 || to == buf.len() {
            buf.drain(..to);
            self.raw_base += to as u64;
        }
        record
    }

    fn convert(&self, line: u64) -> std::result::Result<Recipient, Problem> {
        let problem = |message: String| {
            Problem::new(Severity::Error, self.name.clone(), message)
                .at_line(line)
                .at_row(self.row)
        };
        if self.record.len() != self.columns.len() {
            return Err(problem(format!(
                "has {} fields, the header has {}; check for a missing or extra `{}` \
                 (a value holding one must be in double quotes)",
                self.record.len(),
                self.columns.len(),
                printable_delimiter(self.delimiter),
            )));
        }
        let mut fields = Vec::with_capacity(self.record.len());
        // Before any copy: a huge value is refused while it costs only the
        // record csv read it into.
        for (i, raw) in self.record.iter().enumerate() {
            if raw.len() > self.max_value {
                return Err(problem(format!(
                    "holds a value of {} bytes, more than the limit of {}; shorten it, \
                     or raise the limit with --max-value-size",
                    raw.len(),
                    show_size(self.max_value),
                ))
                .in_column(self.columns.names[i].clone()));
            }
        }
        for (i, raw) in self.record.iter().enumerate() {
            match std::str::from_utf8(raw) {
                Ok(s) => fields.push(s.to_string()),
                Err(_) => {
                    return Err(problem(
                        "is not valid UTF-8; re-save the file as UTF-8 \
                         (in Excel: \"CSV UTF-8\")"
                            .into(),
                    )
                    .in_column(self.columns.names[i].clone()))
                }
            }
        }
        Ok(Recipient {
            row: self.row,
            line,
            columns: Arc::clone(&self.columns),
            fields,
        })
    }
}

/// What the reading end ([`Tap`]) shares with [`Recipients`].
struct Tapped {
    /// The bytes given to csv and not yet parsed past (see
    /// [`Recipients::raw`]).
    raw: Vec<u8>,
    /// The most bytes one row may take before the rest of it is skipped
    /// unread ([`row_cap`]).
    cap: usize,
    /// Rows cut short, in the order of the file.
    cuts: VecDeque<Cut>,
    /// Bytes of the file never given to csv, less the terminators given in
    /// their place.
    skipped: u64,
}

/// A row longer than the cap: csv got its first `cap` bytes, then a
/// terminator in place of the rest.
#[derive(Debug, Clone, Copy)]
struct Cut {
    /// Where, in the stream csv reads, the row now ends.
    at: u64,
    /// The line breaks left out, for the line numbers of later rows.
    lines: u64,
}

/// Bytes a header line may take before the columns are known.
const HEADER_CAP: usize = 1 << 20;

/// The longest a row can be when each of its `columns` values holds at most
/// `max_value` bytes: every `"` doubled, two quotes and a delimiter a value,
/// and a CRLF. A longer row surely holds a value over the limit (or more
/// values than the header), so it can be refused before it is read whole.
fn row_cap(columns: usize, max_value: usize) -> usize {
    columns
        .max(1)
        .saturating_mul(max_value.saturating_mul(2).saturating_add(3))
        .saturating_add(2)
}

/// Reads the file for csv, keeping a copy of what csv gets (a record's raw
/// bytes are checked for stray quotes), and keeping memory bounded: a row
/// longer than the cap reaches csv only up to the cap, then ends there.
///
/// A second parser of the same dialect ([`csv_core`], which csv itself runs
/// on) reads ahead over the whole file and says where each row really ends,
/// so the rows after a cut one are read exactly as they would have been;
/// the terminator given in place of the rest is the one that ends a record
/// from the state that parser was in when the row was cut.
struct Tap {
    inner: Box<dyn Read + Send>,
    shared: Arc<Mutex<Tapped>>,
    parser: csv_core::Reader,
    delimiter: u8,
    /// The current row so far, up to the cap.
    row: Vec<u8>,
    /// Skipping the rest of a row: the terminator to give csv at its end,
    /// and the line breaks left out so far.
    skipping: Option<(&'static [u8], u64)>,
    /// Bytes given to csv so far.
    given: u64,
    /// Read from `inner`, not yet given to csv.
    pending: Vec<u8>,
    pending_at: usize,
    /// Read from `inner`; `chunk[chunk_at..chunk_len]` not yet looked at.
    chunk: Vec<u8>,
    chunk_at: usize,
    chunk_len: usize,
    /// Whether the header line has been given: until then nothing after it
    /// is, so that the cap [`Recipients::limited`] sets holds from the first
    /// row on.
    header_done: bool,
    eof: bool,
}

impl Tap {
    fn new(inner: Box<dyn Read + Send>, shared: Arc<Mutex<Tapped>>, delimiter: u8) -> Tap {
        Tap {
            inner,
            shared,
            parser: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            delimiter,
            row: Vec::new(),
            skipping: None,
            given: 0,
            pending: Vec::new(),
            pending_at: 0,
            chunk: Vec::new(),
            chunk_at: 0,
            chunk_len: 0,
            header_done: false,
            eof: false,
        }
    }

    /// Moves what is left of the chunk into `pending`, cutting over-long
    /// rows, and stopping early after the header line.
    fn take(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        let cap = shared.cap;
        // `read` hands out all of `pending` before it takes more.
        let start = self.pending.len();
        debug_assert_eq!(start, 0);
        let (mut out, mut ends) = ([0u8; 1024], [0usize; 64]);
        let (mut pos, n) = (self.chunk_at, self.chunk_len);
        while pos < n {
            let input = &self.chunk[pos..n];
            match self.skipping.as_mut() {
                None => {
                    // Blank lines before a row are not part of it.
                    let blank = if self.row.is_empty() {
                        input
                            .iter()
                            .take_while(|&&b| b == b'\r' || b == b'\n')
                            .count()
                    } else {
                        0
                    };
                    if blank > 0 {
                        let input = &input[..blank];
                        let (_, nin, _, _) = self.parser.read_record(input, &mut out, &mut ends);
                        self.pending.extend_from_slice(&input[..nin]);
                        pos += nin;
                        continue;
                    }
                    let room = cap.saturating_sub(self.row.len());
                    if room == 0 {
                        self.skipping = Some((self.terminator(), 0));
                        continue;
                    }
                    let input = &input[..input.len().min(room)];
                    let (result, nin, _, _) = self.parser.read_record(input, &mut out, &mut ends);
                    self.pending.extend_from_slice(&input[..nin]);
                    self.row.extend_from_slice(&input[..nin]);
                    pos += nin;
                    if result == csv_core::ReadRecordResult::Record {
                        self.row.clear();
                        if !self.header_done {
                            self.header_done = true;
                            break;
                        }
                    }
                }
                Some((_, lines)) => {
                    let (result, nin, _, _) = self.parser.read_record(input, &mut out, &mut ends);
                    *lines += memchr::memchr_iter(b'\n', &input[..nin]).count() as u64;
                    shared.skipped += nin as u64;
                    pos += nin;
                    if result == csv_core::ReadRecordResult::Record {
                        self.end_skip(&mut shared);
                    }
                }
            }
        }
        self.chunk_at = pos;
        self.given += (self.pending.len() - start) as u64;
        shared.raw.extend_from_slice(&self.pending[start..]);
    }

    /// The bytes that end a record after the part of the row given so far:
    /// a carriage return, or a quote and one inside a quoted value. A
    /// carriage return, not a line feed: csv counts lines by line feeds, so
    /// the rows after keep the lines of the file once the skipped ones are
    /// added. (The part is parsed again: csv-core's `Reader::clone` copies
    /// only part of its state machine.)
    fn terminator(&self) -> &'static [u8] {
        let ends = |candidate: &[u8]| {
            let mut parser = csv_core::ReaderBuilder::new()
                .delimiter(self.delimiter)
                .build();
            let (mut out, mut ends) = ([0u8; 1024], [0usize; 64]);
            let mut input = &self.row[..];
            while !input.is_empty() {
                let (_, nin, _, _) = parser.read_record(input, &mut out, &mut ends);
                input = &input[nin..];
            }
            let (result, nin, _, _) = parser.read_record(candidate, &mut out, &mut ends);
            result == csv_core::ReadRecordResult::Record && nin == candidate.len()
        };
        if ends(b"\r") {
            b"\r"
        } else {
            debug_assert!(ends(b"\"\r"));
            b"\"\r"
        }
    }

    /// Gives csv the terminator of the row being skipped.
    fn end_skip(&mut self, shared: &mut Tapped) {
        if let Some((terminator, lines)) = self.skipping.take() {
            self.pending.extend_from_slice(terminator);
            // Progress counts the file's bytes, not the stand-in's.
            shared.skipped = shared.skipped.saturating_sub(terminator.len() as u64);
            self.row.clear();
            shared.cuts.push_back(Cut {
                at: self.given + self.pending.len() as u64,
                lines,
            });
        }
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending_at == self.pending.len() {
            self.pending.clear();
            self.pending_at = 0;
            if self.eof {
                return Ok(0);
            }
            if self.chunk_at < self.chunk_len {
                self.take();
                continue;
            }
            self.chunk.resize(64 * 1024, 0);
            let n = self.inner.read(&mut self.chunk)?;
            if n == 0 {
                self.eof = true;
                let shared = Arc::clone(&self.shared);
                let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
                let start = self.pending.len();
                self.end_skip(&mut shared);
                shared.raw.extend_from_slice(&self.pending[start..]);
                self.given += (self.pending.len() - start) as u64;
                continue;
            }
            (self.chunk_at, self.chunk_len) = (0, n);
            self.take();
        }
        let n = buf.len().min(self.pending.len() - self.pending_at);
        buf[..n].copy_from_slice(&self.pending[self.pending_at..self.pending_at + n]);
        self.pending_at += n;
        Ok(n)
    }
}

/// Where a quoted value in one raw record is followed by text before the
/// next delimiter: (field index, lines into the record, 1-based column).
fn stray_quote(raw: &[u8], delimiter: u8) -> Option<(usize, u64, usize)> {
    // csv may start a CRLF record at the `\n` of the previous terminator.
    let skip = raw
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let raw = &raw[skip..];
    let (mut i, mut field) = (0, 0);
    while i < raw.len() {
        if raw[i] == b'"' {
            i += 1;
            loop {
                match raw[i..].iter().position(|&b| b == b'"') {
                    None => return None,
                    Some(k) if raw.get(i + k + 1) == Some(&b'"') => i += k + 2,
                    Some(k) => {
                        i += k + 1;
                        break;
                    }
                }
            }
            match raw.get(i) {
                None | Some(b'\r' | b'\n') => return None,
                Some(&b) if b == delimiter => {}
                Some(_) => {
                    let lines = raw[..i].iter().filter(|&&b| b == b'\n').count();
                    let line_start = raw[..i]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1);
                    let column = String::from_utf8_lossy(&raw[line_start..i]).chars().count() + 1;
                    return Some((field, lines as u64, column));
                }
            }
        } else {
            while i < raw.len() && raw[i] != delimiter && raw[i] != b'\n' && raw[i] != b'\r' {
                i += 1;
            }
            if i >= raw.len() || raw[i] != delimiter {
                return None;
            }
        }
        // At a delimiter: the next field starts after it.
        i += 1;
        field += 1;
    }
    None
}

impl Iterator for Recipients {
    type Item = Result<std::result::Result<Recipient, Problem>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().transpose()
    }
}

fn printable_delimiter(d: u8) -> String {
    match d {
        b'\t' => "tab".into(),
        other => (other as char).to_string(),
    }
}

/// Picks the delimiter that occurs most often outside quotes on the first
/// line; a comma when none does.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = DELIMITERS.iter().position(|&d| d == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let (best, count) =
        counts
            .iter()
            .enumerate()
            .fold((0, 0), |acc, (i, &c)| if c > acc.1 { (i, c) } else { acc });
    if count == 0 {
        b','
    } else {
        DELIMITERS[best]
    }
}

fn parse_header(name: &str, header: &csv::ByteRecord) -> Result<Columns> {
    let fail = |message: String| Error::Recipients {
        path: name.to_string(),
        message,
    };
    let mut names = Vec::with_capacity(header.len());
    let mut index = HashMap::new();
    for (i, raw) in header.iter().enumerate() {
        let raw = if i == 0 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        let text = std::str::from_utf8(raw).map_err(|_| {
            fail(format!(
                "line 1: column {} of the header is not valid UTF-8; re-save the file as UTF-8",
                i + 1
            ))
        })?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(fail(format!(
                "line 1: column {} of the header has no name; name it or remove the \
                 extra delimiter",
                i + 1
            )));
        }
        if index.insert(text.clone(), i).is_some() {
            return Err(fail(format!(
                "line 1: the header names column `{text}` twice; rename one of them"
            )));
        }
        names.push(text);
    }
    Ok(Columns { names, index })
}

/// The addresses of a list seen so far, compared without case: the one
/// duplicate rule `check` and the gallery share, in the same words.
///
/// Keeps a 64-bit hash of each lower-cased address and where it was first
/// seen, 16 bytes however long the address (about 50 bytes a row at peak,
/// with the table's spare room and regrowth: 61 MB for `check` of a million
/// rows). Two different addresses share a hash about once in
/// 2^64 pairs (about 1 in 40 million over a million rows); the cost would
/// be one wrong warning, since `send` finds duplicates in its journal.
#[derive(Debug, Default)]
pub struct Duplicates(HashMap<u64, (u32, u32)>);

impl Duplicates {
    /// `None` the first time `address` is seen (remembered at `row` and
    /// `line`); after that, the warning naming that first row.
    pub fn note(&mut self, address: &str, row: usize, line: u64) -> Option<String> {
        let key = xxhash_rust::xxh3::xxh3_64(address.to_ascii_lowercase().as_bytes());
        match self.0.entry(key) {
            std::collections::hash_map::Entry::Occupied(first) => {
                let (row, line) = *first.get();
                Some(format!(
                    "`{address}` is a duplicate of row {row} (line {line}); it will be sent once"
                ))
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                // Beyond 4 billion rows the first row's number is capped;
                // the warning itself still comes.
                let cap = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
                slot.insert((cap(row as u64), cap(line)));
                None
            }
        }
    }

    /// Bytes held per address seen, whatever its length.
    #[cfg(test)]
    fn bytes_per_address() -> usize {
        std::mem::size_of::<(u64, (u32, u32))>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(data: &[u8]) -> Result<(Recipients, Vec<std::result::Result<Recipient, Problem>>)> {
        let mut r = Recipients::from_reader(
            "t.csv".into(),
            Box::new(data.to_vec().leak() as &[u8]),
            None,
        )?;
        let mut rows = Vec::new();
        while let Some(row) = r.next_row()? {
            rows.push(row);
        }
        Ok((r, rows))
    }

    #[test]
    fn strips_bom_and_handles_crlf() {
        let (r, rows) = read(b"\xEF\xBB\xBFemail,name\r\na@example.org,Ann\r\n").unwrap();
        assert_eq!(r.columns().names(), ["email", "name"]);
        let row = rows[0].as_ref().unwrap();
        assert_eq!(row.get("name"), Some("Ann"));
        assert_eq!(row.line, 2);
    }

    #[test]
    fn crlf_lines_count_right_across_quoted_newlines() {
        let (_, rows) = read(b"email,note\r\na@x.org,\"x\r\ny\"\r\nb@x.org,z\r\n").unwrap();
        assert_eq!(rows[0].as_ref().unwrap().line, 2);
        assert_eq!(rows[1].as_ref().unwrap().line, 4);
    }

    #[test]
    fn detects_semicolon_and_tab() {
        let (r, rows) = read(b"email;name\na@example.org;\"A;B\"\n").unwrap();
        assert_eq!(r.delimiter(), b';');
        assert_eq!(rows[0].as_ref().unwrap().get("name"), Some("A;B"));
        let (r, _) = read(b"email\tname\na@example.org\tAnn\n").unwrap();
        assert_eq!(r.delimiter(), b'\t');
    }

    #[test]
    fn quoted_newline_keeps_line_of_row_start() {
        let (_, rows) = read(b"email,note\na@x.org,\"two\nlines\"\nb@x.org,x\n").unwrap();
        assert_eq!(rows[0].as_ref().unwrap().get("note"), Some("two\nlines"));
        assert_eq!(rows[1].as_ref().unwrap().line, 4);
        assert_eq!(rows[1].as_ref().unwrap().row, 2);
    }

    #[test]
    fn ragged_and_invalid_utf8_rows_are_problems_not_errors() {
        let (_, rows) = read(b"email,name\na@x.org\nb@x.org,M\xFCller\nc@x.org,C\n").unwrap();
        let ragged = rows[0].as_ref().unwrap_err();
        assert_eq!(ragged.line, Some(2));
        assert!(ragged.message.contains("has 1 fields, the header has 2"));
        let latin1 = rows[1].as_ref().unwrap_err();
        assert_eq!(latin1.column.as_deref(), Some("name"));
        assert!(latin1.message.contains("UTF-8"));
        assert!(rows[2].is_ok());
    }

    #[test]
    fn text_after_a_closing_quote_is_malformed_quoting() {
        let (_, rows) = read(
            b"email,name\r\na@x.org,\"Ann\"x\"\r\nb@x.org,\"B\"\"o\"\"b\"\r\nc@x.org,\"C\nx\"y\r\n",
        )
        .unwrap();
        let bad = rows[0].as_ref().unwrap_err();
        assert_eq!(bad.line, Some(2));
        assert_eq!(bad.column.as_deref(), Some("name"));
        assert!(
            bad.message
                .contains("malformed quoting at line 2, column 14"),
            "{}",
            bad.message
        );
        assert_eq!(rows[1].as_ref().unwrap().get("name"), Some("B\"o\"b"));
        // Past the tap's first drain (64 KiB) the offsets still line up.
        let mut big = b"email,name\n".to_vec();
        for i in 0..10_000 {
            big.extend_from_slice(format!("a{i}@x.org,\"N, {i}\"\n").as_bytes());
        }
        big.extend_from_slice(b"z@x.org,\"Z\" z\n");
        let (_, many) = read(&big).unwrap();
        assert!(many[..10_000].iter().all(Result::is_ok));
        assert!(many[10_000].is_err());
        let bad = rows[2].as_ref().unwrap_err();
        assert!(
            bad.message.contains("at line 5, column 3"),
            "{}",
            bad.message
        );
    }

    #[test]
    fn empty_file_and_bad_headers_are_fatal() {
        assert!(read(b"").unwrap_err().to_string().contains("empty"));
        assert!(read(b"email,email\n")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(read(b"email,,x\n")
            .unwrap_err()
            .to_string()
            .contains("no name"));
    }

    #[test]
    fn a_value_over_the_limit_rejects_its_row_with_line_and_column() {
        let data = format!("email,name\na@x.org,{}\nb@x.org,Bo\n", "n".repeat(101));
        let mut r = Recipients::from_reader(
            "t.csv".into(),
            Box::new(std::io::Cursor::new(data.into_bytes())),
            None,
        )
        .unwrap()
        .limited(100);
        let big = r.next_row().unwrap().unwrap().unwrap_err();
        assert_eq!((big.line, big.row), (Some(2), Some(1)));
        assert_eq!(big.column.as_deref(), Some("name"));
        assert!(big.message.contains("101 bytes"), "{}", big.message);
        assert!(big.message.contains("--max-value-size"));
        assert!(r.next_row().unwrap().unwrap().is_ok());
    }

    /// Reads `data` with values capped at `max_value`; `cap_rows: false`
    /// lifts the row cap, so every row is read whole as before it existed.
    fn read_capped(
        data: &[u8],
        max_value: usize,
        cap_rows: bool,
    ) -> Vec<std::result::Result<Recipient, Problem>> {
        let mut r = Recipients::from_reader(
            "t.csv".into(),
            Box::new(std::io::Cursor::new(data.to_vec())),
            None,
        )
        .unwrap()
        .limited(max_value);
        if !cap_rows {
            r.tapped.lock().unwrap().cap = usize::MAX;
        }
        let mut rows = Vec::new();
        while let Some(row) = r.next_row().unwrap() {
            rows.push(row);
        }
        rows
    }

    #[test]
    fn a_row_too_long_for_its_columns_is_skipped_unread_and_the_next_rows_are_whole() {
        // 20 MB of quoted value, with line breaks, doubled quotes and
        // delimiters in it, between two ordinary rows.
        let huge = "ab,\"\"\n".repeat(4 << 20);
        let data =
            format!("email,name\na@x.org,Ann\nb@x.org,\"{huge}\"\nc@x.org,\"Cy\nD\"\nd@x.org,Di\n");
        let mut r = Recipients::from_reader(
            "t.csv".into(),
            Box::new(std::io::Cursor::new(data.clone().into_bytes())),
            None,
        )
        .unwrap()
        .limited(100);
        let mut rows = Vec::new();
        while let Some(row) = r.next_row().unwrap() {
            rows.push(row);
            // Never more than one capped row held, whatever the value.
            assert!(r.tapped.lock().unwrap().raw.capacity() < 1 << 20);
        }
        assert_eq!(rows.len(), 4);
        let cut = rows[1].as_ref().unwrap_err();
        assert_eq!((cut.line, cut.row), (Some(3), Some(2)));
        assert!(cut.message.contains("skipped unread"), "{}", cut.message);
        assert!(cut.message.contains("--max-value-size"), "{}", cut.message);
        let c = rows[2].as_ref().unwrap();
        let lines_in_huge = 4 << 20;
        assert_eq!((c.row, c.line), (3, 3 + lines_in_huge + 1));
        assert_eq!(c.fields, ["c@x.org", "Cy\nD"]);
        let d = rows[3].as_ref().unwrap();
        assert_eq!((d.row, d.line), (4, 3 + lines_in_huge + 3));
        assert_eq!(d.fields, ["d@x.org", "Di"]);
        // What the progress bar is told covers the skipped bytes too.
        assert_eq!(r.bytes_read(), data.len() as u64);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 10_000,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Whatever the bytes, the cap changes nothing but the rows it cuts:
        /// every other row is read as it was without the cap, at its line.
        #[test]
        fn cutting_a_row_never_changes_another(
            body in "[ab,\"\r\n ]{0,200}", max_value in 1usize..6
        ) {
            let data = format!("email,name\n{body}");
            let capped = read_capped(data.as_bytes(), max_value, true);
            let whole = read_capped(data.as_bytes(), max_value, false);
            let by_line = |rows: &[std::result::Result<Recipient, Problem>]| {
                rows.iter()
                    .map(|r| match r {
                        Ok(r) => (r.line, Some(r.fields.clone())),
                        Err(p) => (p.line.unwrap(), None),
                    })
                    .collect::<Vec<_>>()
            };
            let (capped_rows, whole_rows) = (by_line(&capped), by_line(&whole));
            for (line, fields) in &capped_rows {
                if let Some(fields) = fields {
                    proptest::prop_assert!(
                        whole_rows.contains(&(*line, Some(fields.clone()))),
                        "line {line}: {fields:?} not read so without the cap"
                    );
                }
            }
            for (i, row) in capped.iter().enumerate() {
                // A row refused for another reason is refused without the
                // cap too. (A cut row needs no such check: the count of
                // rows read below shows no good row was cut.)
                if let Err(p) = row {
                    if !p.message.contains("skipped unread") {
                        let refused = whole_rows.contains(&(p.line.unwrap(), None));
                        proptest::prop_assert!(refused, "row {i}: {p}");
                    }
                }
            }
            let kept = |rows: &[(u64, Option<Vec<String>>)]| {
                rows.iter().filter(|r| r.1.is_some()).count()
            };
            proptest::prop_assert_eq!(kept(&capped_rows), kept(&whole_rows));
        }
    }

    #[test]
    fn sizes_take_k_m_g() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5T").is_err());
        assert_eq!(show_size(64 * 1024), "64K");
        assert_eq!(show_size(100), "100 bytes");
    }

    #[test]
    fn blank_lines_are_skipped() {
        let (_, rows) = read(b"email\na@x.org\n\n\nb@x.org\n").unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn duplicates_name_the_first_row_and_keep_no_address() {
        let mut seen = Duplicates::default();
        let long = format!("{}@example.org", "a".repeat(10_000));
        assert_eq!(seen.note(&long, 1, 2), None);
        assert_eq!(seen.note("b@example.org", 2, 3), None);
        let warning = seen.note(&long.to_uppercase(), 3, 4).unwrap();
        assert!(warning.ends_with("is a duplicate of row 1 (line 2); it will be sent once"));
        assert!(seen
            .note("B@Example.org", 4, 5)
            .unwrap()
            .contains("row 2 (line 3)"));
        assert_eq!(seen.note("c@example.org", 5, 6), None);
        // A 10,000-byte address costs what a short one does.
        assert_eq!(seen.0.len(), 3);
        assert_eq!(Duplicates::bytes_per_address(), 16);
    }
}
