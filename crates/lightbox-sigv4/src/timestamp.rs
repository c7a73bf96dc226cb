//! Parsing and formatting of SigV4 timestamps (ISO 8601 basic format and HTTP dates).

use std::time::{SystemTime, UNIX_EPOCH};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Parses `YYYYMMDDTHHMMSSZ` into Unix seconds.
pub(crate) fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter()
            .try_fold(0u32, |acc, d| Some(acc * 10 + u32::from(d - b'0')))
    };
    let year = num(0..4)?;
    let month = num(4..6)?;
    let day = num(6..8)?;
    let hour = num(9..11)?;
    let minute = num(11..13)?;
    let second = num(13..15)?;
    to_unix(year, month, day, hour, minute, second)
}

/// Parses an RFC 7231 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the `Date` header
/// format. The zone may also be written `UTC`, `+0000` or `-0000`: botocore's
/// `formatdate()` sends `-0000`.
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    let [_weekday, day, month, year, clock, zone] = parts.as_slice() else {
        return None;
    };
    if !matches!(*zone, "GMT" | "UTC" | "+0000" | "-0000") {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let digits = |s: &str| -> Option<u32> {
        if s.is_empty() || s.len() > 4 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let mut hms = clock.split(':');
    let (h, m, sec) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() {
        return None;
    }
    to_unix(
        digits(year)?,
        month,
        digits(day)?,
        digits(h)?,
        digits(m)?,
        digits(sec)?,
    )
}

fn to_unix(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<i64> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    let time = Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Formats Unix seconds as `YYYYMMDDTHHMMSSZ`; out-of-range values fall back to the number.
pub(crate) fn format_amz_date(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) if (0..=9999).contains(&t.year()) => format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        _ => unix.to_string(),
    }
}

/// Whole Unix seconds of `now` (negative before 1970).
pub(crate) fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            // Round towards negative infinity so sub-second offsets stay in the right second.
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                secs.saturating_neg().saturating_sub(1)
            } else {
                secs.saturating_neg()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_basic_format() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(t, 1_440_938_160);
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert_eq!(
            parse_amz_date("20240229T000000Z")
                .map(format_amz_date)
                .as_deref(),
            Some("20240229T000000Z")
        );
    }

    #[test]
    fn rejects_malformed_basic_format() {
        for bad in [
            "",
            "20150830T123600",
            "20150830t123600Z",
            "2015-08-30T12:36:00Z",
            "20150230T123600Z",
            "20151330T123600Z",
            "20150830T246000Z",
            "2015083ÖT12360Z",
            "+0150830T123600Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(
            parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT"),
            Some(1_440_938_160)
        );
        assert_eq!(
            parse_http_date("Sun, 30 Aug 2015 12:36:00 -0000"),
            Some(1_440_938_160)
        );
        assert_eq!(parse_http_date("Sun, 30 Aug 2015 12:36:00 +0100"), None);
        assert_eq!(parse_http_date("Sun, 30 Foo 2015 12:36:00 GMT"), None);
        assert_eq!(parse_http_date("Sun, 30 Aug 2015 12:36 GMT"), None);
    }

    #[test]
    fn unix_seconds_before_epoch_rounds_down() {
        let t = UNIX_EPOCH - std::time::Duration::from_millis(1500);
        assert_eq!(unix_seconds(t), -2);
        assert_eq!(
            unix_seconds(UNIX_EPOCH + std::time::Duration::from_millis(1500)),
            1
        );
    }
}
