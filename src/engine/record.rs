//! The unit of data flowing through a topology.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Where a record was read from: its Kafka coordinates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourcePosition {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}@{}", self.topic, self.partition, self.offset)
    }
}

/// Record headers, in order; a name may repeat (as in Kafka). Names are usually constants
/// and values are shared, so copying headers onto many records (the positions header on
/// every changelog record of a commit) allocates nothing per header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(Cow<'static, str>, Arc<[u8]>)>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Appends a header, keeping any earlier one with the same name.
    pub fn push(&mut self, name: impl Into<Cow<'static, str>>, value: impl AsRef<[u8]>) {
        self.0.push((name.into(), Arc::from(value.as_ref())));
    }

    /// [`push`](Self::push) of a value shared with other records, without copying it.
    pub fn push_shared(&mut self, name: impl Into<Cow<'static, str>>, value: Arc<[u8]>) {
        self.0.push((name.into(), value));
    }

    /// The last value of `name`, as Kafka clients' `lastHeader`.
    pub fn last(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
    }

    /// The last value of `name` as UTF-8 text, if it is valid UTF-8.
    pub fn last_str(&self, name: &str) -> Option<&str> {
        self.last(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (&**n, &v[..]))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, Vec<u8>)> for Headers {
    fn from_iter<T: IntoIterator<Item = (String, Vec<u8>)>>(iter: T) -> Self {
        Headers(
            iter.into_iter()
                .map(|(n, v)| (Cow::Owned(n), Arc::from(v)))
                .collect(),
        )
    }
}

/// A key/value record with headers, an event timestamp (epoch milliseconds) and, when it
/// came from Kafka, the position it was read at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Headers,
    /// Epoch milliseconds. Drives stream time.
    pub timestamp: i64,
    pub source: Option<SourcePosition>,
}

impl Record {
    /// A record with a value and timestamp, no key, no headers.
    pub fn new(value: impl Into<Vec<u8>>, timestamp: i64) -> Self {
        Record {
            value: Some(value.into()),
            timestamp,
            ..Record::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The record's headers, replacing any it has.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Where the record came from (an output keeps its input's position; a dead letter
    /// raised after a repartition, the original one).
    pub fn with_source(mut self, source: Option<SourcePosition>) -> Self {
        self.source = source;
        self
    }

    /// A keyed record without a value (a tombstone, or a tick that only carries time).
    pub fn valueless(key: impl Into<Vec<u8>>, timestamp: i64) -> Self {
        Record {
            key: Some(key.into()),
            timestamp,
            ..Record::default()
        }
    }

    /// Adds a header after the ones it has.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl AsRef<[u8]>,
    ) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Approximate size in bytes, for in-flight accounting.
    pub fn size_hint(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }
}
