//! Who a request comes from, and the flood limit per client on the form and link routes.
//!
//! The client is the TCP peer, unless the peer is one of `serve.trusted_proxies`: then it is
//! the right-most address of `X-Forwarded-For` that is not a trusted proxy (the one the nearest
//! untrusted hop connected from; entries further left are whatever the client wrote). IPv6
//! clients are counted by their /64, the block one host usually has, so a client cannot escape
//! the limit by changing addresses within it.
//!
//! The limit is `governor`'s GCRA, keyed by client: a burst of `serve.client_requests_per_minute`
//! requests, refilled at that rate. Keys not seen for a while are forgotten every minute, so
//! memory follows the number of recent clients.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::pages::{Pages, Problem};

/// A rate limiter keyed by `K`, with governor's default (monotonic) clock.
pub(crate) type Limiter<K> = DefaultKeyedRateLimiter<K>;

/// The flood limit of the form and link routes, and how to find the client behind proxies.
pub(crate) struct ClientLimit {
    limiter: Option<Limiter<IpAddr>>,
    trusted_proxies: Vec<IpAddr>,
    pages: Arc<Pages>,
}

impl ClientLimit {
    /// `per_minute` requests a minute per client (0: no limit).
    pub(crate) fn new(per_minute: u32, trusted_proxies: Vec<IpAddr>, pages: Arc<Pages>) -> Self {
        ClientLimit {
            limiter: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::dashmap(Quota::per_minute(n))),
            trusted_proxies,
            pages,
        }
    }

    /// Forgets clients whose allowance is full again; run now and then.
    pub(crate) fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The client of a request from `peer` with `headers`, as the module describes.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer;
        if self.trusted_proxies.contains(&peer) {
            let hops = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect::<Vec<_>>();
            for hop in hops.iter().rev() {
                match hop.parse::<IpAddr>() {
                    Ok(ip) if self.trusted_proxies.contains(&ip) => continue,
                    Ok(ip) => {
                        client = ip;
                        break;
                    }
                    // A hop we cannot read: trust nothing to its left.
                    Err(_) => break,
                }
            }
        }
        counted_as(client)
    }

    /// Whether `client` may make one more request; if not, how long until it may.
    pub(crate) fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&client).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()))
        })
    }
}

/// The key a client is counted under: an IPv4 address, or an IPv6 address's /64 (an IPv4-mapped
/// IPv6 address counts as its IPv4 address).
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Middleware: answers 429 with a `Retry-After` (whole seconds, at least 1) and the "too many
/// requests" page when the client is over its limit.
pub(crate) async fn limit(
    State(limit): State<Arc<ClientLimit>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let client = limit.client(peer.ip(), request.headers());
    match limit.check(client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::debug!(%client, "over the request limit");
            limit
                .pages
                .problem(&Problem::TooManyRequests(wait.as_secs().max(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_minute: u32, trusted: &[&str]) -> ClientLimit {
        ClientLimit::new(
            per_minute,
            trusted.iter().map(|t| t.parse().unwrap()).collect(),
            Arc::new(Pages::for_tests()),
        )
    }

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let l = limit(10, &["127.0.0.1", "10.0.0.2"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Not from a proxy: the header is the client's own words.
        assert_eq!(
            l.client(ip("192.0.2.7"), &headers(&["203.0.113.9"])),
            ip("192.0.2.7")
        );
        // Right-most untrusted hop, over two proxies and two header lines.
        assert_eq!(
            l.client(
                ip("127.0.0.1"),
                &headers(&["6.6.6.6, 198.51.100.4", "10.0.0.2"])
            ),
            ip("198.51.100.4")
        );
        // No header, or an unreadable hop: the proxy itself.
        assert_eq!(l.client(ip("127.0.0.1"), &headers(&[])), ip("127.0.0.1"));
        assert_eq!(
            l.client(ip("127.0.0.1"), &headers(&["1.2.3.4, junk"])),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let l = limit(10, &[]);
        let a = l.client("2001:db8:1:2:aaaa::1".parse().unwrap(), &HeaderMap::new());
        let b = l.client("2001:db8:1:2:bbbb::2".parse().unwrap(), &HeaderMap::new());
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let mapped = l.client("::ffff:192.0.2.1".parse().unwrap(), &HeaderMap::new());
        assert_eq!(mapped, "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_burst_then_a_wait_per_client() {
        let l = limit(3, &[]);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(one).is_ok());
        }
        let wait = l.check(one).unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(l.check(two).is_ok(), "another client has its own allowance");
        let off = limit(0, &[]);
        assert!((0..1000).all(|_| off.check(one).is_ok()));
    }
}
