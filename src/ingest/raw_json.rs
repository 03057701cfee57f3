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
pub(super) fn integer_literal(raw: &RawValue) -> Option<&str> {
    let s = raw.get();
    let digits = s.strip_prefix('-').unwrap_or(s);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

pub(super) fn classify(raw: &RawValue) -> Scalar<'_> {
    let s = raw.get();
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

pub(super) fn kind_name(raw: &RawValue) -> &'static str {
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
pub(super) fn flatten(
    prefix: &str,
    raw: &RawValue,
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
            serde_json::from_str::<serde_json::Value>(raw.get())
                .map_or_else(|_| raw.get().to_string(), |v| v.to_string()),
        ),
        Scalar::Object => {
            let Ok(Members(members)) = serde_json::from_str::<Members<'_>>(raw.get()) else {
                return Err(InvalidAt(prefix.to_string()));
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
