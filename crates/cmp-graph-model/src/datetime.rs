//! `Edm.DateTimeOffset` on the wire (`docs/wire-contract.md`, "Dates").
//!
//! Input: RFC 3339 with a mandatory offset (`Z` or `±hh:mm`) and any number of fractional
//! digits; digits past the seventh (100 ns) are dropped. Output: always UTC with exactly seven
//! fractional digits and `Z`, as Intune renders it. Written by hand rather than with a date
//! crate because both ends need Graph's exact shape (seven digits, year 0001 as the "never"
//! value), and the arithmetic is a few lines.

use cmp_domain::Timestamp;

/// Why a date-time string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateTimeError {
    /// Not of the form `YYYY-MM-DDTHH:MM:SS[.fffffff](Z|±hh:mm)`.
    #[error("'{0}' is not a date-time with offset, such as 2016-12-31T23:59:37.9174975-08:00")]
    Malformed(String),
    /// Well-formed, but no such date or time (month 13, 30 February, hour 24, ...).
    #[error("'{0}' is not a valid date and time")]
    Impossible(String),
    /// Outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.9999999Z once converted to UTC.
    #[error("'{0}' is outside the years 0001 to 9999 in UTC")]
    OutOfRange(String),
}

/// Parses a DateTimeOffset string into a UTC instant.
///
/// # Errors
/// [`DateTimeError`] for a malformed, impossible or out-of-range value, or one without offset.
pub fn parse(text: &str) -> Result<Timestamp, DateTimeError> {
    let malformed = || DateTimeError::Malformed(text.to_owned());
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return Err(malformed());
    }
    let digits = |range: std::ops::Range<usize>| -> Result<i64, DateTimeError> {
        let part = bytes.get(range).ok_or_else(malformed)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(malformed());
        }
        Ok(part.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let expect = |index: usize, allowed: &[u8]| -> Result<(), DateTimeError> {
        match bytes.get(index) {
            Some(b) if allowed.contains(b) => Ok(()),
            _ => Err(malformed()),
        }
    };
    let year = digits(0..4)?;
    expect(4, b"-")?;
    let month = digits(5..7)?;
    expect(7, b"-")?;
    let day = digits(8..10)?;
    expect(10, b"Tt")?;
    let hour = digits(11..13)?;
    expect(13, b":")?;
    let minute = digits(14..16)?;
    expect(16, b":")?;
    let second = digits(17..19)?;

    let mut index = 19;
    let mut subsecond_ticks: u32 = 0;
    if bytes.get(index) == Some(&b'.') {
        let start = index + 1;
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        // More digits than any clock has are a sign of garbage, not of precision.
        if end == start || end - start > 30 {
            return Err(malformed());
        }
        for position in 0..7 {
            let digit = bytes
                .get(start + position)
                .filter(|_| start + position < end)
                .map_or(0, |d| d - b'0');
            subsecond_ticks = subsecond_ticks * 10 + u32::from(digit);
        }
        index = end;
    }

    let offset_seconds = match bytes.get(index) {
        Some(b'Z' | b'z') if index + 1 == bytes.len() => 0,
        Some(sign @ (b'+' | b'-')) if index + 6 == bytes.len() => {
            let hours = digits(index + 1..index + 3)?;
            expect(index + 3, b":")?;
            let minutes = digits(index + 4..index + 6)?;
            if hours > 23 || minutes > 59 {
                return Err(DateTimeError::Impossible(text.to_owned()));
            }
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return Err(malformed()),
    };

    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
        || year < 1
    {
        return Err(DateTimeError::Impossible(text.to_owned()));
    }
    let local_seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Timestamp::from_unix_seconds(local_seconds - offset_seconds, subsecond_ticks)
        .map_err(|_| DateTimeError::OutOfRange(text.to_owned()))
}

/// Renders an instant as Graph does: `YYYY-MM-DDTHH:MM:SS.fffffffZ`.
pub fn format(instant: Timestamp) -> String {
    let seconds = instant.unix_seconds();
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:07}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        instant.subsecond_ticks()
    )
}

