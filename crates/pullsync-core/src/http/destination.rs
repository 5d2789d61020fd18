//! Where the server may send requests: `pullsync.http_allowed_hosts`. Public addresses are
//! always allowed; loopback, private, link-local (cloud metadata at 169.254.169.254) and
//! the addresses no server should be reached at are refused unless an entry opens them.
//! The check runs on the address connected to (in the client's DNS resolver), so a name
//! that resolves to a public address when checked and to 127.0.0.1 later is still caught.
//!
//! Grammar: a comma-separated list of entries, blanks around them ignored:
//! - `loopback` (127.0.0.0/8, ::1), `private` (10/8, 172.16/12, 192.168/16, 100.64/10,
//!   fc00::/7, fec0::/10), `link-local` (169.254/16, fe80::/10);
//! - an address or a CIDR block: `10.1.2.3`, `10.1.0.0/16`, `fd00::/8`, `[::1]`;
//! - a host name, optionally with a port: `api.internal`, `api.internal:8443`. A listed name
//!   may resolve to any address; listed with ports, it is reachable at those ports only.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The setting's name, for messages and hints.
pub const SETTING: &str = "pullsync.http_allowed_hosts";

/// What kind of address an IP is, as far as reaching it from the server goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    /// RFC 1918, carrier-grade NAT (100.64/10), IPv6 unique-local and site-local.
    Private,
    /// 169.254/16 (cloud metadata services) and fe80::/10.
    LinkLocal,
    /// 0.0.0.0/8 and ::, which many systems treat as "this host".
    Unspecified,
    Multicast,
    Broadcast,
    /// Ranges set aside (240/4, 192.0.0/24, 198.18/15): never a public API.
    Reserved,
}

impl AddressClass {
    /// The class of `ip`. IPv6 forms that carry an IPv4 address (mapped, compatible,
    /// NAT64, 6to4) are the class of that address: they reach it.
    pub fn of(ip: IpAddr) -> AddressClass {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => Self::of_v4(v4),
                None => Self::of_v6(v6),
            },
        }
    }

    fn of_v4(ip: Ipv4Addr) -> AddressClass {
        let [a, b, c, _] = ip.octets();
        match (a, b, c) {
            _ if ip.is_broadcast() => AddressClass::Broadcast,
            (0, _, _) => AddressClass::Unspecified,
            (127, _, _) => AddressClass::Loopback,
            (10, _, _) | (192, 168, _) => AddressClass::Private,
            (172, 16..=31, _) | (100, 64..=127, _) => AddressClass::Private,
            (169, 254, _) => AddressClass::LinkLocal,
            (224..=239, _, _) => AddressClass::Multicast,
            (240..=255, _, _) | (192, 0, 0) | (198, 18..=19, _) => AddressClass::Reserved,
            _ => AddressClass::Public,
        }
    }

    fn of_v6(ip: Ipv6Addr) -> AddressClass {
        let first = ip.segments()[0];
        if ip.is_unspecified() {
            AddressClass::Unspecified
        } else if ip.is_loopback() {
            AddressClass::Loopback
        } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
            AddressClass::Private
        } else if first & 0xffc0 == 0xfe80 {
            AddressClass::LinkLocal
        } else if first & 0xff00 == 0xff00 {
            AddressClass::Multicast
        } else {
            AddressClass::Public
        }
    }

    fn name(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// The IPv4 address an IPv6 one stands for: ::ffff:a.b.c.d, ::a.b.c.d (not :: or ::1),
/// 64:ff9b::a.b.c.d (NAT64) and 2002:AABB:CCDD:: (6to4).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Class(AddressClass),
    Net { base: IpAddr, prefix: u8 },
    Host { name: String, port: Option<u16> },
}

