//! Reading raw JSON without building a `serde_json::Value` tree: top-level members with
//! borrowed keys and raw values, scalar classification, and flattening nested objects into
//! dotted attributes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::event::AttrValue;

/// A key that borrows from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The members of one JSON object, in order, values still raw.
pub(super) struct Members<'de>(pub(super) Vec<(Cow<'de, str>, &'de RawValue)>);

impl<'de> de::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A raw JSON scalar, classified.
pub(super) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Object,
    Array,
    /// Text the pre-parse scan (`super::scan`) should have refused: a string that does not
    /// unescape or a number that does not read as a finite double.
    Invalid,
}

/// The raw text of an integer literal (`-?[0-9]+`), whatever its size.
pub(super) fn integer_literal(s: &str) -> Option<&str> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// What a value's raw text holds.
pub(super) fn classify(s: &str) -> Scalar<'_> {
    match s.as_bytes().first() {
        Some(b'n') => Scalar::Null,
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'{') => Scalar::Object,
        Some(b'[') => Scalar::Array,
        // Borrow when there is nothing to unescape (serde's Cow impl always allocates).
        Some(b'"') if s.len() >= 2 && !s.as_bytes().contains(&b'\\') => {
            Scalar::Str(Cow::Borrowed(&s[1..s.len() - 1]))
        }
        Some(b'"') => serde_json::from_str::<String>(s)
            .map_or(Scalar::Invalid, |o| Scalar::Str(Cow::Owned(o))),
        _ => {
            if let Ok(i) = s.parse::<i64>() {
                Scalar::Int(i)
            } else {
                match s.parse::<f64>() {
                    Ok(f) if f.is_finite() => Scalar::Float(f),
                    _ => Scalar::Invalid,
                }
            }
        }
    }
}

pub(super) fn kind_name(raw: &str) -> &'static str {
    match classify(raw) {
        Scalar::Null => "null",
        Scalar::Bool(_) => "a boolean",
        Scalar::Int(_) => "an integer",
        Scalar::Float(_) => "a float",
        Scalar::Str(_) => "a string",
        Scalar::Object => "an object",
        Scalar::Array => "an array",
        Scalar::Invalid => "invalid JSON",
    }
}

/// A value inside the record that is not valid JSON after all (see [`Scalar::Invalid`]);
/// the dotted path of the attribute.
#[derive(Debug)]
pub(super) struct InvalidAt(pub(super) String);

/// Appends `raw` as attributes named from `prefix`: scalars as they are, objects flattened
/// to dotted paths (an empty one kept as `{}`), arrays as compact JSON text.
/// `raw` is a value's raw text, valid JSON (a member value serde_json or the plain reader
/// has read).
pub(super) fn flatten(
    prefix: &str,
    raw: &str,
    out: &mut Vec<(String, AttrValue)>,
) -> Result<(), InvalidAt> {
    let value = match classify(raw) {
        Scalar::Invalid => return Err(InvalidAt(prefix.to_string())),
        Scalar::Null => AttrValue::Null,
        Scalar::Bool(b) => AttrValue::Bool(b),
        Scalar::Int(i) => AttrValue::Int(i),
        Scalar::Float(f) => AttrValue::Float(f),
        Scalar::Str(s) => AttrValue::Str(s.into_owned()),
        // Compacted through a `Value`; its only failure after the scan is serde_json's
        // recursion limit (128) under a configured `max_depth` above it: kept as written.
        Scalar::Array => AttrValue::Json(
            serde_json::from_str::<serde_json::Value>(raw)
                .map_or_else(|_| raw.to_string(), |v| v.to_string()),
        ),
        Scalar::Object => {
            // Split without a second serde_json parse; the text was validated when the
            // record was read (kept as a fallback should the split ever disagree).
            let members = match object_members(raw) {
                Some(m) => m,
                None => match serde_json::from_str::<Members<'_>>(raw) {
                    Ok(Members(m)) => m.into_iter().map(|(k, v)| (k, v.get())).collect(),
                    Err(_) => return Err(InvalidAt(prefix.to_string())),
                },
            };
            if members.is_empty() {
                out.push((prefix.to_string(), AttrValue::Json("{}".into())));
            }
            let mut path = String::with_capacity(prefix.len() + 16);
            for (k, v) in members {
                path.clear();
                path.push_str(prefix);
                path.push('.');
                path.push_str(&k);
                flatten(&path, v, out)?;
            }
            return Ok(());
        }
    };
    out.push((prefix.to_string(), value));
    Ok(())
}

/// The members of the text of a JSON object that serde_json has already read as valid (a
/// raw member value of the record), split without parsing it again: keys unescaped only
/// when they hold an escape (as serde_json does), values as their raw text without the
/// surrounding whitespace. `None` when the text is not a single object.
fn object_members(text: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, i)?;
        let quoted = &text[i..key_end];
        let inner = &quoted[1..quoted.len() - 1];
        let key = if inner.contains('\\') {
            Cow::Owned(serde_json::from_str::<String>(quoted).ok()?)
        } else {
            Cow::Borrowed(inner)
        };
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value_end = value_end(b, i)?;
        out.push((key, &text[i..value_end]));
        i = skip_ws(b, value_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string starting at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// The index after the value starting at `start`.
fn value_end(b: &[u8], start: usize) -> Option<usize> {
    match *b.get(start)? {
        b'"' => string_end(b, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = start;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split agrees with serde_json's parse of the same object, escapes, nesting,
    /// whitespace and all.
    #[test]
    fn object_members_split_as_serde_json_reads_them() {
        for text in [
            r#"{}"#,
            r#" { } "#,
            r#"{"a":1}"#,
            r#"{ "a" : -1.5e3 , "b\"q" : "x,}\"]" , "c":{"d":[1,{"e":"}"}],"f":{}} ,"g":null}"#,
            r#"{"k\u00e9":true,"l":"caf\u00e9","m":[ ],"n":"\\"}"#,
            "{\n\t\"a\"\r\n:\n\"b\"\n}",
        ] {
            let Members(expected) = serde_json::from_str::<Members<'_>>(text).unwrap();
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.get().to_string()))
                .collect();
            let got: Vec<(String, String)> = object_members(text)
                .unwrap_or_else(|| panic!("no split of {text}"))
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, expected, "{text}");
        }
        for not_one_object in [r#"[]"#, r#"{"a":1} {}"#, r#"{"a":1"#, r#"{"a"}"#] {
            assert!(object_members(not_one_object).is_none(), "{not_one_object}");
        }
    }
}
