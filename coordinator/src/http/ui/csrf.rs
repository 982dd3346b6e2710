//! Cross-site request refusal for what a browser sends with the session cookie, after Go's
//! `CrossOriginProtection` (no token state): the browser says where a request comes from in
//! `Sec-Fetch-Site`, or at least in `Origin`. Bearer-token calls never reach this check.

use axum::http::{header, HeaderMap, Method};

/// Whether a request may act on the session cookie it carries: `Err` says why not.
///
/// - `Sec-Fetch-Site` other than `same-origin` or `none` (a typed address) is refused for
///   every method: a page elsewhere gets nothing from the API with the user's cookie;
/// - a state-changing method (anything but GET, HEAD, OPTIONS) without `Sec-Fetch-Site`
///   needs an `Origin` whose host and port are the `Host` it was sent to;
/// - neither header: not a browser (the cookie was copied by hand), allowed as Go allows it.
pub fn check(method: &Method, headers: &HeaderMap) -> Result<(), String> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(site) = text("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            other => Err(format!(
                "a {other} request may not use this site's session (Sec-Fetch-Site: {other})"
            )),
        };
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    match text(header::ORIGIN.as_str()) {
        None => Ok(()),
        Some(origin) => {
            let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
            match text(header::HOST.as_str()) {
                Some(host) if host.eq_ignore_ascii_case(authority) => Ok(()),
                _ => Err(format!(
                    "a request from {origin} may not use this site's session (cross-origin)"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn same_origin_posts_pass_and_foreign_ones_are_refused() {
        let host = ("host", "127.0.0.1:7701");
        assert!(check(&Method::POST, &h(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check(
            &Method::POST,
            &h(&[host, ("origin", "http://127.0.0.1:7701")])
        )
        .is_ok());
        assert!(check(&Method::POST, &h(&[host])).is_ok(), "not a browser");
        let evil = check(
            &Method::POST,
            &h(&[host, ("origin", "https://evil.example")]),
        );
        assert!(evil.unwrap_err().contains("evil.example"));
        assert!(check(&Method::POST, &h(&[host, ("origin", "null")])).is_err());
        assert!(check(&Method::POST, &h(&[("sec-fetch-site", "same-site")])).is_err());
    }

    #[test]
    fn cross_site_reads_are_refused_and_typed_addresses_pass() {
        assert!(check(&Method::GET, &h(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check(&Method::GET, &h(&[("sec-fetch-site", "none")])).is_ok());
        assert!(check(&Method::GET, &h(&[("origin", "https://evil.example")])).is_ok());
    }
}