impl Entry {
    fn parse(text: &str) -> Result<Entry, String> {
        match text {
            "loopback" => return Ok(Entry::Class(AddressClass::Loopback)),
            "private" => return Ok(Entry::Class(AddressClass::Private)),
            "link-local" => return Ok(Entry::Class(AddressClass::LinkLocal)),
            _ => {}
        }
        if let Some((address, prefix)) = text.split_once('/') {
            let base: IpAddr = address
                .parse()
                .map_err(|_| format!("\"{text}\": not an address before the /"))?;
            let max = if base.is_ipv4() { 32 } else { 128 };
            let prefix = prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("\"{text}\": the prefix length must be 0 to {max}"))?;
            return Ok(Entry::Net { base, prefix });
        }
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(Entry::Net { base: ip, prefix });
        }
        let (name, port) = match text.rsplit_once(':') {
            Some((name, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("\"{text}\": the port must be 1 to 65535"))?;
                (name, Some(port))
            }
            None => (text, None),
        };
        let name = normal_host(name);
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "\"{text}\": expected loopback, private, link-local, an address, a CIDR block, or a host name with an optional :port"
            ));
        }
        Ok(Entry::Host { name, port })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Entry::Class(class) => AddressClass::of(ip) == *class,
            Entry::Net { base, prefix } => {
                in_net(ip, *base, *prefix)
                    || matches!(ip, IpAddr::V6(v6) if embedded_v4(v6)
                        .is_some_and(|v4| in_net(IpAddr::V4(v4), *base, *prefix)))
            }
            Entry::Host { .. } => false,
        }
    }
}

fn in_net(ip: IpAddr, base: IpAddr, prefix: u8) -> bool {
    match (ip, base) {
        (IpAddr::V4(ip), IpAddr::V4(base)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(base) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(base)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(base) & mask
        }
        _ => false,
    }
}

