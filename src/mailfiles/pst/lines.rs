//! Content lines as vCard (RFC 2426) and iCalendar (RFC 5545) write them:
//! values escaped, lines folded at 75 octets, CRLF at the end of each.

/// The text of a vCard or iCalendar object, line by line.
#[derive(Default)]
pub struct Lines(String);

impl Lines {
    /// `name` (with its parameters) and a value written as it is.
    pub fn raw(&mut self, name: &str, value: &str) {
        let line = format!("{name}:{value}");
        let mut width = 0;
        for c in line.chars() {
            // Fold before a character that would pass 75 octets.
            if width + c.len_utf8() > 75 {
                self.0.push_str("\r\n ");
                width = 1;
            }
            self.0.push(c);
            width += c.len_utf8();
        }
        self.0.push_str("\r\n");
    }

    /// A text value, escaped.
    pub fn text(&mut self, name: &str, value: &str) {
        self.raw(name, &escape(value));
    }

    /// A text value if there is one.
    pub fn text_opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            self.text(name, v);
        }
    }

    /// A structured value (N, ADR, ORG): its parts escaped, joined by `;`.
    pub fn parts(&mut self, name: &str, parts: &[Option<String>]) {
        let joined: Vec<String> = parts
            .iter()
            .map(|p| escape(p.as_deref().unwrap_or_default()))
            .collect();
        self.raw(name, &joined.join(";"));
    }

    pub fn finish(self) -> String {
        self.0
    }
}

/// A text value with `\`, `;`, `,` and line breaks escaped.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_long_lines_folded_on_character_boundaries() {
        let mut l = Lines::default();
        l.text("NOTE", "a;b,c\\d\r\ne");
        l.text("SUMMARY", &"é".repeat(50));
        let text = l.finish();
        assert!(text.starts_with("NOTE:a\\;b\\,c\\\\d\\ne\r\n"), "{text}");
        for line in text.split("\r\n") {
            assert!(line.len() <= 75, "{line:?}");
        }
        let unfolded = text.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("SUMMARY:{}", "é".repeat(50))));
    }
}
