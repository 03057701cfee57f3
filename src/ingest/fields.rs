//! Reading the canonical fields out of a record's top-level members: each field from the
//! first of its aliases present, with the rejection a wrong value gets.

use std::borrow::Cow;

use super::event::AttrValue;
use super::event_type::normalize_event_type;
use super::normalize::{reject, RejectReason, Rejection};
use super::raw_json::{classify, integer_literal, kind_name, Scalar};
use super::timestamp;

/// A record's top-level members, in order.
pub(super) type Pairs<'a, 'r> = [(Cow<'a, str>, &'r str)];

/// The rejection for a value that is not valid JSON after all (see [`Scalar::Invalid`]).
pub(super) fn invalid_value(field: &str) -> Rejection {
    Rejection {
        reason: RejectReason::InvalidJson,
        message: format!("invalid JSON: {field} holds a string or number that cannot be read"),
    }
}

/// Finds the first alias present among `members`; returns its index.
fn find(members: &Pairs<'_, '_>, aliases: &[String]) -> Option<usize> {
    aliases
        .iter()
        .find_map(|a| members.iter().position(|(k, _)| k == a))
}

/// The first alias present among `members`, its index recorded in `used`.
fn take<'m, 'a, 'r>(
    members: &'m Pairs<'a, 'r>,
    aliases: &[String],
    used: &mut Vec<usize>,
) -> Option<&'m (Cow<'a, str>, &'r str)> {
    let i = find(members, aliases)?;
    used.push(i);
    Some(&members[i])
}

/// A string trimmed, `None` when nothing is left.
fn non_blank(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|t| !t.is_empty())
}

/// The rejection of a member that is not a string.
fn not_a_string<T>(name: &str, raw: &str) -> Result<T, Rejection> {
    reject(
        RejectReason::WrongType,
        format!("{name} is {}; expected a string", kind_name(raw)),
    )
}

/// The customer id, from every alias present: they must all agree, as identity is never
/// guessed. A null alias counts as absent. Records the indices of the aliases in `used`.
pub(super) fn customer_id(
    members: &Pairs<'_, '_>,
    aliases: &[String],
    used: &mut Vec<usize>,
) -> Result<String, Rejection> {
    let mut found: Option<(&str, String)> = None;
    let mut null_alias = None;
    for alias in aliases {
        let Some(i) = members.iter().position(|(k, _)| k == alias) else {
            continue;
        };
        used.push(i);
        let (name, raw) = &members[i];
        let id = match classify(raw) {
            Scalar::Null => {
                null_alias.get_or_insert(&**name);
                continue;
            }
            Scalar::Int(i) => i.to_string(),
            Scalar::Str(s) => {
                let t = s.trim();
                if t.is_empty() {
                    return reject(RejectReason::EmptyField, format!("{name} is empty"));
                }
                t.to_string()
            }
            // An integer beyond 64 bits keeps its exact digits (never through a double).
            Scalar::Float(_) if integer_literal(raw).is_some() => raw.to_string(),
            Scalar::Invalid => return Err(invalid_value(name)),
            _ => {
                return reject(
                    RejectReason::WrongType,
                    format!(
                        "{name} is {} ({}); expected a string or an integer",
                        kind_name(raw),
                        raw
                    ),
                )
            }
        };
        match &found {
            None => found = Some((name, id)),
            Some((first, first_id)) if *first_id != id => {
                return reject(
                    RejectReason::DuplicateKey,
                    format!(
                        "{first} is '{first_id}' but {name} is '{id}': two different customer ids in one record are never guessed between"
                    ),
                )
            }
            Some(_) => {}
        }
    }
    match (found, null_alias) {
        (Some((_, id)), _) => Ok(id),
        (None, Some(name)) => reject(RejectReason::MissingField, format!("{name} is null")),
        (None, None) => reject(
            RejectReason::MissingField,
            format!("no customer id (looked for {})", aliases.join(", ")),
        ),
    }
}

/// A value read as a number: `None` for null, a number or a numeric string.
fn number_of(v: &AttrValue, field: &str) -> Result<Option<f64>, Rejection> {
    match v {
        AttrValue::Null => Ok(None),
        AttrValue::Int(i) => Ok(Some(*i as f64)),
        AttrValue::Float(f) => Ok(Some(*f)),
        AttrValue::Str(s) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Some(f)),
            _ => reject(
                RejectReason::WrongType,
                format!("{field} is the string '{s}'; expected a number"),
            ),
        },
        AttrValue::Bool(_) => reject(
            RejectReason::WrongType,
            format!("{field} is a boolean; expected a number"),
        ),
        AttrValue::Json(_) => reject(
            RejectReason::WrongType,
            format!("{field} is an array or object; expected a number"),
        ),
    }
}

