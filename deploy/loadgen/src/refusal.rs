//! Refusals: an order the fleet declined to take, counted apart from errors.
//! - `503` (admission control: `overloaded`) is *shed*; `429` (`rate_limited`) is
//!   *rate-limited*. Both promise that nothing was written, and both should say when to come
//!   back (`Retry-After`).
//! - A refusal is *well formed* when it carries a readable `Retry-After` and the error code of
//!   its status; the overload phase requires every refusal to be.
//! - In the closed loop the client waits [`pause`] before its next order; the open loop does
//!   not retry (the offered load is the load offered).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest a closed-loop client waits on one `Retry-After`: a fleet that asks for minutes
/// would otherwise stall the run past its duration.
pub const MAX_PAUSE: Duration = Duration::from_secs(10);
/// The wait when a refusal names none (or an unreadable one).
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 503: the orchestrator is full (admission control).
    Shed,
    /// 429: over the caller's rate limit.
    RateLimited,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Refusal {
    pub kind: Kind,
    /// `Retry-After` in seconds; `None` when missing or unreadable.
    pub retry_after_s: Option<f64>,
    /// The JSON body's `error` code.
    pub code: Option<String>,
}

impl Refusal {
    /// A refusal of `status`, or `None` for any other status.
    pub fn of(
        status: u16,
        retry_after: Option<&str>,
        body: &str,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        let kind = match status {
            503 => Kind::Shed,
            429 => Kind::RateLimited,
            _ => return None,
        };
        let code = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string));
        Some(Self {
            kind,
            retry_after_s: retry_after
                .and_then(|v| retry_after_secs(v, now))
                .map(|d| d.as_secs_f64()),
            code,
        })
    }

    /// What the contract promises: a `Retry-After` and the code of the status.
    pub fn well_formed(&self) -> bool {
        let expected = match self.kind {
            Kind::Shed => "overloaded",
            Kind::RateLimited => "rate_limited",
        };
        self.retry_after_s.is_some() && self.code.as_deref() == Some(expected)
    }

    /// How long a closed-loop client waits before its next order.
    pub fn pause(&self) -> Duration {
        self.retry_after_s
            .map_or(DEFAULT_PAUSE, Duration::from_secs_f64)
            .min(MAX_PAUSE)
    }
}

/// `Retry-After` (RFC 9110): delay-seconds, or an HTTP date (a date in the past is 0).
pub fn retry_after_secs(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is a form of RFC 2822's date.
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let ahead = at.with_timezone(&Utc) - now;
    Some(ahead.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after_secs("2", now()), Some(Duration::from_secs(2)));
        assert_eq!(retry_after_secs(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(
            retry_after_secs("Mon, 07 Dec 2026 12:00:05 GMT", now()),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after_secs("Mon, 07 Dec 2026 11:59:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after_secs("-1", now()), None);
        assert_eq!(retry_after_secs("soon", now()), None);
        assert_eq!(retry_after_secs("1.5", now()), None);
    }

    #[test]
    fn a_503_and_a_429_are_refusals_and_other_statuses_are_not() {
        let body = r#"{"error":"overloaded","message":"full","details":[]}"#;
        let shed = Refusal::of(503, Some("1"), body, now()).unwrap();
        assert_eq!(shed.kind, Kind::Shed);
        assert!(shed.well_formed());
        let limited = Refusal::of(429, Some("3"), r#"{"error":"rate_limited"}"#, now()).unwrap();
        assert_eq!(limited.kind, Kind::RateLimited);
        assert!(limited.well_formed());
        assert_eq!(limited.pause(), Duration::from_secs(3));
        assert!(Refusal::of(500, Some("1"), body, now()).is_none());
        assert!(Refusal::of(422, None, body, now()).is_none());
    }

    #[test]
    fn a_refusal_without_retry_after_or_with_the_wrong_code_is_not_well_formed() {
        let body = r#"{"error":"overloaded"}"#;
        let bare = Refusal::of(503, None, body, now()).unwrap();
        assert!(!bare.well_formed());
        assert_eq!(bare.pause(), DEFAULT_PAUSE);
        assert!(
            !Refusal::of(503, Some("1"), "upstream down", now())
                .unwrap()
                .well_formed()
        );
        assert!(
            !Refusal::of(429, Some("1"), body, now())
                .unwrap()
                .well_formed()
        );
    }

    #[test]
    fn the_closed_loop_pause_is_bounded() {
        let r = Refusal::of(503, Some("3600"), r#"{"error":"overloaded"}"#, now()).unwrap();
        assert_eq!(r.pause(), MAX_PAUSE);
    }
}
