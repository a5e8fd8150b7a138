//! Reading the contact list: a CSV file streamed row by row (so a million
//! rows cost no more memory than ten), with its delimiter detected, a BOM
//! stripped, and every malformed row turned into a [`Problem`] that names its
//! line instead of stopping the run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
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
    raw: Arc<Mutex<Vec<u8>>>,
    raw_base: u64,
    /// csv reports a record's line one too low in CRLF files (it starts the
    /// record before the `\n` of the previous terminator).
    line_fix: u64,
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
        let raw = Arc::new(Mutex::new(Vec::new()));
        let input = Box::new(Tap {
            inner: input,
            raw: Arc::clone(&raw),
        });
        let mut buffered = BufReader::with_capacity(64 * 1024, input);
        let head = buffered.fill_buf().map_err(|source| Error::Read {
            path: name.clone().into(),
            source,
        })?;
        let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
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
        let boxed: Box<dyn Read + Send> = Box::new(buffered);
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
        Ok(Recipients {
            name,
            reader,
            columns: Arc::new(columns),
            delimiter,
            record: csv::ByteRecord::new(),
            max_value: Limits::default().value,
            row: 0,
            raw,
            raw_base: 0,
            line_fix,
        })
    }

    /// Rejects a row holding a value longer than `max_value` bytes.
    pub fn limited(self, max_value: usize) -> Recipients {
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
        self.reader.position().byte()
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
            let raw = self.take_raw();
            // A blank line (Excel leaves them at the end) is not a contact.
            if self.record.len() == 1 && self.record[0].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.row += 1;
            let line = self.record.position().map_or(0, |p| p.line()) + self.line_fix;
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
        let mut buf = self.raw.lock().unwrap_or_else(|e| e.into_inner());
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

/// Copies what the csv reader reads, so a record's raw bytes can be checked.
struct Tap {
    inner: Box<dyn Read + Send>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.raw
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(&buf[..n]);
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
