//! The HTML of a message kept only as compressed RTF (PidTagRtfCompressed).
//! Outlook stores an HTML mail it received that way, with the HTML
//! encapsulated in the RTF (`\fromhtml1`, MS-OXRTFEX); that HTML is given
//! back here. RTF written in Outlook's own editor has no HTML in it: the
//! message's plain text body stands for it.

/// The encapsulated HTML of a compressed RTF body, if it holds any.
pub fn html_from_compressed_rtf(data: &[u8]) -> Option<String> {
    html_from_rtf(&decompress(data)?)
}

fn decompress(data: &[u8]) -> Option<Vec<u8>> {
    // compressed-rtf slices its 16-byte header, and an uncompressed
    // body by its stated size, without checking either.
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    let (raw_size, kind) = (word(4)? as usize, word(8)?);
    if kind == 0x414C_454D && raw_size > data.len() - 16 {
        return None;
    }
    let text = compressed_rtf::decompress_rtf(data).ok()?;
    // It gives each byte back as the character of the same number.
    Some(
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect(),
    )
}

/// What a group does with the text in it.
#[derive(Clone, Copy)]
struct State {
    /// A destination that is not document text (font table, picture...).
    skip: bool,
    /// Between `\htmlrtf` and `\htmlrtf0`: RTF-only text, not HTML.
    rtf_only: bool,
    /// Inside `{\*\htmltag...}`: HTML markup, always kept.
    tag: bool,
    /// `\ucN`: characters that follow a `\uN` as its fallback.
    fallback: usize,
}

/// The HTML encapsulated in an RTF document, or `None` for plain RTF.
pub fn html_from_rtf(rtf: &[u8]) -> Option<String> {
    let head = &rtf[..rtf.len().min(1024)];
    if !head.windows(9).any(|w| w == b"\\fromhtml") {
        return None;
    }
    let mut html = Html::default();
    let mut state = State {
        skip: false,
        rtf_only: false,
        tag: false,
        fallback: 1,
    };
    let mut stack: Vec<State> = Vec::new();
    // Characters still to drop after a \uN (its fallback).
    let mut drop = 0usize;
    // The group just opened: its first control word may make it a destination.
    let mut group_start = false;
    let mut starred = false;
    let mut i = 0;
    while i < rtf.len() {
        let keep = |s: &State| !s.skip && (s.tag || !s.rtf_only);
        match rtf[i] {
            b'{' => {
                stack.push(state);
                group_start = true;
                starred = false;
                i += 1;
                continue;
            }
            b'}' => {
                state = stack.pop()?;
                i += 1;
            }
            b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'\\' => {
                let (word, param, next) = control(rtf, i + 1);
                i = next;
                if word == "*" {
                    starred = group_start;
                    continue;
                }
                if group_start && (starred || is_destination(&word)) {
                    if starred && word == "htmltag" {
                        state.tag = true;
                    } else {
                        state.skip = true;
                    }
                }
                match word.as_str() {
                    "htmlrtf" => state.rtf_only = param != Some(0),
                    "ansicpg" => html.codepage = param.unwrap_or(1252),
                    "uc" => state.fallback = param.unwrap_or(1).max(0) as usize,
                    "'" => {
                        // \'hh: one byte in the document's code page.
                        let byte = rtf.get(i..i + 2).and_then(|h| {
                            u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
                        });
                        i += 2;
                        if drop > 0 {
                            drop -= 1;
                        } else if let (Some(b), true) = (byte, keep(&state)) {
                            html.byte(b);
                        }
                    }
                    "u" if keep(&state) => {
                        let n = param.unwrap_or(0);
                        let n = if n < 0 { n + 65536 } else { n };
                        html.char(char::from_u32(n as u32).unwrap_or('\u{FFFD}'));
                        drop = state.fallback;
                    }
                    _ if keep(&state) => {
                        if let Some(text) = symbol(&word) {
                            html.text(text);
                        }
                    }
                    _ => {}
                }
            }
            b => {
                if drop > 0 {
                    drop -= 1;
                } else if keep(&state) {
                    html.byte(b);
                }
                i += 1;
            }
        }
        group_start = false;
        starred = false;
    }
    let html = html.finish();
    (!html.trim().is_empty()).then_some(html)
}