/// Host names compare without case and without a final dot.
fn normal_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The parsed `pullsync.http_allowed_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    entries: Vec<Entry>,
}

/// A destination the setting does not allow. The message names the host and the setting,
/// never whether anything listens there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} is not an allowed destination: it is {what}, and {SETTING} does not list it")]
pub struct DestinationRefused {
    pub host: String,
    what: String,
}

impl DestinationRefused {
    fn address(host: &str, class: AddressClass) -> Self {
        DestinationRefused {
            host: host.to_string(),
            what: format!("a {} address", class.name()),
        }
    }

    fn port(host: &str, port: u16) -> Self {
        DestinationRefused {
            host: host.to_string(),
            what: format!("listed for other ports than {port}"),
        }
    }

    /// What an operator can do about it.
    pub fn hint() -> String {
        format!(
            "A superuser can open it in postgresql.conf, e.g. {SETTING} = 'loopback' or 'private' or '10.1.0.0/16' or 'api.internal:8443' (docs/SECURITY.md), then reload."
        )
    }
}

impl Destinations {
    /// Parses the setting; empty means public addresses only.
    pub fn parse(text: &str) -> Result<Destinations, String> {
        let entries = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Entry::parse(&t.to_ascii_lowercase()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Destinations { entries })
    }

    /// Whether an address may be connected to when no host entry names it.
    pub fn allows_address(&self, ip: IpAddr) -> bool {
        AddressClass::of(ip) == AddressClass::Public || self.entries.iter().any(|e| e.contains(ip))
    }

    fn listed_ports(&self, host: &str) -> Option<Vec<Option<u16>>> {
        let host = normal_host(host);
        let ports: Vec<Option<u16>> = self
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Host { name, port } if *name == host => Some(*port),
                _ => None,
            })
            .collect();
        (!ports.is_empty()).then_some(ports)
    }

    /// The check before a request to `host:port`: an address literal is checked here (no
    /// resolver sees it), a listed name for its ports; other names in the resolver.
    pub fn check_target(&self, host: &str, port: u16) -> Result<(), DestinationRefused> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return match self.allows_address(ip) {
                true => Ok(()),
                false => Err(DestinationRefused::address(host, AddressClass::of(ip))),
            };
        }
        match self.listed_ports(host) {
            Some(ports) if !ports.iter().any(|p| p.is_none_or(|p| p == port)) => {
                Err(DestinationRefused::port(host, port))
            }
            _ => Ok(()),
        }
    }

    /// The addresses `host` resolved to that may be connected to; refused when none.
    /// A listed name keeps all of them: the operator vouched for it.
    pub fn filter_resolved(
        &self,
        host: &str,
        addresses: Vec<std::net::SocketAddr>,
    ) -> Result<Vec<std::net::SocketAddr>, DestinationRefused> {
        if self.listed_ports(host).is_some() {
            return Ok(addresses);
        }
        let first = addresses.first().map(|a| AddressClass::of(a.ip()));
        let allowed: Vec<_> = addresses
            .into_iter()
            .filter(|a| self.allows_address(a.ip()))
            .collect();
        match (allowed.is_empty(), first) {
            (false, _) => Ok(allowed),
            (true, Some(class)) => Err(DestinationRefused::address(host, class)),
            // No address at all is the resolver's own failure, reported as unreachable.
            (true, None) => Ok(allowed),
        }
    }

    /// Checks `url` before a request, resolving its host here as the connection will:
    /// for a refusal raised where the caller is, before a run starts.
    pub fn check_url(&self, url: &str) -> Result<(), DestinationRefused> {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Ok(()); // the request itself reports a malformed URL
        };
        let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
            return Ok(());
        };
        self.check_target(host, port)?;
        if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
            return Ok(());
        }
        use std::net::ToSocketAddrs;
        // A name that does not resolve now fails the request later, as unreachable.
        let resolved = (host, port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        self.filter_resolved(host, resolved).map(drop)
    }
}

/// reqwest's resolver for the client: the system's, then the policy on what it answered.
pub(crate) struct GuardedResolver {
    pub destinations: Arc<Destinations>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let destinations = self.destinations.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = destinations.filter_resolved(&host, resolved)?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl fmt::Display for Destinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .entries
            .iter()
            .map(|e| match e {
                Entry::Class(c) => c.name().to_string(),
                Entry::Net { base, prefix } => format!("{base}/{prefix}"),
                Entry::Host { name, port: None } => name.clone(),
                Entry::Host {
                    name,
                    port: Some(p),
                } => format!("{name}:{p}"),
            })
            .collect();
        f.write_str(&shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> AddressClass {
        AddressClass::of(text.parse().unwrap())
    }

    #[test]
    fn every_class_is_recognised() {
        use AddressClass::*;
        for (ip, expected) in [
            ("8.8.8.8", Public),
            ("2606:4700::1111", Public),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("::1", Loopback),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Public),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("100.127.255.255", Private),
            ("100.128.0.1", Public),
            ("fd00::1", Private),
            ("fc00::1", Private),
            ("fec0::1", Private),
            ("169.254.169.254", LinkLocal),
            ("fe80::1", LinkLocal),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("198.18.0.1", Reserved),
            ("192.0.0.8", Reserved),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_the_class_of_the_ipv4_one() {
        use AddressClass::*;
        for (ip, expected) in [
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Loopback),
            ("::10.1.2.3", Private),
            ("64:ff9b::169.254.169.254", LinkLocal),
            ("64:ff9b::7f00:1", Loopback),
            ("2002:7f00:1::", Loopback),
            ("2002:a9fe:a9fe::1", LinkLocal),
            ("2002:0808:0808::", Public),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn the_default_allows_public_addresses_only() {
        let none = Destinations::parse("").unwrap();
        assert!(none.allows_address("93.184.216.34".parse().unwrap()));
        for refused in [
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "fd12::1",
        ] {
            assert!(!none.allows_address(refused.parse().unwrap()), "{refused}");
        }
    }

    #[test]
    fn the_grammar_opens_classes_blocks_and_names() {
        let d = Destinations::parse(
            " Loopback , private,link-local, 203.0.113.0/24, fd00::/8, [fe80::1], api.internal, db.internal:8443,",
        )
        .unwrap();
        assert_eq!(
            d.to_string(),
            "loopback, private, link-local, 203.0.113.0/24, fd00::/8, fe80::1/128, api.internal, db.internal:8443"
        );
        let only_net = Destinations::parse("10.1.0.0/16").unwrap();
        assert!(only_net.allows_address("10.1.200.3".parse().unwrap()));
        assert!(only_net.allows_address("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!only_net.allows_address("10.2.0.1".parse().unwrap()));
        assert!(!only_net.allows_address("127.0.0.1".parse().unwrap()));
        let loopback = Destinations::parse("loopback").unwrap();
        assert!(loopback.allows_address("::1".parse().unwrap()));
        assert!(loopback.allows_address("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.allows_address("169.254.169.254".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "nonsense/8",
            "host:0",
            "host:99999",
            "a b",
            "*",
            "http://x",
        ] {
            assert!(Destinations::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn address_literals_are_checked_before_any_resolver() {
        let none = Destinations::default();
        let refused = none.check_target("127.0.0.1", 80).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "127.0.0.1 is not an allowed destination: it is a loopback address, and pullsync.http_allowed_hosts does not list it"
        );
        assert!(none.check_target("[::1]", 80).is_err());
        assert!(none.check_target("[::ffff:a9fe:a9fe]", 80).is_err());
        assert!(none.check_target("93.184.216.34", 443).is_ok());
        assert!(none.check_url("http://127.0.0.1:5432/").is_err());
        assert!(none.check_url("http://[::1]:5432/x?k=1").is_err());
        assert!(Destinations::parse("loopback")
            .unwrap()
            .check_url("http://127.0.0.1:5432/")
            .is_ok());
    }

    #[test]
    fn listed_names_are_open_at_their_ports_and_whatever_they_resolve_to() {
        let d = Destinations::parse("api.internal:8443, other.internal").unwrap();
        assert!(d.check_target("API.internal.", 8443).is_ok());
        assert!(d.check_target("api.internal", 22).is_err());
        assert!(d.check_target("other.internal", 22).is_ok());
        assert!(d.check_target("unlisted.example", 22).is_ok());
        let private = vec!["10.0.0.7:0".parse().unwrap()];
        assert_eq!(
            d.filter_resolved("api.internal", private.clone()).unwrap(),
            private
        );
        assert!(d.filter_resolved("unlisted.example", private).is_err());
    }

    #[test]
    fn only_allowed_addresses_of_a_name_are_connected_to() {
        let none = Destinations::default();
        let mixed = vec![
            "127.0.0.1:0".parse().unwrap(),
            "93.184.216.34:0".parse().unwrap(),
        ];
        assert_eq!(
            none.filter_resolved("rebind.example", mixed).unwrap(),
            vec!["93.184.216.34:0".parse().unwrap()]
        );
        let refused = none
            .filter_resolved("rebind.example", vec!["169.254.169.254:0".parse().unwrap()])
            .unwrap_err();
        assert!(refused.to_string().contains("link-local"));
        assert!(none.check_url("http://localhost:1/").is_err());
    }

    fn client(allowed: &str) -> crate::http::HttpClient {
        crate::http::test_client(std::time::Duration::from_secs(5), allowed)
    }

    async fn get(http: &crate::http::HttpClient, url: &str) -> crate::http::Failure {
        let classify = |_: u16, _: &[u8]| (crate::http::FailureClass::Refused, String::new());
        let request = crate::http::Request {
            url,
            auth: None,
            header: None,
            query_secret: None,
        };
        let calls = std::sync::atomic::AtomicU32::new(0);
        http.get(&request, None, classify, &calls)
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn loopback_is_refused_by_name_and_by_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let http = client("");
        for host in ["127.0.0.1", "[::1]", "localhost", "[::ffff:127.0.0.1]"] {
            let failure = get(&http, &format!("http://{host}:{port}/items?key=k")).await;
            assert_eq!(failure.class, crate::http::FailureClass::Refused, "{host}");
            assert!(
                failure.message.ends_with(
                    " is not an allowed destination: it is a loopback address, and pullsync.http_allowed_hosts does not list it"
                ),
                "{}",
                failure.message
            );
        }
    }

    #[tokio::test]
    async fn an_open_port_reads_as_a_closed_one() {
        use std::io::{Read, Write};
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        // Not HTTP: a banner, like an SSH or mail server's; and one that closes at once.
        let mut servers = Vec::new();
        for banner in [&b"SSH-2.0-OpenSSH_9.6\r\n"[..], b""] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            servers.push(listener.local_addr().unwrap().port());
            std::thread::spawn(move || {
                for mut stream in listener.incoming().take(4).flatten() {
                    let _ = stream.read(&mut [0u8; 1024]);
                    let _ = stream.write_all(banner);
                }
            });
        }
        let http = client("loopback");
        let text = |port: u16, failure: crate::http::Failure| {
            assert_eq!(failure.class, crate::http::FailureClass::Transient);
            failure.message.replace(&port.to_string(), "PORT")
        };
        let expected = "GET http://127.0.0.1:PORT/x: could not reach 127.0.0.1";
        let url = |port: u16| format!("http://127.0.0.1:{port}/x");
        assert_eq!(
            text(closed_port, get(&http, &url(closed_port)).await),
            expected
        );
        for port in servers {
            assert_eq!(text(port, get(&http, &url(port)).await), expected);
        }
    }
}