/// Lower-cases, without the Unicode machinery when there is nothing to do.
pub(super) fn lower(s: &str) -> String {
    if s.bytes().all(|c| c.is_ascii() && !c.is_ascii_uppercase()) {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

/// The event type, normalized; records its index in `used`.
pub(super) fn event_type(
    members: &Pairs<'_, '_>,
    aliases: &[String],
    used: &mut Vec<usize>,
) -> Result<String, Rejection> {
    let Some((tname, traw)) = take(members, aliases, used) else {
        return reject(
            RejectReason::MissingField,
            format!("no event type (looked for {})", aliases.join(", ")),
        );
    };
    let event_type = match classify(traw) {
        Scalar::Null => return reject(RejectReason::MissingField, format!("{tname} is null")),
        Scalar::Str(s) => normalize_event_type(&s),
        Scalar::Invalid => return Err(invalid_value(tname)),
        _ => return not_a_string(tname, traw),
    };
    if event_type.is_empty() {
        return reject(RejectReason::EmptyField, format!("{tname} is empty"));
    }
    Ok(event_type)
}

/// The event time the record itself carries, in epoch milliseconds (`None`: absent or
/// null); records its index in `used`.
pub(super) fn event_time(
    members: &Pairs<'_, '_>,
    aliases: &[String],
    used: &mut Vec<usize>,
) -> Result<Option<i64>, Rejection> {
    let Some((name, raw)) = take(members, aliases, used) else {
        return Ok(None);
    };
    let parsed = match classify(raw) {
        Scalar::Null => None,
        Scalar::Str(s) => Some(timestamp::parse(&s)),
        Scalar::Int(n) => Some(timestamp::from_epoch(n as f64)),
        Scalar::Float(f) => Some(timestamp::from_epoch(f)),
        Scalar::Invalid => return Err(invalid_value(name)),
        Scalar::Bool(_) | Scalar::Object | Scalar::Array => {
            return reject(
                RejectReason::WrongType,
                format!(
                    "{name} is {}; expected a date-time string or epoch seconds/milliseconds",
                    kind_name(raw)
                ),
            )
        }
    };
    match parsed {
        None => Ok(None),
        Some(Ok(ms)) => Ok(Some(ms)),
        Some(Err(why)) => reject(RejectReason::InvalidTimestamp, format!("{name} {why}")),
    }
}

/// The event id the record carries: a non-blank string (trimmed) or an integer, exact
/// digits kept; records its index in `used`.
pub(super) fn event_id(
    members: &Pairs<'_, '_>,
    aliases: &[String],
    used: &mut Vec<usize>,
) -> Result<Option<String>, Rejection> {
    let Some((name, raw)) = take(members, aliases, used) else {
        return Ok(None);
    };
    match classify(raw) {
        Scalar::Null => Ok(None),
        Scalar::Int(n) => Ok(Some(n.to_string())),
        // An integer beyond 64 bits keeps its exact digits.
        Scalar::Float(_) if integer_literal(raw).is_some() => Ok(Some(raw.to_string())),
        Scalar::Invalid => Err(invalid_value(name)),
        Scalar::Str(s) => Ok(non_blank(&s).map(str::to_string)),
        _ => not_a_string(name, raw),
    }
}

/// The source the record names, lower-cased (`None`: absent, null or blank); records its
/// index in `used`.
pub(super) fn source(
    members: &Pairs<'_, '_>,
    aliases: &[String],
    used: &mut Vec<usize>,
) -> Result<Option<String>, Rejection> {
    let Some((name, raw)) = take(members, aliases, used) else {
        return Ok(None);
    };
    match classify(raw) {
        Scalar::Null => Ok(None),
        Scalar::Invalid => Err(invalid_value(name)),
        Scalar::Str(s) => Ok(non_blank(&s).map(lower)),
        _ => not_a_string(name, raw),
    }
}

/// Takes the event's value out of the flattened `attributes`: the first of `candidates`
/// present, read as a number.
pub(super) fn take_value<'c>(
    attributes: &mut Vec<(String, AttrValue)>,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Result<Option<f64>, Rejection> {
    for field in candidates {
        if let Some(pos) = attributes.iter().position(|(k, _)| k == field) {
            let (name, v) = attributes.remove(pos);
            return number_of(&v, &name);
        }
        // A non-empty object there was flattened to `field.*`: not a number either.
        if attributes.iter().any(|(k, _)| {
            k.len() > field.len() && k.starts_with(field) && k.as_bytes()[field.len()] == b'.'
        }) {
            return reject(
                RejectReason::WrongType,
                format!("{field} is an object; expected a number"),
            );
        }
    }
    Ok(None)
}
