//! Calendar arithmetic in a time zone: local days, ISO weeks, leaderboard period keys.
//!
//! Caps, streaks and daily/weekly leaderboards are about the customer's calendar, not UTC
//! (a recharge at 01:00 in Nairobi belongs to that local day). Days are numbered as
//! days since 1970-01-01 *in the zone*, so buckets compare and subtract as plain integers.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub const DAY_MS: i64 = 86_400_000;

/// Days between 0001-01-01 (chrono's day 1) and 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// A local calendar day: days since 1970-01-01 in some time zone.
pub type LocalDay = i32;

/// The instant as a UTC date-time; out-of-range instants clamp to the epoch (event times
/// are validated by ingest, so this never happens on real input).
fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn local_date(ms: i64, tz: Tz) -> NaiveDate {
    utc(ms).with_timezone(&tz).date_naive()
}

/// The local day of an instant in `tz`.
pub fn local_day(ms: i64, tz: Tz) -> LocalDay {
    local_date(ms, tz).num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// A local day as `YYYY-MM-DD`.
pub fn day_string(day: LocalDay) -> String {
    let date = NaiveDate::from_num_days_from_ce_opt(day.saturating_add(UNIX_EPOCH_DAYS_FROM_CE))
        .unwrap_or_default();
    let mut s = String::with_capacity(10);
    push_date(&mut s, date, true);
    s
}

/// Appends `date` as `%Y-%m-%d` (`%Y-%m` without `with_day`), as chrono writes it.
/// Results and leaderboard periods carry dates on every event, and chrono's formatter
/// parses its pattern on each call, so years 0..=9999 are written by hand; other years
/// go through chrono.
fn push_date(out: &mut String, date: NaiveDate, with_day: bool) {
    use std::fmt::Write;
    if !(0..=9999).contains(&date.year()) {
        let pattern = if with_day { "%Y-%m-%d" } else { "%Y-%m" };
        let _ = write!(out, "{}", date.format(pattern));
        return;
    }
    let mut b = *b"0000-00-00";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, date.year() as u32);
    put(5, 2, date.month());
    put(8, 2, date.day());
    let len = if with_day { 10 } else { 7 };
    out.push_str(std::str::from_utf8(&b[..len]).expect("ASCII digits"));
}

/// The Monday that starts the ISO week containing `day`.
pub fn week_start(day: LocalDay) -> LocalDay {
    // 1970-01-01 was a Thursday: weekday index from Monday is (day + 3) mod 7.
    day - (day + 3).rem_euclid(7)
}

/// RFC 3339 in UTC with milliseconds and `Z`, the output contract's time format.
///
/// Every output carries one, so years 0..=9999 are written by hand (chrono's formatter
/// parses the pattern on each call: ~4 % of the whole topology's CPU); other years fall
/// back to chrono.
pub fn rfc3339_ms(ms: i64) -> String {
    // The civil date by arithmetic (chrono's accessors decode its packed date on each call:
    // ~900 instructions per result's timestamp, issue 15 item 5).
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    if !(0..=9999).contains(&year) {
        return utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    let in_day = ms.rem_euclid(DAY_MS);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, in_day / 3_600_000);
    put(14, 2, in_day / 60_000 % 60);
    put(17, 2, in_day / 1000 % 60);
    put(20, 3, in_day % 1000);
    String::from_utf8(b.to_vec()).expect("ASCII digits")
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01: Howard
/// Hinnant's `civil_from_days` (eras of 400 years).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whole days covered by a duration, rounded up (a 36 h window spans 2 day buckets).
pub fn whole_days(d: std::time::Duration) -> i32 {
    let days = d.as_millis().div_ceil(DAY_MS as u128);
    i32::try_from(days).unwrap_or(i32::MAX)
}

/// A leaderboard period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    AllTime,
}

