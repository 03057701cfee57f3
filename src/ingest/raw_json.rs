//! Reading raw JSON without building a `serde_json::Value` tree: top-level members with
//! borrowed keys and raw values, scalar classification, a nesting-depth scan, and
//! flattening nested objects into dotted attributes.

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
        Some(b'"') => {
            serde_json::from_str::<String>(s).map_or(Scalar::Null, |o| Scalar::Str(Cow::Owned(o)))
        }
        _ => {
            if let Ok(i) = s.parse::<i64>() {
                Scalar::Int(i)
            } else {
                s.parse::<f64>().map_or(Scalar::Null, Scalar::Float)
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
    }
}

/// Deepest nesting of arrays/objects, stopping early once over `limit`.
pub(super) fn depth_exceeds(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in text {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

pub(super) fn flatten(prefix: &str, raw: &RawValue, out: &mut Vec<(String, AttrValue)>) {
    let value = match classify(raw) {
        Scalar::Null => AttrValue::Null,
        Scalar::Bool(b) => AttrValue::Bool(b),
        Scalar::Int(i) => AttrValue::Int(i),
        Scalar::Float(f) => AttrValue::Float(f),
        Scalar::Str(s) => AttrValue::Str(s.into_owned()),
        Scalar::Array => {
            let compact = serde_json::from_str::<serde_json::Value>(raw.get())
                .map(|v| v.to_string())
                .unwrap_or_else(|_| raw.get().to_string());
            AttrValue::Json(compact)
        }
        Scalar::Object => {
            if let Ok(Members(members)) = serde_json::from_str::<Members<'_>>(raw.get()) {
                if members.is_empty() {
                    out.push((prefix.to_string(), AttrValue::Json("{}".into())));
                }
                let mut path = String::with_capacity(prefix.len() + 16);
                for (k, v) in members {
                    path.clear();
                    path.push_str(prefix);
                    path.push('.');
                    path.push_str(&k);
                    flatten(&path, v, out);
                }
            }
            return;
        }
    };
    out.push((prefix.to_string(), value));
}
