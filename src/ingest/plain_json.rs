//! The normalizer's fast path: splitting a record that is a plain JSON object into its
//! members without serde_json, refusing (for serde_json to decide) anything it is not sure
//! of.

use std::borrow::Cow;

/// Nesting the plain-object reader follows before it leaves the record to serde_json.
const PLAIN_MAX_DEPTH: usize = 32;

/// The members of a top-level JSON object, keys borrowed and values raw, when `text` is one
/// in the plain form records take: the fast path of the normalizer's parse (serde_json's
/// member-by-member deserialization was ~3,000 instructions per seed-shaped record).
/// `None` for anything else — invalid JSON, or valid JSON with a backslash escape or a
/// control character in a string, or nested deeper than [`PLAIN_MAX_DEPTH`] — and the
/// caller parses the text with serde_json, which decides and words any error. So this
/// only has to accept nothing serde_json refuses and to split what it accepts the same way
/// (the tests below compare the two on generated and damaged texts).
///
/// It also refuses whatever [`scan`](super::scan::scan) with `max_depth` would reject — a
/// container nested deeper than that, a number literal beyond a double's range (a lone
/// surrogate needs an escape, which it refuses anyway) — so a record it splits needs no
/// scan: one pass over the bytes instead of two (the scan was 12 % of normalize's
/// instructions).
pub(super) fn plain_object_members(
    text: &str,
    max_depth: usize,
) -> Option<Vec<(Cow<'_, str>, &str)>> {
    if max_depth == 0 {
        return None;
    }
    let b = text.as_bytes();
    let mut p = Plain {
        b,
        i: 0,
        max_depth: max_depth.min(PLAIN_MAX_DEPTH),
        // Without any byte below 0x20 (the usual record: no newlines either), strings are
        // skipped a word at a time; otherwise byte by byte, refusing control characters.
        controls: b.iter().fold(false, |any, &c| any | (c < 0x20)),
    };
    p.ws();
    p.eat(b'{')?;
    p.ws();
    let mut out = Vec::with_capacity(16);
    if !p.eat_if(b'}') {
        loop {
            let key = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let start = p.i;
            p.value(1)?;
            out.push((Cow::Borrowed(&text[key]), &text[start..p.i]));
            p.ws();
            if p.eat_if(b',') {
                p.ws();
            } else {
                p.eat(b'}')?;
                break;
            }
        }
    }
    p.ws();
    (p.i == p.b.len()).then_some(out)
}

/// The reader of [`plain_object_members`]: `b[i..]` is what is left.
struct Plain<'a> {
    b: &'a [u8],
    i: usize,
    /// Containers nested deeper than this are left to serde_json (and the scan).
    max_depth: usize,
    /// Whether the text holds a byte below 0x20 anywhere.
    controls: bool,
}

