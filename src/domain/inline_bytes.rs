//! Short byte strings assembled on the stack: keys and hash inputs built for every event,
//! where a `String` or `format!` allocated each time (issue 15 item 5).

/// Up to `N` bytes inline; longer contents move to the heap, whole, at the first append
/// that does not fit.
pub struct InlineBytes<const N: usize> {
    inline: [u8; N],
    len: usize,
    /// Everything, once it outgrew `inline`.
    spilled: Vec<u8>,
}

impl<const N: usize> InlineBytes<N> {
    pub fn new() -> Self {
        InlineBytes {
            inline: [0; N],
            len: 0,
            spilled: Vec::new(),
        }
    }

    #[inline]
    pub fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= N && self.spilled.is_empty() {
            self.inline[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            self.spill(bytes);
        }
    }

    #[cold]
    fn spill(&mut self, bytes: &[u8]) {
        if self.spilled.is_empty() {
            self.spilled.extend_from_slice(&self.inline[..self.len]);
        }
        self.spilled.extend_from_slice(bytes);
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

impl<const N: usize> Default for InlineBytes<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_the_appends_in_order_inline_or_spilled() {
        let mut b = InlineBytes::<4>::new();
        b.push(b"ab");
        b.push(b"cd");
        assert_eq!(b.as_bytes(), b"abcd", "exactly full, still inline");
        b.push(b"e");
        assert_eq!(b.as_bytes(), b"abcde", "spilled with what was inline");
        b.push(b"");
        b.push(b"fg");
        assert_eq!(b.as_bytes(), b"abcdefg");
        let mut long = InlineBytes::<4>::new();
        long.push(b"0123456789");
        assert_eq!(
            long.as_bytes(),
            b"0123456789",
            "too long for inline at once"
        );
    }
}
