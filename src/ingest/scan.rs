//! One pass over a record's bytes before it is parsed: the nesting depth, and the two things
//! serde_json's raw-value parsing lets through because it skips values without decoding
//! them — a number literal beyond the range of a double (`1e400`, which would read as
//! infinity) and an escaped lone surrogate (`"\ud800"`, which is not a Unicode character).
//! Both make the text invalid JSON for us (DESIGN §2), wherever they appear in the record.

/// What the scan found wrong. A too-deep record is reported as such even when an invalid
/// literal comes first in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ScanError {
    TooDeep,
    /// A number literal that overflows a double; the literal (cut to 40 bytes).
    NumberOutOfRange(String),
    /// A `\uXXXX` escape of a surrogate that is not half of a pair; the escape.
    LoneSurrogate(String),
}

/// Number literals shorter than this and without an exponent cannot overflow a double
/// (its largest finite value has 309 integer digits).
const SAFE_PLAIN_NUMBER_LEN: usize = 300;

/// Scans `text`, stopping early once nesting exceeds `max_depth`.
pub(super) fn scan(text: &[u8], max_depth: usize) -> Result<(), ScanError> {
    let mut depth = 0usize;
    let mut invalid = None;
    let n = text.len();
    let mut i = 0;
    while i < n {
        match text[i] {
            b'"' => {
                i += 1;
                loop {
                    // To the closing quote or the next escape: most of a record is string
                    // contents, so this skips them a word at a time.
                    i = string_run_end(text, i);
                    if i >= n || text[i] == b'"' {
                        break;
                    }
                    // A backslash.
                    if text.get(i + 1) == Some(&b'u') {
                        match surrogate_escape(text, i) {
                            Escape::Pair => i += 6,
                            Escape::Lone(e) => {
                                invalid.get_or_insert(ScanError::LoneSurrogate(e));
                            }
                            Escape::Other => {}
                        }
                    }
                    i += 2;
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ScanError::TooDeep);
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                let mut exponent = false;
                while i < n && matches!(text[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    exponent |= matches!(text[i], b'e' | b'E');
                    i += 1;
                }
                let literal = &text[start..i];
                if invalid.is_none() && number_out_of_range(literal, exponent) {
                    let shown = String::from_utf8_lossy(&literal[..literal.len().min(40)]);
                    invalid = Some(ScanError::NumberOutOfRange(shown.into_owned()));
                }
            }
            _ => i += 1,
        }
    }
    match invalid {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The index of the first `"` or `\\` in `text` at or after `from` (`text.len()`, or
/// `from` if beyond it, when there is none): eight bytes at a time while a word holds
/// neither, with the bit trick "has a zero byte" (exact), then byte by byte.
pub(super) fn string_run_end(text: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut i = from;
    while let Some(chunk) = text.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if has_zero(word ^ (ONES * u64::from(b'"'))) || has_zero(word ^ (ONES * u64::from(b'\\'))) {
            break;
        }
        i += 8;
    }
    while i < text.len() && text[i] != b'"' && text[i] != b'\\' {
        i += 1;
    }
    i
}

/// Whether a number literal (with an `e` or `E` in it if `exponent`) is beyond a double's
/// range: the cheap length and exponent test first, then the parse.
pub(super) fn number_out_of_range(literal: &[u8], exponent: bool) -> bool {
    (exponent || literal.len() >= SAFE_PLAIN_NUMBER_LEN) && overflows(literal)
}

/// Whether a well-formed number literal reads as an infinite double. A malformed one is
/// left for the parser to report.
fn overflows(literal: &[u8]) -> bool {
    std::str::from_utf8(literal)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .is_some_and(f64::is_infinite)
}

enum Escape {
    /// A high surrogate escape followed by a low one: 12 bytes.
    Pair,
    Lone(String),
    /// Not a surrogate (or malformed, which the parser reports).
    Other,
}

/// Classifies the `\uXXXX` escape starting at `text[at]` (the backslash).
fn surrogate_escape(text: &[u8], at: usize) -> Escape {
    let hex = |from: usize| -> Option<u16> {
        let digits = text.get(from..from + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let Some(unit) = hex(at + 2) else {
        return Escape::Other;
    };
    let shown = || String::from_utf8_lossy(&text[at..at + 6]).into_owned();
    match unit {
        0xD800..=0xDBFF => {
            let low_follows = text.get(at + 6..at + 8) == Some(b"\\u")
                && hex(at + 8).is_some_and(|u| (0xDC00..=0xDFFF).contains(&u));
            if low_follows {
                Escape::Pair
            } else {
                Escape::Lone(shown())
            }
        }
        0xDC00..=0xDFFF => Escape::Lone(shown()),
        _ => Escape::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), ScanError> {
        scan(text.as_bytes(), 8)
    }

    #[test]
    fn depth() {
        assert_eq!(check("[[[[[[[[]]]]]]]]"), Ok(()));
        assert_eq!(check("[[[[[[[[[]]]]]]]]]"), Err(ScanError::TooDeep));
        assert_eq!(check(r#"{"a":"[[[[[[[[[[[[[[[\"[[["}"#), Ok(()));
    }

    #[test]
    fn numbers_beyond_a_double() {
        assert_eq!(check(r#"{"v":1e308,"w":-2.5E-400,"x":0e999}"#), Ok(()));
        for bad in ["1e400", "-1E+400", "1.5e309", &"9".repeat(310)] {
            let text = format!(r#"{{"v":[{bad}]}}"#);
            assert!(
                matches!(check(&text), Err(ScanError::NumberOutOfRange(_))),
                "{bad}"
            );
        }
        assert_eq!(check(&format!("[{}]", "9".repeat(305))), Ok(()));
        // In a string it is text, not a number.
        assert_eq!(check(r#"{"v":"1e400"}"#), Ok(()));
        // true/false contain an 'e' but are not numbers.
        assert_eq!(check(r#"[true,false,1]"#), Ok(()));
    }

    #[test]
    fn surrogates() {
        assert_eq!(check(r#"["\ud83d\ude00","\u00e9","\\ud800"]"#), Ok(()));
        for bad in [
            r#"["\ud800"]"#,
            r#"["\udc00\ud800"]"#,
            r#"["\uDBFFx"]"#,
            r#"{"\ud800":1}"#,
        ] {
            assert!(
                matches!(check(bad), Err(ScanError::LoneSurrogate(_))),
                "{bad}"
            );
        }
    }

    /// The word-at-a-time skip finds the same byte as a plain search, for every byte value
    /// at every position of a word and across word boundaries.
    #[test]
    fn string_runs_end_at_the_first_quote_or_backslash() {
        let plain = |text: &[u8], from: usize| {
            (from..text.len())
                .find(|&i| text[i] == b'"' || text[i] == b'\\')
                .unwrap_or(text.len().max(from))
        };
        for b in 0..=255u8 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 24] {
                for pos in 0..len {
                    let mut text = vec![b'a'; len];
                    text[pos] = b;
                    for from in 0..=len + 2 {
                        assert_eq!(
                            string_run_end(&text, from),
                            plain(&text, from),
                            "{b:#x} at {pos} of {len}, from {from}"
                        );
                    }
                }
            }
        }
    }

    /// Escapes and closing quotes past the first words of long strings are still seen.
    #[test]
    fn long_strings_keep_their_escapes() {
        let pad = "abcdefghijklmnopqrstuvw";
        for cut in 0..pad.len() {
            let (a, b) = pad.split_at(cut);
            assert_eq!(
                check(&format!(r#"{{"k{a}":"{a}\ud800{b}"}}"#)),
                Err(ScanError::LoneSurrogate("\\ud800".into())),
                "{cut}"
            );
            // An escaped quote does not end the string: the brackets after it are text.
            assert_eq!(check(&format!(r#"["{a}\"[[[[[[[[[{b}"]"#)), Ok(()), "{cut}");
            assert_eq!(
                check(&format!(r#"["{a}\\",[[[[[[[[[{b}]]]]]]]]]]"#)),
                Err(ScanError::TooDeep),
                "{cut}"
            );
        }
    }

    #[test]
    fn too_deep_wins_over_an_earlier_invalid_literal() {
        assert_eq!(
            check(r#"[1e400,[[[[[[[[[]]]]]]]]]]"#),
            Err(ScanError::TooDeep)
        );
    }
}
