//! Prompt clean-up as the official pipeline's `prompt_clean` does it.
//!
//! The reference runs `ftfy.fix_text(text)`, then `html.unescape` twice, `strip()`, collapses
//! every whitespace run to one space and strips again. ftfy has no Rust port, so
//! [`fix_text`] re-implements its deterministic per-character fixes with ftfy's default
//! settings and in its order (per line, repeated until nothing changes): HTML entity
//! decoding (only `&name;` / `&#n;` forms, skipped once a line contains `<`), C1 controls read
//! as Windows-1252, Latin ligatures split, fullwidth/halfwidth forms to standard width,
//! curly quotes straightened, line breaks unified, terminal escapes and stray control
//! characters removed, and NFC normalization.
//!
//! Not reproduced: ftfy's mojibake repair (`fix_encoding`: guessing that UTF-8 was decoded as
//! Latin-1/Windows-1252 and re-decoding it). Text that is already valid, as prompts sent
//! over JSON are, is unaffected by it; only double-encoded text such as `schÃ¶n` would come
//! out differently from the reference (it stays as given).
//!
//! [`html_unescape`] follows Python's `html.unescape` exactly (HTML5 named references,
//! legacy names without `;`, numeric references with the HTML5 replacement rules).

use html_escape::NAMED_ENTITIES;
use unicode_normalization::UnicodeNormalization;

/// The whole official `prompt_clean`: `ftfy.fix_text`, `html.unescape` twice, strip,
/// whitespace runs to one space, strip.
pub fn prompt_clean(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    whitespace_clean(py_strip(&unescaped))
}

/// Collapses every run of Unicode whitespace to one space and strips both ends (the
/// reference's `regex.sub(r"\s+", " ", text).strip()`).
pub fn whitespace_clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    py_strip(&out).to_string()
}

/// Python `str.isspace()`: Unicode whitespace plus the separators U+001C..U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `str.strip()` without arguments.
fn py_strip(text: &str) -> &str {
    text.trim_matches(py_isspace)
}

/// ftfy's `fix_text` with default settings, without mojibake repair (see module docs).
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    for segment in text.split_inclusive('\n') {
        // ftfy turns HTML unescaping off for the rest of the text once a line has a '<'.
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

/// One line of `fix_text`: the fixers in ftfy's order, until a fixed point.
fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    loop {
        let before = text.clone();
        if unescape {
            text = ftfy_unescape_html(&text);
        }
        text = text.chars().map(c1_to_windows_1252).collect();
        text = map_chars(&text, latin_ligature);
        text = map_chars(&text, standard_width);
        text = text.chars().map(uncurl_quote).collect();
        text = fix_line_breaks(&text);
        text = remove_terminal_escapes(&text);
        text.retain(|c| !is_removed_control(c));
        text = text.nfc().collect();
        if text == before {
            return text;
        }
    }
}

/// Replaces every character for which `f` has a replacement.
fn map_chars<S: AsRef<str>>(text: &str, f: impl Fn(char) -> Option<S>) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match f(c) {
            Some(s) => out.push_str(s.as_ref()),
            None => out.push(c),
        }
    }
    out
}

/// Windows-1252 characters for bytes 0x80..=0x9F (undefined bytes keep their C1 control).
const WINDOWS_1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{8D}', '\u{017D}', '\u{8F}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{9D}', '\u{017E}', '\u{0178}',
];

/// ftfy `fix_c1_controls`: a C1 control character is read as its Windows-1252 byte.
fn c1_to_windows_1252(c: char) -> char {
    match c as u32 {
        n @ 0x80..=0x9F => WINDOWS_1252_HIGH[(n - 0x80) as usize],
        _ => c,
    }
}

/// ftfy `fix_latin_ligatures`.
fn latin_ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "\u{2BC}n",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// ftfy `fix_character_width`: U+3000 becomes a space and every form in U+FF01..U+FFEF
/// becomes its NFKC equivalent (fullwidth ASCII to ASCII, halfwidth kana to fullwidth...).
fn standard_width(c: char) -> Option<String> {
    if c == '\u{3000}' {
        return Some(" ".into());
    }
    if !('\u{FF01}'..='\u{FFEF}').contains(&c) {
        return None;
    }
    let folded: String = std::iter::once(c).nfkc().collect();
    (!folded.chars().eq(std::iter::once(c))).then_some(folded)
}

/// ftfy `uncurl_quotes`.
fn uncurl_quote(c: char) -> char {
    match c {
        '\u{2BC}' | '\u{2018}'..='\u{201B}' => '\'',
        '\u{201C}'..='\u{201F}' => '"',
        _ => c,
    }
}

