//! One worker's part of a batch split across workers (`--shard I/N`): the
//! accounts whose address hashes to I of N. The hash is SHA-256 of the
//! address, trimmed, with ASCII letters in lower case (not Unicode's
//! folding, whose tables change between versions); its first 8 bytes, read
//! big-endian, modulo N. It depends on nothing but the address, so every
//! run, machine and version puts an account in the same shard.

use std::fmt;

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

/// The shard a worker takes: `index` of `count`, counting from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// "I/N", as `--shard` takes it.
    pub fn parse(text: &str) -> Result<Shard> {
        let Some((i, n)) = text.trim().split_once('/') else {
            bail!("--shard {text:?}: say I/N, e.g. 0/4 for the first of four shards");
        };
        let (Ok(index), Ok(count)) = (i.trim().parse::<u32>(), n.trim().parse::<u32>()) else {
            bail!("--shard {text:?}: I and N must be whole numbers, e.g. 0/4");
        };
        Shard::new(index, count).map_err(|e| anyhow::anyhow!("--shard {text:?}: {e}"))
    }

    pub fn new(index: u32, count: u32) -> Result<Shard> {
        if count == 0 {
            bail!("a batch is split into one shard or more, not 0");
        }
        if index >= count {
            bail!(
                "shard {index} does not exist in {count} shards (they count from 0 to {})",
                count - 1
            );
        }
        Ok(Shard { index, count })
    }

    /// The shard an account's address falls in, of `count`.
    pub fn of(address: &str, count: u32) -> u32 {
        let digest = Sha256::digest(address.trim().to_ascii_lowercase().as_bytes());
        let first: [u8; 8] = digest[..8].try_into().expect("32 bytes");
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
    }

    pub fn holds(&self, address: &str) -> bool {
        Shard::of(address, self.count) == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_read_as_i_of_n_and_nonsense_is_named() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        assert_eq!(Shard::parse(" 0 / 1 ").unwrap().to_string(), "0/1");
        for bad in ["4/4", "1/0", "a/b", "3", "-1/4", ""] {
            let e = Shard::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn every_address_is_in_exactly_one_shard_and_the_shards_are_even() {
        let addresses: Vec<String> = (0..4000).map(|i| format!("user{i}@contoso.com")).collect();
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).unwrap()).collect();
        let mut sizes = [0usize; 4];
        for a in &addresses {
            let holding: Vec<&Shard> = shards.iter().filter(|s| s.holds(a)).collect();
            assert_eq!(holding.len(), 1, "{a}");
            sizes[holding[0].index as usize] += 1;
        }
        for n in sizes {
            assert!((900..=1100).contains(&n), "{sizes:?}");
        }
        // One shard is the whole batch.
        assert!(addresses.iter().all(|a| Shard::new(0, 1).unwrap().holds(a)));
    }

    #[test]
    fn the_shard_of_an_address_never_changes() {
        // Pinned: the shard of an address is part of a batch's layout
        // (snapshots and leases are per shard), so these never move. They
        // are SHA-256's first 8 bytes, big-endian, mod N, e.g. with
        // `printf %s alice@example.com | sha256sum`.
        assert_eq!(Shard::of("alice@example.com", 4), 3);
        assert_eq!(Shard::of("bob@example.com", 4), 0);
        assert_eq!(Shard::of("carol@contoso.com", 7), 5);
        assert_eq!(Shard::of("dave@fabrikam.com", 1000), 998);
        // The same account however the file spells it.
        assert_eq!(
            Shard::of("  Alice@Example.COM ", 4),
            Shard::of("alice@example.com", 4)
        );
    }
}
