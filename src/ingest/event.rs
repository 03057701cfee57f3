//! The compact binary form of the [`CanonicalEvent`] on the internal `events-by-customer`
//! topic. The event itself is the shared domain type of [`crate::domain::event`].
//!
//! Format version 1 is the layout bincode 2's standard configuration gives the event (it
//! was written with bincode until issue 15): after the version byte, the fields in
//! declaration order; unsigned integers as bincode varints (one byte below 251, else a
//! marker 251/252/253 and 2, 4 or 8 little-endian bytes), signed ones zigzag-mapped first;
//! strings and lists as a varint length and their contents; `f64` as 8 little-endian bytes;
//! an `Option` as a 0/1 byte; an enum variant as its index (a varint). The codec here is
//! written out by hand (bincode's serde path cost ~2,900 instructions to decode an event and
//! ~1,100 to encode one); it writes the same bytes and reads what bincode wrote, so records
//! already on the topic decode across the upgrade (`tests/event_codec.rs` holds bytes
//! written by the bincode encoder).

pub use crate::domain::event::{AttrValue, CanonicalEvent, Origin};

/// Version byte in front of every encoded event; bump it when the layout changes.
pub const FORMAT_VERSION: u8 = 1;

/// Why bytes did not decode as a [`CanonicalEvent`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty event record")]
    Empty,
    #[error("unknown event format version {0} (this build reads {FORMAT_VERSION})")]
    Version(u8),
    #[error("corrupt event record: {0}")]
    Corrupt(&'static str),
}

/// Varint markers: the value follows in 2, 4 or 8 little-endian bytes.
const U16_MARKER: u8 = 251;
const U32_MARKER: u8 = 252;
const U64_MARKER: u8 = 253;

/// The variant indexes of [`AttrValue`], in declaration order.
const NULL: u32 = 0;
const BOOL: u32 = 1;
const INT: u32 = 2;
const FLOAT: u32 = 3;
const STR: u32 = 4;
const JSON: u32 = 5;

impl CanonicalEvent {
    /// The binary form: one version byte, then the fields (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(128);
        self.encode_into(&mut buf);
        buf
    }

    /// Appends the binary form to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.push(FORMAT_VERSION);
        put_str(buf, &self.event_id);
        put_str(buf, &self.customer_id);
        put_str(buf, &self.event_type);
        put_str(buf, &self.source);
        put_i64(buf, self.occurred_at);
        match self.value {
            None => buf.push(0),
            Some(v) => {
                buf.push(1);
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        put_u64(buf, self.attributes.len() as u64);
        for (name, value) in &self.attributes {
            put_str(buf, name);
            match value {
                AttrValue::Null => put_u64(buf, NULL.into()),
                AttrValue::Bool(b) => {
                    put_u64(buf, BOOL.into());
                    buf.push(u8::from(*b));
                }
                AttrValue::Int(i) => {
                    put_u64(buf, INT.into());
                    put_i64(buf, *i);
                }
                AttrValue::Float(f) => {
                    put_u64(buf, FLOAT.into());
                    buf.extend_from_slice(&f.to_le_bytes());
                }
                AttrValue::Str(s) => {
                    put_u64(buf, STR.into());
                    put_str(buf, s);
                }
                AttrValue::Json(s) => {
                    put_u64(buf, JSON.into());
                    put_str(buf, s);
                }
            }
        }
        put_str(buf, &self.origin.topic);
        // An i32 is zigzag-mapped as 32 bits: the same value as the 64-bit mapping.
        put_i64(buf, self.origin.partition.into());
        put_i64(buf, self.origin.offset);
    }

    /// Reads the binary form; bytes after the event are ignored (as bincode did).
    pub fn decode(bytes: &[u8]) -> Result<CanonicalEvent, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&FORMAT_VERSION, rest)) => Reader { rest }.event(),
            Some((&v, _)) => Err(DecodeError::Version(v)),
        }
    }
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    if v < u64::from(U16_MARKER) {
        buf.push(v as u8);
    } else if let Ok(v) = u16::try_from(v) {
        buf.push(U16_MARKER);
        buf.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = u32::try_from(v) {
        buf.push(U32_MARKER);
        buf.extend_from_slice(&v.to_le_bytes());
    } else {
        buf.push(U64_MARKER);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// Zigzag: 0, -1, 1, -2, … → 0, 1, 2, 3, …
fn put_i64(buf: &mut Vec<u8>, v: i64) {
    put_u64(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_u64(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// The bytes not read yet.
struct Reader<'a> {
    rest: &'a [u8],
}

const TRUNCATED: DecodeError = DecodeError::Corrupt("unexpected end of the record");

impl<'a> Reader<'a> {
    fn event(mut self) -> Result<CanonicalEvent, DecodeError> {
        let event_id = self.string()?;
        let customer_id = self.string()?;
        let event_type = self.string()?;
        let source = self.string()?;
        let occurred_at = self.i64()?;
        let value = match self.byte()? {
            0 => None,
            1 => Some(self.f64()?),
            _ => return Err(DecodeError::Corrupt("invalid option tag of the value")),
        };
        let n = self.len()?;
        // Each attribute takes at least two bytes (an empty name and a variant): a corrupt
        // count cannot make this allocate more than the record's size.
        let mut attributes = Vec::with_capacity(n.min(self.rest.len() / 2));
        for _ in 0..n {
            let name = self.string()?;
            let value = match self.u32()? {
                NULL => AttrValue::Null,
                BOOL => AttrValue::Bool(match self.byte()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Corrupt("invalid boolean attribute")),
                }),
                INT => AttrValue::Int(self.i64()?),
                FLOAT => AttrValue::Float(self.f64()?),
                STR => AttrValue::Str(self.string()?),
                JSON => AttrValue::Json(self.string()?),
                _ => return Err(DecodeError::Corrupt("unknown attribute kind")),
            };
            attributes.push((name, value));
        }
        let topic = self.string()?;
        let partition = self.i32()?;
        let offset = self.i64()?;
        Ok(CanonicalEvent {
            event_id,
            customer_id,
            event_type,
            source,
            occurred_at,
            value,
            attributes,
            origin: Origin {
                topic,
                partition,
                offset,
            },
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(TRUNCATED);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A varint of up to 64 bits: the marker of a wider one is an error.
    fn u64(&mut self) -> Result<u64, DecodeError> {
        match self.byte()? {
            U16_MARKER => Ok(u16::from_le_bytes(self.array()?).into()),
            U32_MARKER => Ok(u32::from_le_bytes(self.array()?).into()),
            U64_MARKER => Ok(u64::from_le_bytes(self.array()?)),
            b @ (254 | 255) => Err(DecodeError::Corrupt(if b == 254 {
                "a 128-bit integer where 64 bits fit"
            } else {
                "invalid integer marker"
            })),
            b => Ok(b.into()),
        }
    }

    /// A varint of up to 32 bits (an enum variant, the zigzag form of an `i32`).
    fn u32(&mut self) -> Result<u32, DecodeError> {
        match self.byte()? {
            U16_MARKER => Ok(u16::from_le_bytes(self.array()?).into()),
            U32_MARKER => Ok(u32::from_le_bytes(self.array()?)),
            U64_MARKER..=255 => Err(DecodeError::Corrupt("a wide integer where 32 bits fit")),
            b => Ok(b.into()),
        }
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        let z = self.u64()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        let z = self.u32()?;
        Ok((z >> 1) as i32 ^ -((z & 1) as i32))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.u64()?).map_err(|_| DecodeError::Corrupt("length out of range"))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Corrupt("a string that is not UTF-8"))
    }
}