/// ftfy `fix_line_breaks`.
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy `remove_terminal_escapes`: ANSI `ESC [ (digits|;)* letter` sequences.
fn remove_terminal_escapes(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\u{1b}' && chars.get(i + 1) == Some(&'[') {
            let mut j = i + 2;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == ';') {
                j += 1;
            }
            if j < chars.len() && chars[j].is_ascii_alphabetic() {
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// ftfy `remove_control_chars`: the control characters it strips.
fn is_removed_control(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0x206A..=0x206F | 0xFEFF | 0xFFF9..=0xFFFC)
}

/// A named reference (name without `&`, with `;` when it has one) as Python's
/// `html.entities.html5` knows it.
fn named_entity(name: &str) -> Option<&'static str> {
    match name.strip_suffix(';') {
        Some(base) => NAMED_ENTITIES
            .binary_search_by(|(n, _)| (*n).cmp(base.as_bytes()))
            .ok()
            .map(|i| NAMED_ENTITIES[i].1),
        None if LEGACY_NO_SEMICOLON.binary_search(&name).is_ok() => {
            named_entity(&format!("{name};"))
        }
        None => None,
    }
}

/// HTML5 names that are also recognised without a trailing semicolon (sorted).
const LEGACY_NO_SEMICOLON: [&str; 106] = [
    "AElig", "AMP", "Aacute", "Acirc", "Agrave", "Aring", "Atilde", "Auml", "COPY", "Ccedil",
    "ETH", "Eacute", "Ecirc", "Egrave", "Euml", "GT", "Iacute", "Icirc", "Igrave", "Iuml", "LT",
    "Ntilde", "Oacute", "Ocirc", "Ograve", "Oslash", "Otilde", "Ouml", "QUOT", "REG", "THORN",
    "Uacute", "Ucirc", "Ugrave", "Uuml", "Yacute", "aacute", "acirc", "acute", "aelig", "agrave",
    "amp", "aring", "atilde", "auml", "brvbar", "ccedil", "cedil", "cent", "copy", "curren", "deg",
    "divide", "eacute", "ecirc", "egrave", "eth", "euml", "frac12", "frac14", "frac34", "gt",
    "iacute", "icirc", "iexcl", "igrave", "iquest", "iuml", "laquo", "lt", "macr", "micro",
    "middot", "nbsp", "not", "ntilde", "oacute", "ocirc", "ograve", "ordf", "ordm", "oslash",
    "otilde", "ouml", "para", "plusmn", "pound", "quot", "raquo", "reg", "sect", "shy", "sup1",
    "sup2", "sup3", "szlig", "thorn", "times", "uacute", "ucirc", "ugrave", "uml", "uuml",
    "yacute", "yen", "yuml",
];

