//! Aligned plain-text tables for terminal output.

use std::io::{self, Write};

/// Writes `rows` under `headers`, each column padded to its widest cell. Cells are
/// printed [`inert`].
pub fn write_table(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| inert(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut headers.iter().copied())?;
    for row in &rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// `text` with its control characters (escape sequences, line breaks) and bidirectional
/// overrides written as Rust escapes (`\u{1b}`): a cell is text a client chose (a user id
/// the app took from a sign-up form, say), and must not move the cursor, clear the
/// operator's screen, forge a row or reorder what follows it.
pub fn inert(text: &str) -> String {
    if !text.contains(hostile) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if hostile(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `json` (as serde_json writes it) with the characters [`inert`] escapes written as JSON
/// escapes (`\u009b`): the same document, which no longer moves the operator's cursor or
/// reorders the line. serde_json escapes the C0 controls only, and writes DEL, the C1
/// controls (U+009B is a CSI on terminals that take UTF-8 C1) and the bidirectional
/// overrides as they are. They can only stand inside strings, so the escapes keep the
/// document's meaning.
pub fn inert_json(json: &str) -> String {
    let escaped = |c: char| hostile(c) && c >= ' ';
    if !json.contains(escaped) {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            // All of them are in the Basic Multilingual Plane: one escape each.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Control characters and bidirectional marks and overrides: what a client-chosen text
/// must not send to a terminal as it is.
fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Cuts `text` to `max` characters, marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A    BB\nxxx  y\nz\n");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    /// A user id is whatever the app logged in, often what a visitor typed: printed raw, an
    /// escape sequence in it ran on the operator's terminal, and a line break forged a row.
    #[test]
    fn cells_cannot_drive_the_terminal_or_forge_rows() {
        let mut out = Vec::new();
        let hostile = "eve\u{1b}[2J\nroot  1\u{202e}\u{9b}";
        write_table(
            &mut out,
            &["USER", "N"],
            &[vec![hostile.into(), "1".into()]],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            !text.contains(|c: char| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(!text.contains('\u{202e}'), "{text:?}");
        assert!(
            text.contains(r"eve\u{1b}[2J\u{a}root  1\u{202e}\u{9b}"),
            "{text}"
        );
        assert_eq!(inert("Zoë 🙂"), "Zoë 🙂", "printable text is unchanged");
    }

    #[test]
    fn json_keeps_its_meaning_without_hostile_characters() {
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "user\u{202e}": ["a\u{9b}[2J\u{7f}", "Zoë 🙂\n"],
        }))
        .unwrap();
        let inert = inert_json(&json);
        assert_eq!(
            inert,
            "{\n  \"user\\u202e\": [\n    \"a\\u009b[2J\\u007f\",\n    \"Zoë 🙂\\n\"\n  ]\n}"
        );
        let back: serde_json::Value = serde_json::from_str(&inert).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(&json).unwrap()
        );
    }
}
