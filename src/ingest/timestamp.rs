//! Event-time parsing (DESIGN §2): RFC 3339 with `Z` or an offset (lower-case `t`/`z` and a
//! space separator accepted), naive ISO-8601 read as UTC, epoch seconds or milliseconds as
//! numbers or numeric strings. Precision beyond milliseconds is truncated.

/// Latest accepted instant: 9999-12-31T23:59:59.999Z.
const MAX_MS: i64 = 253_402_300_799_999;
/// Epoch numbers below this are seconds, at or above it milliseconds.
const SECONDS_BELOW: f64 = 1e11;

/// Days from 1970-01-01 to a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp as i64 + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// An epoch number: seconds below 10^11, otherwise milliseconds; fractions allowed.
pub fn from_epoch(n: f64) -> Result<i64, String> {
    if !n.is_finite() {
        return Err("is not a finite number".into());
    }
    if n < 0.0 {
        return Err(format!("{n} is before 1970"));
    }
    let ms = if n < SECONDS_BELOW { n * 1000.0 } else { n };
    let ms = ms.trunc();
    if ms > MAX_MS as f64 {
        return Err(format!("{n} is after the year 9999"));
    }
    Ok(ms as i64)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(s.iter().fold(0, |a, d| a * 10 + (d - b'0') as u32))
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
}

/// Parses a timestamp string. Numeric strings are epoch numbers.
pub fn parse(s: &str) -> Result<i64, String> {
    if s.is_empty() {
        return Err("is an empty string".into());
    }
    let b = s.as_bytes();
    if b.iter().all(|c| c.is_ascii_digit() || *c == b'.')
        && b.iter().filter(|c| **c == b'.').count() <= 1
    {
        return s
            .parse::<f64>()
            .map_err(|_| format!("'{s}' is not a number"))
            .and_then(from_epoch);
    }
    parse_datetime(b).ok_or_else(|| {
        format!("'{s}' is not RFC 3339, ISO-8601 date-time or epoch seconds/milliseconds")
    })?
}

fn parse_datetime(b: &[u8]) -> Option<Result<i64, String>> {
    let mut c = Cursor { b, i: 0 };
    let year = c.digits(4)? as i64;
    if !c.eat(b'-') {
        return None;
    }
    let month = c.digits(2)?;
    if !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2)?;
    // A bare date is not an event time.
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return None;
    }
    let hour = c.digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    let minute = c.digits(2)?;
    let mut second = 0;
    let mut millis = 0;
    if c.eat(b':') {
        second = c.digits(2)?;
        if c.eat(b'.') || c.eat(b',') {
            millis = fraction_millis(&mut c)?;
        }
    }
    let offset_min = offset_minutes(&mut c)?;
    if c.i != b.len() {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Some(Err(format!(
            "'{}' is not a valid calendar date and time",
            String::from_utf8_lossy(b)
        )));
    }
    let second = second.min(59); // a leap second reads as :59
    let days = days_from_civil(year, month, day);
    let ms = ((days * 24 + hour as i64) * 60 + minute as i64 - offset_min) * 60_000
        + second as i64 * 1000
        + millis;
    if !(0..=MAX_MS).contains(&ms) {
        return Some(Err(format!(
            "'{}' is outside 1970..9999",
            String::from_utf8_lossy(b)
        )));
    }
    Some(Ok(ms))
}

/// The digits after the decimal sign as milliseconds (more than three: cut); `None` when
/// there are none.
#[inline]
fn fraction_millis(c: &mut Cursor<'_>) -> Option<i64> {
    let start = c.i;
    while c.peek().is_some_and(|d| d.is_ascii_digit()) {
        c.i += 1;
    }
    let frac = &c.b[start..c.i];
    if frac.is_empty() {
        return None;
    }
    Some(
        frac.iter()
            .chain(std::iter::repeat(&b'0'))
            .take(3)
            .fold(0, |a, d| a * 10 + (d - b'0') as i64),
    )
}

/// The UTC offset in minutes at the end of a date-time: none (UTC), `Z`, or `±hh[:]mm`;
/// `None` when it is anything else.
#[inline]
fn offset_minutes(c: &mut Cursor<'_>) -> Option<i64> {
    let offset = match c.peek() {
        None => 0,
        Some(b'Z') | Some(b'z') => {
            c.i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let h = c.digits(2)? as i64;
            let m = if c.eat(b':') {
                c.digits(2)? as i64
            } else {
                c.digits(2).unwrap_or(0) as i64
            };
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 60 + m;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        Some(_) => return None,
    };
    Some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_704_110_400_000; // 2024-01-01T12:00:00Z

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse("2024-01-01T12:00:00Z"), Ok(T));
        assert_eq!(parse("2024-01-01t12:00:00z"), Ok(T));
        assert_eq!(parse("2024-01-01 12:00:00Z"), Ok(T));
        assert_eq!(parse("2024-01-01T14:30:00+02:30"), Ok(T));
        assert_eq!(parse("2024-01-01T07:00:00-0500"), Ok(T));
        assert_eq!(parse("2024-01-01T12:00:00.123Z"), Ok(T + 123));
        assert_eq!(parse("2024-01-01T12:00:00.123456789Z"), Ok(T + 123));
        assert_eq!(parse("2024-01-01T12:00:00.5Z"), Ok(T + 500));
    }

    #[test]
    fn naive_is_utc() {
        assert_eq!(parse("2024-01-01T12:00:00"), Ok(T));
        assert_eq!(parse("2024-01-01T12:00:00.654321"), Ok(T + 654));
        assert_eq!(parse("2024-01-01T12:00"), Ok(T));
    }

    #[test]
    fn epochs() {
        assert_eq!(parse("1704110400"), Ok(T));
        assert_eq!(parse("1704110400000"), Ok(T));
        assert_eq!(parse("1704110400.25"), Ok(T + 250));
        assert_eq!(from_epoch(1_704_110_400.0), Ok(T));
        assert_eq!(from_epoch(1_704_110_400_000.9), Ok(T));
        assert_eq!(from_epoch(99_999_999_999.0), Ok(99_999_999_999_000));
        assert_eq!(from_epoch(100_000_000_000.0), Ok(100_000_000_000));
        assert!(from_epoch(-1.0).is_err());
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "2024-01-01",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T12:00:00Zjunk",
            "2024-01-01T12:00:00.Z",
            "1.2.3",
        ] {
            assert!(parse(s).is_err(), "{s:?} accepted");
        }
        assert_eq!(parse("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
    }
}