/// Python's `html.unescape`.
pub fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match replace_charref(after) {
            Some((replacement, used)) => {
                out.push_str(&replacement);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Matches one reference after `&` (Python's `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|
/// [^\t\n\f <&#;]{1,32};?)`) and returns its replacement and the bytes it consumed.
fn replace_charref(s: &str) -> Option<(String, usize)> {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'#') {
        let (radix, start) = match bytes.get(1) {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = s[start..]
            .bytes()
            .take_while(|b| {
                if radix == 16 {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let mut end = start + digits;
        if bytes.get(end) == Some(&b';') {
            end += 1;
        }
        // Saturate huge numbers: anything above U+10FFFF is replaced anyway.
        let num = s[start..start + digits].chars().fold(0u64, |acc, c| {
            (acc * radix as u64 + c.to_digit(radix).unwrap_or(0) as u64).min(0x11_0000)
        });
        return Some((numeric_charref(num), end));
    }
    let name_len: usize = s
        .chars()
        .take_while(|c| !matches!(c, '\t' | '\n' | '\u{c}' | ' ' | '<' | '&' | '#' | ';'))
        .take(32)
        .map(char::len_utf8)
        .sum();
    if name_len == 0 {
        return None;
    }
    let end = if bytes.get(name_len) == Some(&b';') {
        name_len + 1
    } else {
        name_len
    };
    let whole = &s[..end];
    if let Some(v) = named_entity(whole) {
        return Some((v.to_string(), end));
    }
    // The longest known prefix (at least 2 characters), the rest kept as text.
    let boundaries: Vec<usize> = whole.char_indices().map(|(i, _)| i).collect();
    for &cut in boundaries.iter().rev() {
        if whole[..cut].chars().count() < 2 {
            break;
        }
        if let Some(v) = named_entity(&whole[..cut]) {
            return Some((format!("{v}{}", &whole[cut..]), end));
        }
    }
    Some((format!("&{whole}"), end))
}

/// Python's numeric reference rules (`html._invalid_charrefs` / `_invalid_codepoints`).
fn numeric_charref(num: u64) -> String {
    match num {
        0x00 => "\u{FFFD}".into(),
        0x0D => "\r".into(),
        0x80..=0x9F => WINDOWS_1252_HIGH[(num - 0x80) as usize].to_string(),
        0xD800..=0xDFFF => "\u{FFFD}".into(),
        n if n > 0x10_FFFF => "\u{FFFD}".into(),
        0x01..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0xFDD0..=0xFDEF => String::new(),
        n if n & 0xFFFE == 0xFFFE => String::new(),
        n => char::from_u32(n as u32)
            .map(String::from)
            .unwrap_or_default(),
    }
}

/// ftfy `unescape_html`: only `&[#]?[0-9A-Za-z]{1,24};` references, with all-caps forms of
/// lower-case names (`&EACUTE;` -> `É`) when those are not references themselves.
fn ftfy_unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let hash = usize::from(after.starts_with('#'));
        let name_len = after[hash..]
            .bytes()
            .take_while(u8::is_ascii_alphanumeric)
            .count();
        let terminated = after.as_bytes().get(hash + name_len) == Some(&b';');
        if (1..=24).contains(&name_len) && terminated {
            let reference = &after[..hash + name_len + 1];
            if let Some(v) = ftfy_entity(reference) {
                out.push_str(&v);
                rest = &after[reference.len()..];
                continue;
            }
        }
        out.push('&');
        rest = after;
    }
    out.push_str(rest);
    out
}

/// One `name;` or `#n;` reference as ftfy decodes it, `None` when it stays as text.
fn ftfy_entity(reference: &str) -> Option<String> {
    if reference.starts_with('#') {
        let decoded = html_unescape(&format!("&{reference}"));
        return (!decoded.contains(';')).then_some(decoded);
    }
    if let Some(v) = named_entity(reference) {
        return Some(v.to_string());
    }
    let lower = reference.to_lowercase();
    if lower.to_uppercase() != reference {
        return None;
    }
    let v = named_entity(&lower)?;
    let as_text = format!("&{reference}");
    (html_unescape(&as_text) == as_text).then(|| v.to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_unescape_matches_python() {
        assert_eq!(html_unescape("a &amp; b"), "a & b");
        assert_eq!(html_unescape("&amp;amp;"), "&amp;");
        assert_eq!(html_unescape("&lt;tag&gt;"), "<tag>");
        assert_eq!(html_unescape("&ampxyz;"), "&xyz;");
        assert_eq!(html_unescape("this&not that"), "this¬ that");
        assert_eq!(html_unescape("&#233;&#xE9;&#XE9"), "ééé");
        assert_eq!(
            html_unescape("&#128;&#0;&#1;&#99999999;"),
            "€\u{FFFD}\u{FFFD}"
        );
        assert_eq!(html_unescape("&unknown; & &#;"), "&unknown; & &#;");
        assert_eq!(html_unescape("&checkmark;"), "✓");
    }

    #[test]
    fn ftfy_fixes_apply() {
        assert_eq!(fix_text("ﬂuﬃeﬆ"), "fluffiest");
        assert_eq!(fix_text("“quoted” ‘x’"), "\"quoted\" 'x'");
        assert_eq!(fix_text("ＡＢＣ，中文\u{3000}x"), "ABC,中文 x");
        assert_eq!(fix_text("P&EACUTE;REZ &eacute;"), "PÉREZ é");
        assert_eq!(fix_text("this&not that"), "this&not that");
        assert_eq!(fix_text("\u{1b}[36;44mred\u{1b}[0m"), "red");
        assert_eq!(fix_text("a\r\nb\u{feff}\u{0}c"), "a\nbc");
        assert_eq!(fix_text("e\u{301}"), "é");
        assert_eq!(fix_text("\u{92}s"), "'s");
        // A line with '<' turns HTML decoding off from there on.
        assert_eq!(fix_text("&amp;\n<b>&amp;\n&amp;"), "&\n<b>&amp;\n&amp;");
    }

    #[test]
    fn prompt_clean_collapses_and_unescapes() {
        assert_eq!(prompt_clean("  A  cat&amp;amp;amp;\n\tdog  "), "A cat& dog");
        assert_eq!(prompt_clean("\u{1f} x \u{a0}y\u{3000}"), "x y");
        assert_eq!(prompt_clean(""), "");
    }
}
