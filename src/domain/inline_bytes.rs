//! Short byte strings assembled on the stack: keys, hash inputs and hex digits built for
//! every event, where a `String` or `format!` allocated each time (issue 15 item 5).

/// Writes the low `4 × digits.len()` bits of `value` into `digits` as lower-case hex, most
/// significant first: `format!("{value:0width$x}")` for a `value` that fits the width,
/// without the formatting machinery (result ids, derived event ids).
#[inline]
pub fn write_hex(value: u128, digits: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let last = digits.len().saturating_sub(1);
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((value >> (4 * (last - i))) & 0xf) as usize];
    }
}

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
    fn hex_digits_are_zero_padded_lower_hex() {
        for value in [
            0u128,
            1,
            0xabc,
            u64::MAX as u128,
            u128::MAX,
            0x0123_4567_89ab_cdef,
        ] {
            let mut wide = [0u8; 32];
            write_hex(value, &mut wide);
            assert_eq!(std::str::from_utf8(&wide).unwrap(), format!("{value:032x}"));
            let mut narrow = [0u8; 16];
            write_hex(value & u64::MAX as u128, &mut narrow);
            let low = value as u64;
            assert_eq!(std::str::from_utf8(&narrow).unwrap(), format!("{low:016x}"));
        }
    }

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
