//! Where the adapter may send what it owes others. Addresses come from registries and flow
//! files, which the adapter does not control entirely: a subscriber registered at
//! `http://127.0.0.1:7190/admin/reload?` would otherwise have every callback it is owed
//! reload the adapter. So only `http` and `https` are sent to, and never the adapter's own
//! admin listener, whatever name or alias of this host the address uses.

use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;

/// Why a destination is refused. Refusals are final: the same address is refused at every
/// attempt, so a message bound for it becomes a dead letter at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("`{0}` is not a URL")]
    NotUrl(String),
    #[error("the URL scheme `{scheme}` is not http or https (`{url}`)")]
    Scheme { scheme: String, url: String },
    #[error("`{url}` is the adapter's own admin listener ({admin})")]
    AdminListener { url: String, admin: SocketAddr },
}

/// The adapter's own listeners that nothing it sends may reach.
#[derive(Debug, Default)]
pub struct Destinations {
    protected: RwLock<Vec<SocketAddr>>,
}

impl Destinations {
    pub fn new(protected: &[SocketAddr]) -> Self {
        Destinations {
            protected: RwLock::new(protected.to_vec()),
        }
    }

    /// Adds a listener's address (as bound: with its real port when `:0` was asked for).
    pub fn protect(&self, addr: SocketAddr) {
        let mut p = self.protected.write().unwrap_or_else(|e| e.into_inner());
        if !p.contains(&addr) {
            p.push(addr);
        }
    }

    /// Checks `url` before a message is sent to it. A host name is resolved only when the port
    /// is one of a protected listener's; a name that cannot be resolved is left to the send,
    /// which fails (and is retried) as any unreachable host does.
    pub async fn check(&self, url: &str) -> Result<(), Refused> {
        let parsed = reqwest::Url::parse(url).map_err(|_| Refused::NotUrl(url.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Refused::Scheme {
                scheme: parsed.scheme().to_string(),
                url: url.to_string(),
            });
        }
        let Some(port) = parsed.port_or_known_default() else {
            return Ok(());
        };
        let guarded: Vec<SocketAddr> = self
            .protected
            .read()
            .map(|p| p.iter().filter(|a| a.port() == port).copied().collect())
            .unwrap_or_default();
        if guarded.is_empty() {
            return Ok(());
        }
        let host = parsed.host_str().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let targets: Vec<IpAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
            vec![ip]
        } else {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                vec![IpAddr::from([127, 0, 0, 1])]
            } else {
                tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map(|found| found.map(|a| a.ip()).collect())
                    .unwrap_or_default()
            }
        };
        for admin in guarded {
            if targets.iter().any(|ip| reaches(ip.to_canonical(), admin)) {
                return Err(Refused::AdminListener {
                    url: url.to_string(),
                    admin,
                });
            }
        }
        Ok(())
    }
}

/// Whether a connection to `ip` on the listener's port can land on the listener `admin`: the
/// same address; any loopback or unspecified address (this host, however it is named); or,
/// for a listener on every interface, any address of this host.
fn reaches(ip: IpAddr, admin: SocketAddr) -> bool {
    let bound = admin.ip().to_canonical();
    if ip == bound || ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    bound.is_unspecified() && is_local(ip)
}

/// Whether `ip` is an address of this host: only those can be bound.
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_http_and_never_the_admin_listener() {
        let d = Destinations::new(&["127.0.0.1:7190".parse().unwrap()]);
        for ok in [
            "http://127.0.0.1:7100/on_search",
            "https://bap.example.org/beckn/on_search",
            "http://localhost:8080/x",
            "https://127.0.0.1/x",
        ] {
            assert_eq!(d.check(ok).await, Ok(()), "{ok}");
        }
        for admin in [
            "http://127.0.0.1:7190/admin/reload?/on_search",
            "http://localhost:7190/admin/reload",
            "http://LOCALHOST.:7190/",
            "http://app.localhost:7190/",
            "http://127.0.0.2:7190/",
            "http://0.0.0.0:7190/",
            "http://[::1]:7190/",
            "http://[::ffff:127.0.0.1]:7190/",
            "https://127.0.0.1:7190/",
        ] {
            assert!(
                matches!(d.check(admin).await, Err(Refused::AdminListener { .. })),
                "{admin}"
            );
        }
        for scheme in [
            "file:///etc/passwd",
            "gopher://127.0.0.1:70/_x",
            "ftp://x.example/",
        ] {
            assert!(
                matches!(d.check(scheme).await, Err(Refused::Scheme { .. })),
                "{scheme}"
            );
        }
        assert!(matches!(
            d.check("not a url").await,
            Err(Refused::NotUrl(_))
        ));
    }

    #[tokio::test]
    async fn a_listener_on_every_interface_is_guarded_on_this_hosts_addresses() {
        let d = Destinations::default();
        d.protect("0.0.0.0:7191".parse().unwrap());
        assert!(d.check("http://127.0.0.1:7191/").await.is_err());
        assert!(d.check("http://localhost:7191/").await.is_err());
        // an address that is not this host's is someone else's service on the same port
        assert_eq!(d.check("http://192.0.2.10:7191/").await, Ok(()));
    }
}