/// A control word or symbol at `at` (after the backslash): its name, its
/// number, and where the text after it starts.
fn control(rtf: &[u8], at: usize) -> (String, Option<i32>, usize) {
    let Some(&first) = rtf.get(at) else {
        return (String::new(), None, at);
    };
    if !first.is_ascii_alphabetic() {
        // \' is followed by two hex digits, read by the caller.
        let word = match first {
            b'\r' | b'\n' => "par".to_string(),
            other => (other as char).to_string(),
        };
        return (word, None, at + 1);
    }
    let mut end = at;
    while rtf.get(end).is_some_and(u8::is_ascii_alphabetic) {
        end += 1;
    }
    let word = String::from_utf8_lossy(&rtf[at..end]).into_owned();
    let digits_start = end;
    if rtf.get(end) == Some(&b'-') {
        end += 1;
    }
    while rtf.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    let param = std::str::from_utf8(&rtf[digits_start..end])
        .ok()
        .and_then(|d| d.parse().ok());
    // One space ends a control word and is part of it.
    if rtf.get(end) == Some(&b' ') {
        end += 1;
    }
    (word, param, end)
}

/// Groups whose text is not document text.
fn is_destination(word: &str) -> bool {
    matches!(
        word,
        "fonttbl"
            | "colortbl"
            | "stylesheet"
            | "info"
            | "pict"
            | "object"
            | "header"
            | "footer"
            | "listtable"
            | "listoverridetable"
            | "rsidtbl"
            | "generator"
            | "xmlnstbl"
            | "themedata"
            | "datastore"
            | "latentstyles"
            | "fldinst"
    )
}

/// What a control word or symbol stands for in the text.
fn symbol(word: &str) -> Option<&'static str> {
    Some(match word {
        "par" | "line" => "\r\n",
        "tab" => "\t",
        "\\" => "\\",
        "{" => "{",
        "}" => "}",
        "~" => "\u{A0}",
        "_" => "\u{2011}",
        "emdash" => "\u{2014}",
        "endash" => "\u{2013}",
        "lquote" => "\u{2018}",
        "rquote" => "\u{2019}",
        "ldblquote" => "\u{201C}",
        "rdblquote" => "\u{201D}",
        "bullet" => "\u{2022}",
        _ => return None,
    })
}

/// The HTML as it is found: bytes in the document's code page, and
/// characters given by number.
#[derive(Default)]
struct Html {
    codepage: i32,
    out: String,
    bytes: Vec<u8>,
}

impl Html {
    fn byte(&mut self, b: u8) {
        self.bytes.push(b);
    }

    fn char(&mut self, c: char) {
        self.flush();
        self.out.push(c);
    }

    fn text(&mut self, s: &str) {
        self.flush();
        self.out.push_str(s);
    }

    fn flush(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let encoding = super::source::encoding_of_codepage(i64::from(self.codepage))
            .unwrap_or(encoding_rs::WINDOWS_1252);
        self.out
            .push_str(&encoding.decode_without_bom_handling(&self.bytes).0);
        self.bytes.clear();
    }

    fn finish(mut self) -> String {
        self.flush();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encapsulated_html_comes_back_without_the_rtf_only_text() {
        let rtf = r#"{\rtf1\ansi\ansicpg1252\fromhtml1 \deff0{\fonttbl{\f0\fswiss Arial;}}{\colortbl\red0\green0\blue0;}
{\*\htmltag19 <html>}{\*\htmltag34 <head>}{\*\htmltag41 <meta charset="x">}{\*\htmltag50 <body>}
\htmlrtf {\b RTF only\par}\htmlrtf0 Caf\'e9 \u8364?{\*\htmltag84 <br>}
\htmlrtf \par\htmlrtf0 {\*\htmltag148 <b>}bold\{x\}{\*\htmltag156 </b>}{\*\mhtmltag1 cid:x}{\*\htmltag58 </body></html>}}"#;
        let html = html_from_compressed_rtf(&compressed_rtf::compress_rtf(rtf).unwrap()).unwrap();
        assert_eq!(
            html,
            "<html><head><meta charset=\"x\"><body>Café €<br><b>bold{x}</b></body></html>"
        );
    }

    #[test]
    fn plain_rtf_and_damaged_data_give_nothing() {
        let plain = compressed_rtf::compress_rtf(r"{\rtf1\ansi Hello\par}").unwrap();
        assert_eq!(html_from_compressed_rtf(&plain), None);
        assert_eq!(html_from_compressed_rtf(&[1, 2, 3]), None);
        let mut lying = vec![0u8; 20];
        lying[4..8].copy_from_slice(&1000u32.to_le_bytes());
        lying[8..12].copy_from_slice(&0x414C_454Du32.to_le_bytes());
        assert_eq!(html_from_compressed_rtf(&lying), None);
    }
}
