//! The delivery rules, as pure functions: which URLs a webhook may have, which addresses are
//! private, what an attempt's answer leads to, and how long to wait before the next one.
//!
//! Retries: network errors, timeouts, 408, 429 and 5xx are retried, up to
//! `store::DELIVERY_ATTEMPTS` attempts, after 1 s, 2 s, 4 s, ... (doubling, at most 5
//! minutes), each wait drawn at random between half and all of that ("equal jitter", so
//! receivers coming back from an outage are not hit by every coordinator at once). Any other answer is final: 2xx
//! delivered; 3xx (redirects are not followed: the target was checked, its redirect is not)
//! and other 4xx failed.

use crate::store::AfterAttempt;
use axum::http::Uri;
use std::net::IpAddr;

/// The first retry's wait; each later one doubles.
pub const FIRST_RETRY_MS: i64 = 1_000;
/// The longest wait between two attempts.
pub const MAX_RETRY_MS: i64 = 300_000;

/// Checks a webhook URL: http or https, a host, no credentials in it, and (unless
/// `allow_private`) no literal loopback, private or link-local address, which would let a
/// webhook reach the coordinator itself or the cloud's metadata service (server-side request
/// forgery). Host names are checked again when they are resolved, at each attempt.
pub fn check_url(url: &str, allow_private: bool) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("webhook URL {url:?} is not an http:// or https:// URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(format!(
                "webhook URL {url:?}: only http:// and https:// URLs are sent to"
            ))
        }
    }
    let Some(auth) = uri.authority() else {
        return Err(format!("webhook URL {url:?} has no host"));
    };
    if auth.as_str().contains('@') {
        return Err(format!(
            "webhook URL {}: credentials in the URL are not accepted (receivers check the X-Tofuflow-Signature header instead)",
            super::redacted_url(url)
        ));
    }
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    if url.len() > 2048 {
        return Err("a webhook URL is at most 2048 characters".into());
    }
    if !allow_private {
        let private = match host.parse::<IpAddr>() {
            Ok(ip) => is_private(ip),
            Err(_) => host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost"),
        };
        if private {
            return Err(format!(
                "webhook URL {url:?} points at a loopback, private or link-local address (the coordinator's own network): give --allow-private if that is meant"
            ));
        }
    }
    Ok(uri)
}

/// Whether `url` points at the same host and port as `own` (this coordinator's public HTTP
/// URL): a webhook is for another service, never the coordinator's own API.
pub fn is_own(url: &str, own: &str) -> bool {
    let key = |u: &str| -> Option<(String, u16)> {
        let uri: Uri = u.parse().ok()?;
        let default = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let host = uri.host()?.trim_end_matches('.').to_ascii_lowercase();
        Some((host, uri.port_u16().unwrap_or(default)))
    };
    matches!((key(url), key(own)), (Some(a), Some(b)) if a == b)
}

/// Whether `ip` is loopback, private (RFC 1918, unique local), link-local (the cloud metadata
/// service's 169.254.169.254), carrier-grade NAT, unspecified, or an IPv4 address mapped into
/// IPv6 that is one of those.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Whether an answer (`None`: no answer, the request failed) is worth another attempt.
pub fn retryable(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => s == 408 || s == 429 || (500..600).contains(&s),
    }
}

/// What attempt number `attempt` (from 1) answered with `status` leads to, for a delivery
/// that gives up after attempt `give_up_after`; `jitter` in [0, 1) draws the wait.
pub fn after_attempt(
    status: Option<u16>,
    attempt: i64,
    give_up_after: i64,
    now_ms: i64,
    jitter: f64,
) -> AfterAttempt {
    match status {
        Some(s) if (200..300).contains(&s) => AfterAttempt::Delivered,
        _ if retryable(status) && attempt < give_up_after => {
            AfterAttempt::RetryAt(now_ms + backoff_ms(attempt, jitter))
        }
        _ => AfterAttempt::Failed,
    }
}

/// The wait after attempt `attempt` (from 1): half of the doubled delay plus a random part of
/// the other half.
pub fn backoff_ms(attempt: i64, jitter: f64) -> i64 {
    let exp = (attempt - 1).clamp(0, 20) as u32;
    let full = FIRST_RETRY_MS.saturating_mul(1i64 << exp).min(MAX_RETRY_MS);
    let half = full / 2;
    half + (half as f64 * jitter.clamp(0.0, 1.0)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_to_public_hosts_are_accepted_unless_private_is_allowed() {
        assert!(check_url("https://hooks.slack.com/services/T/B/X", false).is_ok());
        assert!(check_url("http://example.com:8080/hook?x=1", false).is_ok());
        for bad in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "example.com/x",
            "gopher://a",
        ] {
            let e = check_url(bad, false).unwrap_err();
            assert!(e.contains("http"), "{bad}: {e}");
        }
        let e = check_url("https://user:pw@example.com/x", false).unwrap_err();
        assert!(e.contains("credentials") && !e.contains("pw"), "{e}");
        for private in [
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://LocalHost./",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9/",
            "http://[::ffff:192.168.1.1]/",
            "http://100.64.0.1/",
        ] {
            let e = check_url(private, false).unwrap_err();
            assert!(e.contains("--allow-private"), "{private}: {e}");
            assert!(check_url(private, true).is_ok(), "{private}");
        }
    }

    #[test]
    fn a_url_of_the_coordinator_itself_is_recognised() {
        let own = "https://tofuflow.example.com";
        assert!(is_own("https://TofuFlow.example.com./api/v1/runs", own));
        assert!(is_own("https://tofuflow.example.com:443/x", own));
        assert!(!is_own("http://tofuflow.example.com/x", own), "port 80");
        assert!(!is_own("https://hooks.example.com/x", own));
        assert!(is_own("http://127.0.0.1:7701/x", "http://127.0.0.1:7701"));
    }

    #[test]
    fn errors_and_server_errors_are_retried_until_the_last_attempt() {
        use AfterAttempt::*;
        assert_eq!(after_attempt(Some(204), 1, 6, 0, 0.5), Delivered);
        assert_eq!(after_attempt(Some(500), 1, 6, 0, 0.0), RetryAt(500));
        assert_eq!(after_attempt(None, 2, 6, 0, 0.999), RetryAt(1_999));
        assert_eq!(after_attempt(Some(429), 3, 6, 10, 0.0), RetryAt(2_010));
        assert_eq!(after_attempt(Some(503), 6, 6, 0, 0.0), Failed);
        assert_eq!(after_attempt(Some(404), 1, 6, 0, 0.0), Failed);
        assert_eq!(after_attempt(Some(301), 1, 6, 0, 0.0), Failed);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(backoff_ms(1, 0.0), 500);
        assert_eq!(backoff_ms(1, 1.0), 1_000);
        assert_eq!(backoff_ms(4, 0.0), 4_000);
        assert_eq!(backoff_ms(30, 1.0), MAX_RETRY_MS);
        for a in 1..12 {
            assert!(backoff_ms(a + 1, 0.0) >= backoff_ms(a, 0.0));
        }
    }
}
