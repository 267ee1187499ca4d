//! How long to wait before resending: Graph's `Retry-After` when it gave a usable one,
//! otherwise an exponential back-off with jitter.
//!
//! Graph really sends fractional seconds (`Retry-After: 2.128`), which the HTTP grammar does not
//! allow but which the Microsoft SDKs honour, so the parser accepts them too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cmp_domain::Timestamp;

/// No wait is ever longer than this, whatever the header says: a value beyond it is more
/// likely a bug on Graph's side than an instruction, and the outbox retries later anyway.
pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// The first back-off step; later ones double (3, 6, 12 s): the SDKs' default.
const BACKOFF_BASE: Duration = Duration::from_secs(3);

/// Random extra wait added to every back-off step, so clients that failed together do not all
/// come back in the same millisecond.
const BACKOFF_JITTER_MS: u64 = 1000;

/// The wait Graph asked for in a `Retry-After` value, measured from `now` for an HTTP-date.
///
/// `None` when the header is unusable: unparsable, zero, or a date that is not in the future.
/// The caller then backs off on its own ([`backoff`]), as the Microsoft SDKs do. A usable
/// value is rounded up to the next millisecond (never come back early) and clamped to
/// [`RETRY_AFTER_CAP`].
pub(crate) fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    let wait = match parse_decimal_seconds(value) {
        Some(wait) => wait,
        None => {
            let date = httpdate::parse_http_date(value).ok()?;
            system_time_to_timestamp(date)?.saturating_duration_since(now)
        }
    };
    if wait.is_zero() {
        // "Retry at once" after a throttle is how clients get throttled harder; the back-off
        // is the gentler reading.
        return None;
    }
    Some(wait.min(RETRY_AFTER_CAP))
}

/// The wait before in-call retry `n` (1-based) when Graph gave no usable `Retry-After`:
/// `3 s × 2^(n−1)` plus 0 to 1000 ms of jitter, clamped to [`RETRY_AFTER_CAP`].
pub(crate) fn backoff(retry: u32) -> Duration {
    // 2^11 × 3 s already exceeds the cap, so a larger exponent changes nothing.
    let exponent = retry.saturating_sub(1).min(11);
    let step = BACKOFF_BASE.saturating_mul(1 << exponent);
    let jitter = Duration::from_millis(fastrand::u64(0..=BACKOFF_JITTER_MS));
    step.saturating_add(jitter).min(RETRY_AFTER_CAP)
}

/// Decimal seconds, with an optional fraction: `2`, `2.128`, `0.5`. Parsed as text, not as a
/// float, so `2.128` is exactly 2128 ms (as an `f64` it would round up to 2129).
fn parse_decimal_seconds(value: &str) -> Option<Duration> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    // Anything longer than 10 digits is far beyond the cap; saturate instead of overflowing.
    let seconds = if whole.len() > 10 {
        u64::MAX
    } else {
        whole.parse::<u64>().unwrap_or(0)
    };
    let mut millis = 0u64;
    for (position, digit) in fraction.bytes().enumerate() {
        let digit = u64::from(digit - b'0');
        match position {
            0 => millis += digit * 100,
            1 => millis += digit * 10,
            2 => millis += digit,
            // Any non-zero digit past the millisecond rounds up: never come back early.
            _ if digit > 0 => {
                millis += 1;
                break;
            }
            _ => {}
        }
    }
    Some(Duration::from_secs(seconds).saturating_add(Duration::from_millis(millis)))
}

fn system_time_to_timestamp(time: SystemTime) -> Option<Timestamp> {
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    let seconds = i64::try_from(since_epoch.as_secs()).ok()?;
    Timestamp::from_unix_seconds(seconds, since_epoch.subsec_nanos() / 100).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        // 2026-01-01T00:00:00Z
        Timestamp::from_unix_seconds(1_767_225_600, 0).expect("in range")
    }

    #[test]
    fn decimal_seconds_are_rounded_up_to_the_next_millisecond() {
        let cases = [
            ("2", Some(2_000)),
            ("2.128", Some(2_128)),
            (" 2.128 ", Some(2_128)),
            ("2.1281", Some(2_129)),
            ("2.1280000", Some(2_128)),
            ("0.0001", Some(1)),
            ("0.5", Some(500)),
            (".5", Some(500)),
            ("5.", Some(5_000)),
            ("300", Some(300_000)),
            ("0", None),
            ("0.000", None),
            ("99999999999999999999", Some(3_600_000)),
            ("7200", Some(3_600_000)),
            ("-1", None),
            ("1e3", None),
            ("", None),
            (".", None),
            ("soon", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_retry_after(value, now()),
                expected.map(Duration::from_millis),
                "Retry-After: {value:?}"
            );
        }
    }

    #[test]
    fn an_http_date_counts_from_the_injected_clock() {
        let in_seven_seconds = UNIX_EPOCH + Duration::from_secs(1_767_225_607);
        let past = UNIX_EPOCH + Duration::from_secs(1_767_225_000);
        let far = UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 86_400);

        let cases = [
            (httpdate::fmt_http_date(in_seven_seconds), Some(7_000)),
            (httpdate::fmt_http_date(past), None),
            (
                httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_767_225_600)),
                None,
            ),
            (httpdate::fmt_http_date(far), Some(3_600_000)),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_retry_after(&value, now()),
                expected.map(Duration::from_millis),
                "Retry-After: {value}"
            );
        }
    }

    #[test]
    fn backoff_doubles_from_three_seconds_with_up_to_a_second_of_jitter() {
        for (retry, base_ms) in [(1, 3_000), (2, 6_000), (3, 12_000)] {
            for _ in 0..50 {
                let wait = backoff(retry).as_millis();
                assert!(
                    (base_ms..=base_ms + 1_000).contains(&wait),
                    "retry {retry}: {wait} ms"
                );
            }
        }
        assert_eq!(backoff(40), RETRY_AFTER_CAP);
    }
}