impl Period {
    pub const ALL: [Period; 4] = [
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::AllTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::AllTime => "all_time",
        }
    }

    pub fn parse(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The period an instant falls in, in `tz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodSpan {
    /// `daily:2024-01-15`, `weekly:2024-W03`, `monthly:2024-01`, `all_time`.
    pub key: String,
    /// First instant after the period (epoch ms UTC); `i64::MAX` for `all_time`.
    pub end_ms: i64,
}

impl PeriodSpan {
    /// The one `all_time` period: no date to compute it from, and no end.
    fn all_time() -> PeriodSpan {
        PeriodSpan {
            key: Period::AllTime.name().into(),
            end_ms: i64::MAX,
        }
    }
}

/// Spans computed lately on this thread, newest last: every event of a day asks for the
/// same few (one per board period), and computing one (a key formatted, the next period's
/// first instant found in the zone's rules) was ~2 % of the full topology's instructions.
const RECENT_SPANS: usize = 8;

thread_local! {
    static RECENT: std::cell::RefCell<Vec<(Period, Tz, NaiveDate, PeriodSpan)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The key and end of the period containing `ms` in `tz`.
pub fn period_span(period: Period, ms: i64, tz: Tz) -> PeriodSpan {
    if period == Period::AllTime {
        return PeriodSpan::all_time();
    }
    // A span is a function of the period, the zone and the local date: remembered by those,
    // it is exact whatever the zone's transitions.
    let date = local_date(ms, tz);
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        if let Some((.., span)) = recent
            .iter()
            .rev()
            .find(|(p, z, d, _)| *p == period && *z == tz && *d == date)
        {
            return span.clone();
        }
        let span = span_of_date(period, date, tz);
        if recent.len() == RECENT_SPANS {
            recent.remove(0);
        }
        recent.push((period, tz, date, span.clone()));
        span
    })
}

/// The key and end of the period containing local `date` in `tz`.
fn span_of_date(period: Period, date: NaiveDate, tz: Tz) -> PeriodSpan {
    let (key, next_start) = match period {
        Period::AllTime => return PeriodSpan::all_time(),
        Period::Daily => {
            let mut key = String::with_capacity(16);
            key.push_str("daily:");
            push_date(&mut key, date, true);
            (key, date.succ_opt())
        }
        Period::Weekly => {
            let w = date.iso_week();
            let monday = date - chrono::Days::new(u64::from(date.weekday().num_days_from_monday()));
            (
                format!("weekly:{}-W{:02}", w.year(), w.week()),
                monday.checked_add_days(chrono::Days::new(7)),
            )
        }
        Period::Monthly => {
            let mut key = String::with_capacity(16);
            key.push_str("monthly:");
            push_date(&mut key, date, false);
            (
                key,
                date.with_day(1)
                    .and_then(|d| d.checked_add_months(chrono::Months::new(1))),
            )
        }
    };
    PeriodSpan {
        key,
        end_ms: next_start.map_or(i64::MAX, |d| start_of_day_ms(d, tz)),
    }
}

/// The first instant of a local date in `tz` (the earliest one if midnight is ambiguous,
/// the first existing one if a DST gap swallows midnight).
fn start_of_day_ms(date: NaiveDate, tz: Tz) -> i64 {
    use chrono::offset::LocalResult;
    use chrono::TimeZone;
    let mut t = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => return d.timestamp_millis(),
            LocalResult::None => t += chrono::Duration::minutes(30),
        }
    }
    t.and_utc().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn dates_written_by_hand_are_what_chrono_writes() {
        // Every 97th day over years -3..10003, so both sides of the hand-written range.
        let from = NaiveDate::from_ymd_opt(-3, 1, 1).unwrap();
        let to = NaiveDate::from_ymd_opt(10_003, 12, 31).unwrap();
        let mut d = from;
        while d <= to {
            let day = (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as LocalDay;
            assert_eq!(day_string(day), d.format("%Y-%m-%d").to_string());
            let noon = d
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis();
            assert_eq!(
                period_span(Period::Daily, noon, Tz::UTC).key,
                format!("daily:{}", d.format("%Y-%m-%d"))
            );
            assert_eq!(
                period_span(Period::Monthly, noon, Tz::UTC).key,
                format!("monthly:{}", d.format("%Y-%m"))
            );
            d += chrono::TimeDelta::days(97);
        }
    }

    #[test]
    fn local_day_follows_the_zone() {
        let nairobi: Tz = "Africa/Nairobi".parse().unwrap();
        // 22:30 UTC on the 14th is 01:30 on the 15th in Nairobi (UTC+3).
        let t = ms("2024-01-14T22:30:00Z");
        assert_eq!(local_day(t, Tz::UTC) + 1, local_day(t, nairobi));
        assert_eq!(local_day(0, Tz::UTC), 0);
        assert_eq!(local_day(-1, Tz::UTC), -1);
        assert_eq!(day_string(local_day(t, nairobi)), "2024-01-15");
    }

    #[test]
    fn weeks_start_on_monday() {
        let monday = local_day(ms("2024-01-15T12:00:00Z"), Tz::UTC);
        for d in 0..7 {
            assert_eq!(week_start(monday + d), monday);
        }
        assert_eq!(week_start(monday - 1), monday - 7);
    }

    #[test]
    fn period_keys_match_the_contract() {
        let t = ms("2024-01-15T10:00:00Z");
        let key = |p| period_span(p, t, Tz::UTC).key;
        assert_eq!(key(Period::Daily), "daily:2024-01-15");
        assert_eq!(key(Period::Weekly), "weekly:2024-W03");
        assert_eq!(key(Period::Monthly), "monthly:2024-01");
        assert_eq!(key(Period::AllTime), "all_time");
        // ISO week-year: 2024-12-30 belongs to 2025-W01.
        assert_eq!(
            period_span(Period::Weekly, ms("2024-12-30T10:00:00Z"), Tz::UTC).key,
            "weekly:2025-W01"
        );
        assert_eq!(
            period_span(Period::Monthly, t, Tz::UTC).end_ms,
            ms("2024-02-01T00:00:00Z")
        );
        assert_eq!(
            period_span(Period::Weekly, t, Tz::UTC).end_ms,
            ms("2024-01-22T00:00:00Z")
        );
    }

    /// The spans remembered per thread are the ones computed: instants over two years in
    /// zones with transitions at and around midnight, interleaved so that zones, periods
    /// and dates keep hitting and evicting each other's entries.
    #[test]
    fn remembered_spans_are_the_computed_ones() {
        let zones: Vec<Tz> = [
            "UTC",
            "Europe/Paris",
            "America/Sao_Paulo",
            "America/Havana",
            "Australia/Lord_Howe",
            "Asia/Tehran",
        ]
        .iter()
        .map(|z| z.parse().unwrap())
        .collect();
        let start = ms("2017-01-01T00:00:00Z");
        let mut t = start;
        let mut i = 0usize;
        while t < start + 730 * DAY_MS {
            let tz = zones[i % zones.len()];
            let period = [Period::Daily, Period::Weekly, Period::Monthly][i % 3];
            let expected = span_of_date(period, local_date(t, tz), tz);
            assert_eq!(period_span(period, t, tz), expected, "{period:?} {tz} {t}");
            // Uneven steps: some instants repeat a date, some cross into the next.
            t += [17, 3, 29, 61, 7][i % 5] * 60_000 * 7;
            i += 1;
        }
    }

    #[test]
    fn day_ends_respect_dst() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // 2024-03-31 is 23 hours long in Paris.
        let span = period_span(Period::Daily, ms("2024-03-31T10:00:00Z"), paris);
        assert_eq!(span.end_ms, ms("2024-03-31T22:00:00Z"));
    }

    #[test]
    fn rfc3339_by_hand_equals_chrono() {
        for ms in [
            0,
            1,
            999,
            1_705_312_800_123,
            -1,
            -86_400_001,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_167_219_200_001,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(
                rfc3339_ms(ms),
                utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "{ms}"
            );
        }
        // Every 97th day over years -3..10003 (both sides of the hand-written range), at
        // times that move through the hours, minutes, seconds and milliseconds.
        let from = NaiveDate::from_ymd_opt(-3, 1, 1).unwrap();
        let to = NaiveDate::from_ymd_opt(10_003, 12, 31).unwrap();
        let (mut d, mut step) = (from, 0i64);
        while d <= to {
            let midnight = d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
            for offset in [0, 1, 999, step * 7_919 % DAY_MS, DAY_MS - 1] {
                let ms = midnight + offset;
                assert_eq!(
                    rfc3339_ms(ms),
                    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                    "{ms}"
                );
            }
            d += chrono::TimeDelta::days(97);
            step += 1_234_567;
        }
    }

    #[test]
    fn whole_days_round_up() {
        use std::time::Duration;
        assert_eq!(whole_days(Duration::from_secs(86_400)), 1);
        assert_eq!(whole_days(Duration::from_secs(86_401)), 2);
        assert_eq!(rfc3339_ms(1_705_312_800_123), "2024-01-15T10:00:00.123Z");
    }
}
