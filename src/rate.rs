//! A cap on the bytes per second the whole process moves over its IMAP
//! connections and its requests to Microsoft Graph (`--max-rate`), for a
//! line shared with people at work: one token bucket that every
//! connection, in both directions, draws from. A read or write is let
//! through while the bucket is not in debt and is charged what it moved
//! afterwards, so the cap holds on average over any second, with bursts
//! of at most a tenth of a second's worth (or one HTTP request's body).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

pub struct RateCap {
    per_second: u64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    /// Bytes that may still move now; below zero, a debt to wait out.
    tokens: f64,
    at: Instant,
}

impl std::fmt::Debug for RateCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateCap({} B/s)", self.per_second)
    }
}

impl RateCap {
    pub fn new(per_second: u64) -> Arc<RateCap> {
        Arc::new(RateCap {
            per_second: per_second.max(1),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                at: Instant::now(),
            }),
        })
    }

    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    /// The most one read or write may move at once.
    pub(crate) fn burst(&self) -> usize {
        (self.per_second / 10).clamp(1024, 256 * 1024) as usize
    }

    /// How long to wait before moving anything, if the bucket is in debt.
    pub(crate) fn wait(&self) -> Option<Duration> {
        let mut b = self.bucket.lock().unwrap();
        let now = Instant::now();
        let rate = self.per_second as f64;
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(self.burst() as f64);
        b.at = now;
        (b.tokens < 0.0).then(|| Duration::from_secs_f64(-b.tokens / rate))
    }

    /// Charges bytes that moved.
    pub(crate) fn charge(&self, bytes: usize) {
        self.bucket.lock().unwrap().tokens -= bytes as f64;
    }

    /// Waits out the bucket's debt, then charges `bytes`: for traffic seen
    /// a request or a reply's chunk at a time (HTTP), where the bytes are
    /// charged as they are let through and the next one waits for them.
    pub(crate) async fn pace(&self, bytes: usize) {
        while let Some(d) = self.wait() {
            tokio::time::sleep(d).await;
        }
        self.charge(bytes);
    }
}

/// "2M", "500k", "1.5MB", "2500000": bytes per second (decimal units, as
/// lines are sold); "20Mbit" or "20mbps": bits per second.
pub fn parse_rate(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let Ok(value) = number.parse::<f64>() else {
        bail!("{text:?} is not a rate (say e.g. 2M for 2 MB/s, or 20Mbit)");
    };
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches("/s");
    let (scale, bits) = match unit {
        "" | "b" => (1.0, false),
        "k" | "kb" => (1e3, false),
        "m" | "mb" => (1e6, false),
        "g" | "gb" => (1e9, false),
        "kbit" | "kbps" => (1e3, true),
        "mbit" | "mbps" => (1e6, true),
        "gbit" | "gbps" => (1e9, true),
        _ => bail!("{text:?} is not a rate: unknown unit (use k, M or G, or kbit, Mbit, Gbit)"),
    };
    let bytes = value * scale / if bits { 8.0 } else { 1.0 };
    if bytes < 1024.0 {
        bail!("{text:?} is below the least rate mailferry keeps to, 1 KB/s");
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_in_bytes_or_bits_per_second() {
        assert_eq!(parse_rate("2M").unwrap(), 2_000_000);
        assert_eq!(parse_rate("500k").unwrap(), 500_000);
        assert_eq!(parse_rate("1.5 MB/s").unwrap(), 1_500_000);
        assert_eq!(parse_rate("20Mbit").unwrap(), 2_500_000);
        assert_eq!(parse_rate("2500000").unwrap(), 2_500_000);
        assert!(parse_rate("fast").unwrap_err().to_string().contains("fast"));
        assert!(parse_rate("10 parsecs").is_err());
        assert!(parse_rate("100").is_err());
    }

    #[test]
    fn the_bucket_makes_a_debt_wait_at_the_rate() {
        let cap = RateCap::new(100_000);
        assert_eq!(cap.wait(), None);
        cap.charge(50_000);
        let wait = cap.wait().expect("in debt");
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
    }
}
