//! MX look-ups for `cutover --check-mx`: does a domain's mail already go to
//! Exchange Online?
//!
//! Plain DNS over UDP (TCP when a reply is truncated) through
//! hickory-resolver, either with the system's nameservers or with one given
//! nameserver (tests point it at a server on loopback).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::system_conf::read_system_conf;

/// Host-name suffixes of Exchange Online's inbound mail servers.
///
/// `mail.protection.outlook.com` is the long-standing one
/// (`contoso-com.mail.protection.outlook.com`). Microsoft provisions
/// domains under `mx.microsoft` (`contoso-com.<random>.mx.microsoft`, a
/// DNSSEC-signed zone) for inbound SMTP DANE since 2024, and for every new
/// accepted domain from 2025/2026 on. Note the TLD is `.microsoft`, not
/// `microsoft.com`.
pub const MICROSOFT_MX_SUFFIXES: &[&str] = &[".mail.protection.outlook.com", ".mx.microsoft"];

/// The MX records of a domain and whether they all lead to Exchange Online.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxCheck {
    /// The domain as asked.
    pub domain: String,
    /// (preference, exchange), lowest preference first; exchanges are
    /// lowercase ASCII (IDNs as punycode) without the trailing dot. A "null
    /// MX" (RFC 7505: the domain takes no mail) shows as an empty exchange.
    pub records: Vec<(u16, String)>,
    /// True when there is at least one record and every one of them is an
    /// Exchange Online host: a domain that still lists its old server
    /// beside Microsoft's can get mail delivered to the old one.
    pub points_to_microsoft: bool,
}

/// True if `host` is an Exchange Online inbound host (see
/// [`MICROSOFT_MX_SUFFIXES`]). Case and a trailing dot do not matter; the
/// bare suffix itself (no tenant label in front) does not count.
pub fn is_microsoft_exchange(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    MICROSOFT_MX_SUFFIXES
        .iter()
        .any(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
}

/// The rule for [`MxCheck::points_to_microsoft`].
pub fn all_point_to_microsoft<'a>(exchanges: impl IntoIterator<Item = &'a str>) -> bool {
    let mut any = false;
    for exchange in exchanges {
        if !is_microsoft_exchange(exchange) {
            return false;
        }
        any = true;
    }
    any
}

/// Looks up the MX records of `domain`, at `resolver` if given, else at
/// the nameservers of the system configuration (/etc/resolv.conf). The
/// whole look-up, retries included, ends within `timeout`.
///
/// A domain that does not exist or has no MX records is not an error: it
/// gives no records and `points_to_microsoft == false`. Errors (no answer,
/// SERVFAIL, REFUSED, a bad name) name the domain and the resolver.
pub async fn check_mx(
    domain: &str,
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> Result<MxCheck> {
    let (config, options, at) = match resolver {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            let config = ResolverConfig::from_name_servers(vec![server]);
            (config, ResolverOpts::default(), addr.to_string())
        }
        None => {
            let (config, options) = read_system_conf().map_err(|e| {
                anyhow!(
                    "cannot look up MX records of {domain}: cannot read the system resolver \
                     configuration (/etc/resolv.conf): {e}"
                )
            })?;
            let servers: Vec<String> = config
                .name_servers()
                .iter()
                .map(|s| s.ip.to_string())
                .collect();
            let at = format!("the system resolver ({})", servers.join(", "));
            (config, options, at)
        }
    };
    let err = |what: String| anyhow!("cannot look up MX records of {domain} at {at}: {what}");

    // A fully qualified name, so that resolv.conf's search list never turns
    // "contoso.com" into "contoso.com.corp.example" when the first answer is
    // NXDOMAIN.
    let mut name =
        Name::from_utf8(domain).map_err(|e| err(format!("not a valid domain name: {e}")))?;
    name.set_fqdn(true);

    // One attempt bounded by the whole budget: hickory retransmits over UDP
    // within it, and asks over TCP after a truncated reply.
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options);
    builder.options_mut().timeout = timeout;
    builder.options_mut().attempts = 1;
    let resolver = builder.build().map_err(|e| err(e.to_string()))?;

    // hickory bounds its attempt by `timeout` as well; this bounds the
    // whole call (connecting, the TCP retry) whatever hickory does.
    let looked_up = tokio::time::timeout(timeout, resolver.mx_lookup(name))
        .await
        .map_err(|_| err(format!("no answer within {timeout:?}")))?;
    let mut records: Vec<(u16, String)> = match looked_up {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, exchange_name(&mx.exchange))),
                _ => None, // e.g. the CNAMEs of a chain
            })
            .collect(),
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => return Err(err(e.to_string())),
    };
    records.sort();
    records.dedup();
    let points_to_microsoft = all_point_to_microsoft(records.iter().map(|(_, e)| e.as_str()));
    Ok(MxCheck {
        domain: domain.to_string(),
        records,
        points_to_microsoft,
    })
}

fn exchange_name(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_online_hosts() {
        assert!(is_microsoft_exchange(
            "contoso-com.mail.protection.outlook.com"
        ));
        assert!(is_microsoft_exchange(
            "Contoso-Com.Mail.Protection.Outlook.COM."
        ));
        assert!(is_microsoft_exchange("contoso-com.a-v1.mx.microsoft"));
        assert!(is_microsoft_exchange("contoso-com.b-v1.mx.microsoft."));
    }

    #[test]
    fn other_hosts() {
        for host in [
            "mx1.emailsrvr.com",
            "aspmx.l.google.com",
            // The bare suffixes carry no tenant.
            "mail.protection.outlook.com",
            "mx.microsoft",
            // Look-alikes: a suffix must start at a label boundary.
            "contoso-commail.protection.outlook.com",
            "evilmx.microsoft",
            "contoso-com.mail.protection.outlook.com.evil.example",
            // Not the new zone: its TLD is .microsoft, not microsoft.com.
            "contoso-com.mx.microsoft.com",
            // Long retired Office 365 names.
            "mail.messaging.microsoft.com",
            "mail.global.frontbridge.com",
            "",
        ] {
            assert!(!is_microsoft_exchange(host), "{host}");
        }
    }

    #[test]
    fn every_record_must_point_to_microsoft() {
        assert!(all_point_to_microsoft([
            "contoso-com.mail.protection.outlook.com"
        ]));
        assert!(all_point_to_microsoft([
            "contoso-com.mail.protection.outlook.com",
            "contoso-com.a-v1.mx.microsoft",
        ]));
        assert!(!all_point_to_microsoft([
            "contoso-com.mail.protection.outlook.com",
            "mx2.emailsrvr.com",
        ]));
        assert!(!all_point_to_microsoft(["mx1.emailsrvr.com"]));
        assert!(!all_point_to_microsoft(std::iter::empty()));
        // A null MX (RFC 7505) takes no mail at all.
        assert!(!all_point_to_microsoft([""]));
    }

    #[test]
    fn exchange_names_are_lowercase_without_the_root() {
        let name = Name::from_ascii("MX1.EmailSrvr.com.").unwrap();
        assert_eq!(exchange_name(&name), "mx1.emailsrvr.com");
        assert_eq!(exchange_name(&Name::root()), "");
    }

    #[tokio::test]
    async fn a_bad_name_is_an_error_naming_it_and_the_resolver() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let e = check_mx("a..b", Some(addr), Duration::from_secs(1))
            .await
            .unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("a..b") && text.contains("127.0.0.1:9"),
            "{text}"
        );
    }
}
