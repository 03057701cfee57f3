//! The compact binary form of the [`CanonicalEvent`] on the internal `events-by-customer`
//! topic. The event itself is the shared domain type of [`crate::domain::event`].

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
    Bincode(#[from] bincode::error::DecodeError),
}

impl CanonicalEvent {
    /// The binary form: one version byte, then bincode (standard config).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(128);
        self.encode_into(&mut buf);
        buf
    }

    /// Appends the binary form to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.push(FORMAT_VERSION);
        bincode::serde::encode_into_std_write(self, buf, bincode::config::standard())
            .expect("writing to a Vec cannot fail");
    }

    pub fn decode(bytes: &[u8]) -> Result<CanonicalEvent, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&FORMAT_VERSION, rest)) => {
                let (ev, _) = bincode::serde::decode_from_slice(rest, bincode::config::standard())?;
                Ok(ev)
            }
            Some((&v, _)) => Err(DecodeError::Version(v)),
        }
    }
}
