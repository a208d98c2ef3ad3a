//! Parsing of cell values (SPEC §2.1, §2.2), shared by every source.

use chrono::format::{Fixed, Item, Numeric, Pad, Parsed};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};

/// A timestamp: RFC 3339 (any offset), Salesforce's `2026-09-01T12:00:00.000+0000`,
/// or a bare date meaning 00:00 UTC. Always returned in UTC.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.len() == 10 {
        return parse_date(s).map(|d| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)));
    }
    if let Some(t) = salesforce_exact(s) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    salesforce_form(s)
}

/// `2026-09-01T12:00:00.000+0000` exactly, the form Salesforce writes every
/// stamp in, read by hand (a first sync reads two million). Anything else,
/// or anything out of range, is `None` and goes the general way; where this
/// answers, it answers as [`salesforce_form`] does.
fn salesforce_exact(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() != 28
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || !matches!(b[23], b'+' | b'-')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits(&b[r]);
    // Byte 10 is the ASCII `T`, so the first ten bytes are whole chars.
    let date = parse_date(&s[..10])?;
    let (second, milli) = (num(17..19)?, num(20..23)?);
    if second > 59 {
        // A leap second: chrono's own rules.
        return None;
    }
    let time = chrono::NaiveTime::from_hms_milli_opt(num(11..13)?, num(14..16)?, second, milli)?;
    let (hours, minutes) = (num(24..26)?, num(26..28)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let offset = i32::try_from(hours * 3600 + minutes * 60).ok()?;
    let offset = if b[23] == b'+' {
        FixedOffset::east_opt(offset)?
    } else {
        FixedOffset::west_opt(offset)?
    };
    offset
        .from_local_datetime(&date.and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// Salesforce's form: offset without a colon, optional fraction.
fn salesforce_form(s: &str) -> Option<DateTime<Utc>> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, s, SALESFORCE_TIMESTAMP.iter()).ok()?;
    parsed
        .to_datetime()
        .ok()
        .map(|t: DateTime<FixedOffset>| t.with_timezone(&Utc))
}

/// `%Y-%m-%dT%H:%M:%S%.f%z`, compiled once: a format string is parsed again
/// on every call, and a Salesforce sync reads a million stamps.
const SALESFORCE_TIMESTAMP: &[Item<'static>] = &[
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Day, Pad::Zero),
    Item::Literal("T"),
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Minute, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Second, Pad::Zero),
    Item::Fixed(Fixed::Nanosecond),
    Item::Fixed(Fixed::TimezoneOffset),
];

/// A `YYYY-MM-DD` date (exactly that form; read by hand, as this runs for
/// millions of cells and a format string would be parsed on every call).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.trim().as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits(&b[r]);
    let year = i32::try_from(num(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, num(5..7)?, num(8..10)?)
}

/// The number an all-digit run of bytes spells (`None` for any other byte).
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// `true/false`, `yes/no`, `1/0`, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    for (t, f) in [("true", "false"), ("yes", "no"), ("1", "0")] {
        if s.eq_ignore_ascii_case(t) {
            return Some(true);
        }
        if s.eq_ignore_ascii_case(f) {
            return Some(false);
        }
    }
    None
}

/// A decimal amount: `.` as decimal point, no thousands separators, finite.
pub fn parse_amount(s: &str) -> Option<f64> {
    let s = s.trim();
    let digits = s.strip_prefix('-').unwrap_or(s);
    let valid = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|&b| b == b'.').count() <= 1
        && digits.bytes().any(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// An ISO 4217-shaped currency code, upper-cased.
pub fn parse_currency(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic())).then(|| s.to_ascii_uppercase())
}

