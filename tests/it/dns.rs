//! `mailferry::dns::check_mx` (for `cutover --check-mx`) against a real DNS
//! server on loopback.

use std::time::{Duration, Instant};

use crate::support::dns::{DnsConfig, DnsServer, SilentDns, Transport};
use mailferry::dns::{MxCheck, check_mx};

const TIMEOUT: Duration = Duration::from_secs(5);
const TYPE_MX: u16 = 15;

fn zones() -> DnsServer {
    DnsServer::start(&[
        (
            "contoso.com",
            &[(0, "contoso-com.mail.protection.outlook.com")],
        ),
        (
            // Listed out of order: the answer must come back sorted.
            "fabrikam.com",
            &[(20, "mx2.emailsrvr.com"), (10, "mx1.emailsrvr.com")],
        ),
        (
            "tailspintoys.com",
            &[
                (0, "tailspintoys-com.mail.protection.outlook.com"),
                (10, "mx1.emailsrvr.com"),
            ],
        ),
        (
            "woodgrovebank.com",
            &[(0, "WoodgroveBank-com.a-v1.MX.Microsoft.")],
        ),
        // Exists, but takes no mail by MX.
        ("adatum.com", &[]),
    ])
}

async fn check(server: &DnsServer, domain: &str) -> MxCheck {
    check_mx(domain, Some(server.addr()), TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{domain}: {e:#}"))
}

#[tokio::test]
async fn moved_to_exchange_online() {
    let server = zones();
    let mx = check(&server, "contoso.com").await;
    assert_eq!(
        mx,
        MxCheck {
            domain: "contoso.com".into(),
            records: vec![(0, "contoso-com.mail.protection.outlook.com".into())],
            points_to_microsoft: true,
        }
    );
    // One MX query, over UDP, for exactly the name given: no search-list
    // suffix was tried.
    let queries = server.queries();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert_eq!(queries[0].name, "contoso.com");
    assert_eq!(queries[0].qtype, TYPE_MX);
    assert_eq!(queries[0].transport, Transport::Udp);
}

#[tokio::test]
async fn dnssec_zone_of_exchange_online_counts_and_names_are_normalised() {
    let server = zones();
    let mx = check(&server, "woodgrovebank.com").await;
    assert_eq!(
        mx.records,
        vec![(0, "woodgrovebank-com.a-v1.mx.microsoft".into())]
    );
    assert!(mx.points_to_microsoft);
}

#[tokio::test]
async fn still_at_rackspace() {
    let server = zones();
    let mx = check(&server, "fabrikam.com").await;
    assert_eq!(
        mx.records,
        vec![
            (10, "mx1.emailsrvr.com".into()),
            (20, "mx2.emailsrvr.com".into()),
        ]
    );
    assert!(!mx.points_to_microsoft);
}

#[tokio::test]
async fn half_moved_is_not_moved() {
    let server = zones();
    let mx = check(&server, "tailspintoys.com").await;
    assert_eq!(
        mx.records,
        vec![
            (0, "tailspintoys-com.mail.protection.outlook.com".into()),
            (10, "mx1.emailsrvr.com".into()),
        ]
    );
    assert!(!mx.points_to_microsoft);
}

#[tokio::test]
async fn unknown_domain_is_empty_not_an_error() {
    let server = zones();
    let mx = check(&server, "no-such-domain.example").await;
    assert_eq!(
        mx,
        MxCheck {
            domain: "no-such-domain.example".into(),
            records: vec![],
            points_to_microsoft: false,
        }
    );
}

#[tokio::test]
async fn domain_without_mx_records_is_empty_not_an_error() {
    let server = zones();
    let mx = check(&server, "adatum.com").await;
    assert!(mx.records.is_empty());
    assert!(!mx.points_to_microsoft);
}

#[tokio::test]
async fn truncated_udp_reply_is_retried_over_tcp() {
    let mut config = DnsConfig::with_mx(&[(
        "contoso.com",
        &[(0, "contoso-com.mail.protection.outlook.com")],
    )]);
    config.truncate_udp = true;
    let server = DnsServer::start_with(config);
    let mx = check(&server, "contoso.com").await;
    assert!(mx.points_to_microsoft, "{mx:?}");
    let transports: Vec<Transport> = server.queries().iter().map(|q| q.transport).collect();
    assert_eq!(transports, vec![Transport::Udp, Transport::Tcp]);
}

#[tokio::test]
async fn server_failure_is_an_error_naming_domain_and_resolver() {
    let mut config = DnsConfig::default();
    config.servfail.insert("contoso.com".into());
    let server = DnsServer::start_with(config);
    let e = check_mx("contoso.com", Some(server.addr()), TIMEOUT)
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("contoso.com"), "{text}");
    assert!(text.contains(&server.addr().to_string()), "{text}");
}

#[tokio::test]
async fn silent_resolver_fails_within_the_timeout() {
    let silent = SilentDns::start();
    let timeout = Duration::from_millis(1500);
    let started = Instant::now();
    let e = check_mx("contoso.com", Some(silent.addr()), timeout)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let text = format!("{e:#}");
    assert!(
        text.starts_with(&format!(
            "cannot look up MX records of contoso.com at {}",
            silent.addr()
        )),
        "{text}"
    );
    // Generous slack for a loaded machine, but far below hickory's own
    // defaults (5 s per attempt, 2 attempts).
    assert!(elapsed < timeout + Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed >= timeout / 2, "gave up too early: {elapsed:?}");
}
