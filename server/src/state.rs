//! What every handler can reach, and the authenticated caller extracted from a request.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{header, request::Parts, HeaderMap, Method},
};

use crate::{
    accounts::{self, Caller},
    config::{canonical_ip, Config, TrustedProxies},
    crypto::ServerKey,
    error::ApiError,
    mail::Mailer,
    ratelimit::RateLimiter,
    relay::Relay,
    store::Store,
};

/// Name of the HttpOnly cookie that carries a browser's session.
pub const SESSION_COOKIE: &str = "parley_session";

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub mailer: Arc<Mailer>,
    pub key: ServerKey,
    pub limiter: Arc<dyn RateLimiter>,
    pub relay: Arc<dyn Relay>,
    /// Where messages are stored (group commit).
    pub writer: crate::writer::GroupCommit,
    /// Cursors of the database's history epoch, read at start-up (`admin after-restore` moves it
    /// on with every node stopped).
    pub cursors: crate::chats::Cursors,
}

/// A live session, taken from `Authorization: Bearer` or the session cookie. The only source of
/// "who is calling" anywhere in the server.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    /// Came from the cookie (a browser), not a bearer header: `Origin` matters.
    pub via_cookie: bool,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer_token(parts) {
            return accounts::authenticate(state, token).await;
        }
        let token = session_cookie(parts).ok_or(ApiError::Unauthorized)?;
        // The cookie is SameSite=Strict already; refusing a foreign Origin on writes also covers
        // browsers that ignore SameSite.
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
            && !origin_allowed(&parts.headers, &state.config)
        {
            return Err(ApiError::ForbiddenOrigin);
        }
        let session = accounts::authenticate(state, token).await?;
        Ok(Session { via_cookie: true, ..session })
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn session_cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// A request's `Origin`, when present, must be the server's own: `PARLEY_PUBLIC_URL`, or else the
/// origin the `Host` header names.
pub fn origin_allowed(headers: &HeaderMap, config: &Config) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if let Some(public) = &config.public_url {
        return origin == public;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts, &state.config.trusted_proxies)
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "unknown".into());
        let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(Caller { ip, user_agent })
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy, in which case
/// `X-Forwarded-For` is read from the right (the entries proxies appended) past every trusted hop.
/// Entries left of the first untrusted one could have been written by the client itself.
pub fn client_ip(parts: &Parts, trusted: &TrustedProxies) -> Option<IpAddr> {
    let ConnectInfo(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(forwarded_client(canonical_ip(peer.ip()), &parts.headers, trusted))
}

fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        if !trusted.contains(&client) {
            break;
        }
        // A hop we cannot read ends the chain at the last proxy we trust.
        let Some(ip) = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip())) else {
            break;
        };
        client = canonical_ip(ip);
    }
    client
}

/// `Set-Cookie` value that gives the browser its session (HttpOnly: scripts never see it).
pub fn session_cookie_header(config: &Config, token: &str) -> String {
    let secure = if config.secure_cookies() { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", config.session_ttl_secs)
}

/// `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie_header(config: &Config) -> String {
    let secure = if config.secure_cookies() { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, xff: &[&str], trusted: &str) -> String {
        let mut headers = HeaderMap::new();
        for value in xff {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        let trusted = TrustedProxies::parse(trusted).unwrap();
        forwarded_client(peer.parse().unwrap(), &headers, &trusted).to_string()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        assert_eq!(client("203.0.113.9", &["198.51.100.1"], "10.0.0.0/8"), "203.0.113.9");
        assert_eq!(client("10.0.0.2", &["198.51.100.1"], "10.0.0.0/8"), "198.51.100.1");
        assert_eq!(client("10.0.0.2", &[], "10.0.0.0/8"), "10.0.0.2", "no header: the proxy itself");
        assert_eq!(client("10.0.0.2", &["198.51.100.1"], ""), "10.0.0.2", "nobody trusted by default");
    }

    #[test]
    fn a_forged_leftmost_entry_is_ignored() {
        // The client sent `X-Forwarded-For: 1.2.3.4`; the proxy appended the address it saw.
        assert_eq!(client("127.0.0.1", &["1.2.3.4, 198.51.100.7"], "127.0.0.1"), "198.51.100.7");
        assert_eq!(client("127.0.0.1", &["1.2.3.4", "198.51.100.7"], "127.0.0.1"), "198.51.100.7");
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked_and_junk_stops_the_walk() {
        assert_eq!(client("127.0.0.1", &["198.51.100.7, 10.1.1.1"], "127.0.0.1, 10.0.0.0/8"), "198.51.100.7");
        assert_eq!(client("127.0.0.1", &["198.51.100.7, not-an-ip"], "127.0.0.1"), "127.0.0.1");
        assert_eq!(client("::ffff:127.0.0.1", &["[2001:db8::1]:4711"], "127.0.0.1"), "2001:db8::1");
    }
}
