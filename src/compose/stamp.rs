//! What makes each letter unique in time: the [`Stamp`] (Date, Message-ID,
//! MIME boundary) and the [`Clock`] that makes it. Reading the system clock
//! happens at the edge of a run ([`Clock::now`]); building a message never
//! reads it.

/// What makes a message unique in time: from the clock and a random source
/// in a normal run, from `SOURCE_DATE_EPOCH` and a hash in a deterministic
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Seconds since the Unix epoch, UTC.
    pub date: i64,
    /// 128 bits that make the Message-ID and the boundary.
    pub id: u128,
}

impl Stamp {
    pub fn message_id(&self, domain: &str) -> String {
        format!("<{:032x}@{}>", self.id, domain)
    }

    /// Starts with `=_`, which quoted-printable never writes, so the boundary
    /// cannot occur in a body.
    pub fn boundary(&self) -> String {
        format!("=_lp_{:032x}", self.id)
    }

    /// RFC 5322 date in UTC, e.g. `Thu, 01 Jan 1970 00:00:00 +0000`.
    pub fn rfc5322_date(&self) -> String {
        let dt = time::OffsetDateTime::from_unix_timestamp(self.date)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
            DAYS[dt.weekday().number_days_from_monday() as usize],
            dt.day(),
            MONTHS[dt.month() as usize - 1],
            dt.year(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )
    }
}

/// Where Date and Message-ID come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// `--deterministic` / `SOURCE_DATE_EPOCH`: this date, ids from a hash of
    /// the campaign and the recipient's fields.
    Fixed(i64),
    /// The system clock and random ids.
    System,
}

impl Clock {
    /// The stamp for one letter. The system date is read once per run, so
    /// every letter of a run carries the same Date.
    pub fn stamp(&self, now: i64, fingerprint: u128) -> Stamp {
        match self {
            Clock::Fixed(date) => Stamp {
                date: *date,
                id: fingerprint,
            },
            Clock::System => {
                let mut bytes = [0u8; 16];
                // Without randomness, fall back to the fingerprint mixed
                // with the time: still unique per recipient and run.
                let id = match getrandom::fill(&mut bytes) {
                    Ok(()) => u128::from_le_bytes(bytes),
                    Err(_) => fingerprint ^ (now as u128) << 64,
                };
                Stamp { date: now, id }
            }
        }
    }
}

impl Clock {
    /// The run's date: the fixed one, or the system clock read once.
    pub fn now(&self) -> i64 {
        match self {
            Clock::Fixed(d) => *d,
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }
    }
}