/// Formats a timestamp the way the report does: RFC 3339, seconds, `Z`.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The UTC calendar date of a timestamp.
pub fn date_of(t: &DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// Exchange rates into the base currency (config's `scorecard.fx`
/// implements it; values stays a leaf).
pub trait Rates {
    /// The rate that converts `currency` into the base currency, if known.
    fn rate(&self, currency: &str) -> Option<f64>;
}

/// An amount in `currency` (`None`: the base currency), converted with
/// `scorecard.fx`; a currency without a rate is refused, naming `field`.
pub fn money(value: f64, currency: Option<String>, rates: &impl Rates) -> crate::model::Money {
    // A currency without a rate keeps the record (SPEC §2.1): only the
    // converted amount is unknown, and the engine reports the missing rate.
    let base = match &currency {
        None => Some(value),
        Some(code) => rates.rate(code).map(|rate| value * rate),
    };
    crate::model::Money {
        value,
        base,
        currency,
    }
}

/// An amount for people: thousands grouped with commas, and cents when
/// `cents` is `Always` or the amount has any (`1234567.5` ->
/// `1,234,567.50`; `210000` -> `210,000` or `210,000.00`). Alerts, the
/// report and the review all format amounts through here.
pub fn format_amount(x: f64, cents: Cents) -> String {
    let total = (x * 100.0).round() as i64;
    let sign = if total < 0 { "-" } else { "" };
    let total = total.unsigned_abs();
    let whole = (total / 100).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match (total % 100, cents) {
        (0, Cents::WhenAny) => format!("{sign}{grouped}"),
        (c, _) => format!("{sign}{grouped}.{c:02}"),
    }
}

/// Whether [`format_amount`] shows cents always or only when there are any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cents {
    Always,
    WhenAny,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_group_thousands_and_show_cents_as_asked() {
        assert_eq!(format_amount(1234567.456, Cents::Always), "1,234,567.46");
        assert_eq!(format_amount(210000.0, Cents::Always), "210,000.00");
        assert_eq!(format_amount(210000.0, Cents::WhenAny), "210,000");
        assert_eq!(format_amount(1250.5, Cents::WhenAny), "1,250.50");
        assert_eq!(format_amount(-1000.0, Cents::Always), "-1,000.00");
        assert_eq!(format_amount(-0.004, Cents::WhenAny), "0");
        assert_eq!(format_amount(999.0, Cents::WhenAny), "999");
    }

    #[test]
    fn timestamps_in_every_accepted_form_land_in_utc() {
        let want = Utc.with_ymd_and_hms(2026, 9, 1, 12, 0, 0).unwrap();
        assert_eq!(parse_timestamp("2026-09-01T12:00:00Z"), Some(want));
        assert_eq!(parse_timestamp("2026-09-01T14:00:00+02:00"), Some(want));
        assert_eq!(parse_timestamp("2026-09-01T12:00:00.000+0000"), Some(want));
        assert_eq!(parse_timestamp("2026-09-01T07:00:00.000-0500"), Some(want));
        assert_eq!(
            parse_timestamp("2026-09-01"),
            Some(Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap())
        );
    }

    #[test]
    fn the_compiled_salesforce_form_reads_as_its_format_string() {
        for s in [
            "2026-09-01T12:00:00.000+0000",
            "2026-09-01T12:00:00+0000",
            "2026-09-01T12:00:00.123456789-0330",
            "2026-09-01T12:00:00.5+0100",
            "2026-9-1T12:00:00.000+0000",
            "2026-09-01T12:00:00.000",
            "2026-09-01T12:00:00.000+00:00",
            "2026-09-01T12:00:00.000Z",
            "2026-09-01T25:00:00.000+0000",
            "2026-02-30T12:00:00.000+0000",
            "2026-09-01 12:00:00.000+0000",
            "2026-09-01T12:00:00.000+0000 ",
            "2026-09-01T12:00:60.000+0000",
            "+2026-09-01T12:00:00.000+0000",
            "",
        ] {
            let want = DateTime::<FixedOffset>::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
                .ok()
                .map(|t| t.with_timezone(&Utc));
            assert_eq!(salesforce_form(s), want, "{s:?}");
        }
    }

    proptest::proptest! {
        /// The hand-read form answers as chrono's items do wherever it
        /// answers, and answers for every well-formed stamp.
        #[test]
        fn the_hand_read_salesforce_form_agrees_with_chrono(
            s in "[0-9]{4}-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9]\\.[0-9]{3}[+-][0-2][0-9][0-6][0-9]",
            noise in proptest::option::of((0usize..28, proptest::char::any())),
        ) {
            let well_formed = noise.is_none();
            let s = match noise {
                Some((at, c)) => {
                    let mut chars: Vec<char> = s.chars().collect();
                    chars[at] = c;
                    chars.into_iter().collect()
                }
                None => s,
            };
            let general = salesforce_form(&s);
            match salesforce_exact(&s) {
                Some(t) => proptest::prop_assert_eq!(Some(t), general, "{:?}", s),
                // Every well-formed stamp chrono reads is read by hand too,
                // but a leap second.
                None if well_formed => proptest::prop_assert!(
                    general.is_none() || &s[17..19] == "60",
                    "{:?} is well formed ({:?}) and was not read by hand", s, general
                ),
                None => {}
            }
            let t = s.trim();
            let before = if t.len() == 10 {
                parse_timestamp(t)
            } else {
                DateTime::parse_from_rfc3339(t)
                    .ok()
                    .map(|x| x.with_timezone(&Utc))
                    .or_else(|| salesforce_form(t))
            };
            proptest::prop_assert_eq!(parse_timestamp(&s), before, "{:?}", s);
        }
    }

    #[test]
    fn bad_timestamps_are_refused() {
        for s in [
            "31/02/2026",
            "2026-02-31",
            "2026-09-01 12:00",
            "",
            "yesterday",
            "2026-9-1",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
    }

    #[test]
    fn dates_are_exactly_year_month_day() {
        assert_eq!(
            parse_date("2024-02-29"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        assert_eq!(
            parse_date(" 2026-12-31 "),
            NaiveDate::from_ymd_opt(2026, 12, 31)
        );
        assert_eq!(parse_date("2026-00-10"), None);
        assert_eq!(parse_date("2026-12-32"), None);
    }

    #[test]
    fn booleans_accept_the_three_spellings_in_any_case() {
        for s in ["true", "TRUE", "Yes", "1"] {
            assert_eq!(parse_bool(s), Some(true), "{s}");
        }
        for s in ["false", "No", "0", "FALSE"] {
            assert_eq!(parse_bool(s), Some(false), "{s}");
        }
        assert_eq!(parse_bool("y"), None);
    }

    #[test]
    fn amounts_are_plain_decimals() {
        assert_eq!(parse_amount("1234.50"), Some(1234.5));
        assert_eq!(parse_amount("-10"), Some(-10.0));
        assert_eq!(parse_amount("1,234.50"), None);
        assert_eq!(parse_amount("1e5"), None);
        assert_eq!(parse_amount("12,5"), None);
        assert_eq!(parse_amount("."), None);
        assert_eq!(parse_amount("NaN"), None);
    }

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!(parse_currency("eur"), Some("EUR".into()));
        assert_eq!(parse_currency("EURO"), None);
        assert_eq!(parse_currency("€"), None);
    }
}
