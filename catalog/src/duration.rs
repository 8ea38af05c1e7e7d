//! Go `time.Duration` syntax: parsing (`time.ParseDuration`) and formatting (`Duration.String`).
//!
//! Consul's API speaks Go durations everywhere (`wait=120000ms`, `"Interval": "10s"`,
//! `"DeregisterCriticalServiceAfter": "1m30s"`), so Cairn parses and prints them exactly as Go does.
//!
//! A Go `Duration` is a signed 64-bit count of nanoseconds, so values above `i64::MAX`
//! nanoseconds (about 292 years) are refused here as Go refuses them, even though a Rust
//! `Duration` could hold them: what Cairn accepts, a Go client or server can read back.

use std::time::Duration;

/// Why a duration string was refused. The message is Go's own (`time: invalid duration "x"`),
/// so an error answer reads as Consul's would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time: invalid duration {0:?}")]
pub struct DurationError(pub String);

/// Parses a Go duration such as `"300ms"`, `"1h15m"`, `"1.5s"` or `"0"`.
///
/// Negative durations are refused: nothing in the API takes one.
///
/// Like Go, every number needs a unit (`"10"` is an error), except the bare `"0"`; several
/// number-unit pairs add up (`"1h15m"`), with no space between them. A fraction is rounded down
/// to the nanosecond.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(input.to_string());
    let mut s = input;
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    } else if let Some(rest) = s.strip_prefix('-') {
        // Go accepts "-0"; any other negative value has no meaning here.
        if !rest.is_empty() && rest.chars().all(|c| c == '0') {
            return Ok(Duration::ZERO);
        }
        return Err(err());
    }
    // The only number Go accepts without a unit.
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    // u128, so that no step below can overflow before the check against Go's i64 range.
    let mut total_ns: u128 = 0;
    while !s.is_empty() {
        // Number part: digits, optional fraction.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err());
            }
        } else if int_part.is_empty() {
            return Err(err());
        }
        // Unit part: everything up to the next digit or '.'.
        let unit_len = s
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(s.len(), |(i, _)| i);
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let unit_ns: u128 = match unit {
            "ns" => 1,
            // Go accepts the micro sign (U+00B5) and the Greek mu (U+03BC) alike.
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => return Err(err()),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        let mut value = whole.checked_mul(unit_ns).ok_or_else(err)?;
        if !frac_part.is_empty() {
            // Keep at most 18 fractional digits: more cannot change a nanosecond count, and 18
            // keep `frac * unit_ns` well inside u128 even for hours.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().map_err(|_| err())?;
            let scale = 10u128.pow(digits.len() as u32);
            value = value.checked_add(frac * unit_ns / scale).ok_or_else(err)?;
        }
        total_ns = total_ns.checked_add(value).ok_or_else(err)?;
        // Go's overflow: the sum no longer fits its signed 64-bit nanoseconds.
        if total_ns > i64::MAX as u128 {
            return Err(err());
        }
    }
    Ok(Duration::from_nanos(total_ns as u64))
}

/// Formats a duration as Go's `Duration.String` does: `"0s"`, `"1.5s"`, `"1h30m0s"`, `"250ms"`.
///
/// The output is what Consul's answers show (check intervals, timeouts), so it follows Go's
/// quirks exactly: units below a second stand alone (`"1.5ms"`), and from a minute up every
/// smaller unit is written even when zero (`"1h0m0s"`).
pub fn format_go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000_000_000 {
        // Sub-second: the largest unit that keeps the value >= 1.
        let (unit, scale) = if ns < 1_000 {
            ("ns", 1u128)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{}", fmt_frac(ns, scale), unit);
    }
    // From a second up: whole hours and minutes, and seconds with their fraction.
    let mut out = String::new();
    let hours = ns / 3_600_000_000_000;
    let rem = ns % 3_600_000_000_000;
    let minutes = rem / 60_000_000_000;
    let secs_ns = rem % 60_000_000_000;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&fmt_frac(secs_ns, 1_000_000_000));
    out.push('s');
    out
}

/// `value / scale` printed with the fraction's trailing zeros removed (`scale` is a power of
/// ten: its number of zeros is the fraction's width before trimming).
fn fmt_frac(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Serde helpers for durations carried as Go duration strings (numbers are read as nanoseconds,
/// as Consul's Go client accepts).
pub mod serde_go {
    use super::{format_go_duration, parse_go_duration};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    /// Serializes as a Go duration string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go_duration(*d))
    }

    /// Deserializes from a Go duration string or a number of nanoseconds. An empty string is
    /// zero (an unset duration), which [`parse_go_duration`] alone would refuse.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Str(String),
            Num(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Duration::from_nanos(n)),
            Raw::Str(s) if s.is_empty() => Ok(Duration::ZERO),
            Raw::Str(s) => parse_go_duration(&s).map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forms Consul's clients send, and forms Go's `time.ParseDuration` refuses (no unit, a
    /// negative value, an overflow, a space between parts).
    #[test]
    fn parses_go_forms() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("120000ms"), Ok(ms(120_000)));
        assert_eq!(parse_go_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_go_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_go_duration("1.5h"), Ok(ms(5_400_000)));
        // A fraction without its integer part, as Go allows.
        assert_eq!(parse_go_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("1us"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_go_duration("1µs"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_go_duration("+5ns"), Ok(Duration::from_nanos(5)));
        for bad in [
            "",
            // A number without a unit is only allowed for zero.
            "10",
            "s",
            "1x",
            // Negative, a dot with no digit on either side, beyond Go's int64 nanoseconds,
            // and a space between parts.
            "-1s",
            "1.s.",
            ".s",
            "9999999999999h",
            "1h 2m",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    /// Expected strings are Go's `Duration.String` output for the same values.
    #[test]
    fn formats_like_go() {
        let ms = Duration::from_millis;
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(ms(10_000)), "10s");
        assert_eq!(format_go_duration(ms(90 * 60_000)), "1h30m0s");
        // Go writes the zero seconds from a minute up.
        assert_eq!(format_go_duration(ms(60_000)), "1m0s");
        assert_eq!(format_go_duration(ms(1_500)), "1.5s");
        assert_eq!(format_go_duration(ms(250)), "250ms");
        // Below a second, the largest unit that keeps a whole part.
        assert_eq!(format_go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_go_duration(Duration::from_nanos(10)), "10ns");
    }

    /// Whatever Go prints, Cairn reads back to the same duration and prints the same way.
    #[test]
    fn round_trips() {
        for s in ["10s", "1m0s", "1h30m0s", "250ms", "1.5s", "0s", "72h0m0s"] {
            let d = parse_go_duration(s).expect("valid");
            assert_eq!(format_go_duration(d), s);
        }
    }
}