impl Plain<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// JSON whitespace, as serde_json skips it.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat_if(&mut self, c: u8) -> bool {
        let found = self.peek() == Some(c);
        self.i += usize::from(found);
        found
    }

    /// `c` at `at`: the reader moves past it.
    fn eat_at(&mut self, at: usize, c: u8) -> Option<()> {
        (self.b.get(at) == Some(&c)).then(|| self.i = at + 1)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.eat_if(c).then_some(())
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - from
    }

    /// A string without escapes or control characters; the range of its contents.
    fn string(&mut self) -> Option<std::ops::Range<usize>> {
        self.eat(b'"')?;
        let from = self.i;
        if !self.controls {
            let end = super::scan::string_run_end(self.b, from);
            self.eat_at(end, b'"')?;
            return Some(from..end);
        }
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(from..self.i - 1);
                }
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    /// One value of any kind; `depth` counts the objects and arrays it is inside (the
    /// top-level object included), so a container here would be at `depth + 1`.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth >= self.max_depth => None,
            b'{' => {
                self.i += 1;
                self.ws();
                if self.eat_if(b'}') {
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    if self.eat_if(b',') {
                        self.ws();
                    } else {
                        return self.eat(b'}');
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.eat_if(b']') {
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    if self.eat_if(b',') {
                        self.ws();
                    } else {
                        return self.eat(b']');
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let rest = self.b.get(self.i..)?;
        rest.starts_with(word).then(|| self.i += word.len())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, JSON's number grammar, and within
    /// a double's range (as the scan checks it). What follows is checked by the caller (a
    /// separator, a closing bracket or whitespace).
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        self.eat_if(b'-');
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat_if(b'.') && self.digits() == 0 {
            return None;
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if exponent {
            self.i += 1;
            if !self.eat_if(b'+') {
                self.eat_if(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        (!super::scan::number_out_of_range(&self.b[start..self.i], exponent)).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::raw_json::Members;
    use crate::ingest::scan::scan;
    use proptest::prelude::*;
    use serde::de;

    /// serde_json's split of a record, as the normalizer took it before the plain reader.
    fn serde_split(text: &str) -> Option<Vec<(String, String)>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let Members(m) = <Members<'_> as de::Deserialize>::deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(
            m.iter()
                .map(|(k, v)| (k.to_string(), v.get().to_string()))
                .collect(),
        )
    }

    fn plain_split(text: &str) -> Option<Vec<(String, String)>> {
        plain_object_members(text, 64).map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    }

    #[test]
    fn the_plain_reader_splits_plain_records_as_serde_json_does() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        for text in [
            "{}",
            " {\n} ",
            r#"{"a":1}"#,
            r#"{ "a" : -1.5e3 , "b" : "x,}]" , "c":{"d":[1,{"e":"}"}],"f":{}} ,"g":null}"#,
            r#"{"a":0,"b":-0.0,"c":1E+2,"d":2e-3,"e":true,"f":false,"g":[ ],"h":"é"}"#,
            "{\n\t\"a\"\r\n:\n\"b\"\n}",
            r#"{"a":1,"a":2}"#,
        ] {
            let plain = plain_split(text);
            assert!(plain.is_some(), "{text}");
            assert_eq!(plain, serde_split(text), "{text}");
        }
        // Valid, but left to serde_json: escapes, deep nesting.
        for text in [
            r#"{"a\"b":1}"#,
            r#"{"a":"caf\u00e9"}"#,
            r#"{"a":["\n"]}"#,
            &deep,
        ] {
            assert!(serde_split(text).is_some(), "{text}");
            assert!(plain_split(text).is_none(), "{text}");
        }
        // Invalid JSON: refused by both.
        for text in [
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e+}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a" 1}"#,
            r#"{'a':1}"#,
            r#"{"a":tru}"#,
            r#"{"a":truex}"#,
            r#"{"a":NaN}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":1}x"#,
            r#"{"a":1} {}"#,
            r#"{"a":1"#,
            r#"{"a":"1}"#,
            r#"[1]"#,
        ] {
            assert!(serde_split(text).is_none(), "{text}");
            assert!(plain_split(text).is_none(), "{text}");
        }
    }

    #[test]
    fn the_plain_reader_refuses_what_the_scan_rejects() {
        let digits = "9".repeat(400);
        for (text, depth) in [
            (r#"{"a":1e400}"#.to_string(), 64),
            (r#"{"a":[0,-2E+999]}"#.to_string(), 64),
            (format!(r#"{{"a":{digits}}}"#), 64),
            (r#"{"a":{"b":{}}}"#.to_string(), 2),
            (r#"{"a":[[]]}"#.to_string(), 2),
            (r#"{"a":[]}"#.to_string(), 1),
            (r#"{"a":1}"#.to_string(), 0),
        ] {
            assert!(scan(text.as_bytes(), depth).is_err(), "{text}");
            assert!(plain_object_members(&text, depth).is_none(), "{text}");
        }
        let digits = "9".repeat(299);
        for (text, depth) in [
            (r#"{"a":1e300,"b":-1.5E+2,"c":1e-400}"#.to_string(), 64),
            (format!(r#"{{"a":{digits}}}"#), 64),
            (r#"{"a":{"b":1},"c":[1]}"#.to_string(), 2),
            (r#"{"a":1}"#.to_string(), 1),
        ] {
            assert!(scan(text.as_bytes(), depth).is_ok(), "{text}");
            assert!(plain_object_members(&text, depth).is_some(), "{text}");
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z é\"\\\\\u{1}]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(("[a-z]{0,3}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Characters that make damaged JSON interesting.
    const ALPHABET: &[char] = &[
        '{', '}', '[', ']', ',', ':', '"', '\\', ' ', '\n', '0', '1', '9', '.', 'e', 'E', '+', '-',
        't', 'f', 'n', 'u', 'l', 'a', '\u{1}',
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the plain reader accepts, serde_json accepts and splits the same way;
        /// records without escapes it does accept.
        #[test]
        fn the_plain_reader_accepts_only_what_serde_json_accepts(
            members in proptest::collection::vec(("[a-z_]{0,4}", json_value()), 0..6),
            pretty in any::<bool>(),
            edits in proptest::collection::vec(
                (any::<prop::sample::Index>(), 0..3u8, any::<prop::sample::Index>()),
                0..3,
            ),
        ) {
            let object = serde_json::Value::Object(members.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&object).unwrap()
            } else {
                serde_json::to_string(&object).unwrap()
            };
            let plain = plain_split(&text);
            prop_assert_eq!(plain.is_some(), !text.contains('\\'), "{}", text);
            if plain.is_some() {
                prop_assert_eq!(&plain, &serde_split(&text), "{}", text);
            }
            let mut chars: Vec<char> = text.chars().collect();
            for (at, op, c) in edits {
                let c = ALPHABET[c.index(ALPHABET.len())];
                let i = at.index(chars.len() + 1);
                match op {
                    0 if i < chars.len() => {
                        chars.remove(i);
                    }
                    1 if i < chars.len() => chars[i] = c,
                    _ => chars.insert(i, c),
                }
            }
            let damaged: String = chars.into_iter().collect();
            if let Some(split) = plain_split(&damaged) {
                prop_assert_eq!(Some(split), serde_split(&damaged), "{}", damaged);
            }
            // What it splits needs no scan, and it refuses for depth only what the scan
            // rejects.
            for t in [&text, &damaged] {
                for depth in 1..6 {
                    let plain = plain_object_members(t, depth).is_some();
                    let scanned = scan(t.as_bytes(), depth).is_ok();
                    prop_assert!(!plain || scanned, "depth {}: {}", depth, t);
                    if plain_split(t).is_some() {
                        prop_assert_eq!(plain, scanned, "depth {}: {}", depth, t);
                    }
                }
            }
        }

        /// Number literals: accepted exactly when the scan finds them within a double's range.
        #[test]
        fn the_plain_reader_takes_the_numbers_the_scan_takes(
            literal in "-?(0|[1-9][0-9]{0,320})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,4})?",
        ) {
            let text = format!(r#"{{"n":{literal},"m":[{literal}]}}"#);
            let plain = plain_object_members(&text, 64).is_some();
            prop_assert_eq!(plain, scan(text.as_bytes(), 64).is_ok(), "{}", text);
        }
    }
}
