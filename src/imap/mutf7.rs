//! Modified UTF-7 (RFC 3501 section 5.1.3) for folder names.
//!
//! Written here rather than taken from `utf7-imap` because that crate panics
//! on a malformed name, and a server may send one: a bad name must be kept
//! as it came (the wire name stays the key) rather than stop the run.

use base64::Engine as _;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const MUTF7: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Decodes a modified UTF-7 name; `None` when it is not valid modified UTF-7.
pub fn decode(wire: &str) -> Option<String> {
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find('-')?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = MUTF7.decode(encoded).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            for ch in char::decode_utf16(units) {
                let ch = ch.ok()?;
                // Printable ASCII must not be encoded (RFC 3501).
                if (' '..='~').contains(&ch) {
                    return None;
                }
                out.push(ch);
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The name for people: decoded when valid, else the wire name as it is.
pub fn display(wire: &str) -> String {
    decode(wire).unwrap_or_else(|| wire.to_string())
}

/// Encodes a Unicode name as modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if !pending.is_empty() {
            let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&MUTF7.encode(bytes));
            out.push('-');
            pending.clear();
        }
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_names() {
        for (wire, name) in [
            ("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "Отправленные"),
            ("Entw&APw-rfe", "Entwürfe"),
            ("&AWA-iuk&AWE-liad&ARcBfgEX-", "Šiukšliadėžė"),
            ("Tom &- Jerry", "Tom & Jerry"),
            ("&ZeVnLIqe-", "日本語"),
            ("&2D3eAA-", "😀"),
            ("plain", "plain"),
        ] {
            assert_eq!(decode(wire).as_deref(), Some(name), "decode {wire}");
            assert_eq!(encode(name), wire, "encode {name}");
        }
    }

    #[test]
    fn malformed_names_are_kept_not_panicked_on() {
        for bad in ["&", "&abc", "&!!!-", "&AGE-", "&2D0-"] {
            assert_eq!(decode(bad), None, "{bad}");
            assert_eq!(display(bad), bad);
        }
    }
}