/// Renders an instant in the style of Graph's `innerError.date`: `YYYY-MM-DDTHH:MM:SS`, UTC,
/// no fraction and no offset (`docs/wire-contract.md`, "Errors").
pub fn format_error_date(instant: Timestamp) -> String {
    let mut text = format(instant);
    text.truncate("YYYY-MM-DDTHH:MM:SS".len());
    text
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(input: &str) -> String {
        format(parse(input).unwrap_or_else(|e| panic!("{input:?} must parse: {e}")))
    }

    #[test]
    fn accepts_every_form_clients_send_and_renders_graphs_form() {
        let cases = [
            (
                "seed: 7 digits and -08:00",
                "2016-12-31T23:59:37.9174975-08:00",
                "2017-01-01T07:59:37.9174975Z",
            ),
            (
                "SDK: 6 digits and +00:00",
                "2024-05-06T07:08:09.123456+00:00",
                "2024-05-06T07:08:09.1234560Z",
            ),
            (
                "SDK: no fraction",
                "2024-01-01T00:00:00+00:00",
                "2024-01-01T00:00:00.0000000Z",
            ),
            (
                "Graph: 7 digits and Z",
                "2020-07-07T15:08:20.0938467Z",
                "2020-07-07T15:08:20.0938467Z",
            ),
            (
                "never",
                "0001-01-01T00:00:00Z",
                "0001-01-01T00:00:00.0000000Z",
            ),
            (
                "lower-case t and z",
                "2024-02-29t12:00:00z",
                "2024-02-29T12:00:00.0000000Z",
            ),
            (
                "more than 7 digits are truncated",
                "2024-01-01T00:00:00.123456789Z",
                "2024-01-01T00:00:00.1234567Z",
            ),
            (
                "one digit",
                "2024-01-01T00:00:00.5Z",
                "2024-01-01T00:00:00.5000000Z",
            ),
            (
                "positive offset",
                "2024-01-01T01:30:00+05:30",
                "2023-12-31T20:00:00.0000000Z",
            ),
            (
                "last instant",
                "9999-12-31T23:59:59.9999999Z",
                "9999-12-31T23:59:59.9999999Z",
            ),
            (
                "before the epoch",
                "1969-12-31T23:59:59.9999999Z",
                "1969-12-31T23:59:59.9999999Z",
            ),
            (
                "leap day 2000",
                "2000-02-29T00:00:00Z",
                "2000-02-29T00:00:00.0000000Z",
            ),
        ];
        for (case, input, expected) in cases {
            assert_eq!(round_trip(input), expected, "case: {case}");
        }
    }

    #[test]
    fn refuses_values_without_offset_or_that_cannot_exist() {
        let cases = [
            ("no offset", "2016-12-31T23:59:37.9174975", "Malformed"),
            ("date only", "2016-12-31", "Malformed"),
            ("space separator", "2016-12-31 23:59:37Z", "Malformed"),
            ("empty fraction", "2016-12-31T23:59:37.Z", "Malformed"),
            (
                "offset without colon",
                "2016-12-31T23:59:37+0800",
                "Malformed",
            ),
            ("trailing text", "2016-12-31T23:59:37Zjunk", "Malformed"),
            ("two-digit year", "16-12-31T23:59:37Z", "Malformed"),
            ("signed year", "+2016-12-31T23:59:37Z", "Malformed"),
            ("month 13", "2016-13-01T00:00:00Z", "Impossible"),
            ("30 February", "2016-02-30T00:00:00Z", "Impossible"),
            (
                "29 February of a common year",
                "2023-02-29T00:00:00Z",
                "Impossible",
            ),
            (
                "1900 is not a leap year",
                "1900-02-29T00:00:00Z",
                "Impossible",
            ),
            ("hour 24", "2016-12-31T24:00:00Z", "Impossible"),
            ("leap second", "2016-12-31T23:59:60Z", "Impossible"),
            ("offset hour 24", "2016-12-31T23:59:00+24:00", "Impossible"),
            ("year zero", "0000-12-31T23:59:59Z", "Impossible"),
            (
                "before year 1 in UTC",
                "0001-01-01T00:00:00+01:00",
                "OutOfRange",
            ),
            (
                "after year 9999 in UTC",
                "9999-12-31T23:59:59-01:00",
                "OutOfRange",
            ),
        ];
        for (case, input, kind) in cases {
            let error = parse(input).expect_err(case);
            let actual = match error {
                DateTimeError::Malformed(_) => "Malformed",
                DateTimeError::Impossible(_) => "Impossible",
                DateTimeError::OutOfRange(_) => "OutOfRange",
            };
            assert_eq!(actual, kind, "case: {case}");
        }
    }

    #[test]
    fn error_dates_have_no_fraction_and_no_offset() {
        let instant = parse("2020-09-11T11:21:34.9999999Z").expect("valid");
        assert_eq!(format_error_date(instant), "2020-09-11T11:21:34");
    }

    #[test]
    fn day_arithmetic_agrees_both_ways_over_the_whole_range() {
        // Every 997th day from year 1 to year 9999, plus the ends.
        let first = days_from_civil(1, 1, 1);
        let last = days_from_civil(9999, 12, 31);
        for days in (first..=last).step_by(997).chain([first, last, 0, -1]) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "day {days} = {y}-{m}-{d}");
        }
    }
}
