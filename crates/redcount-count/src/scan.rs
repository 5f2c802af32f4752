//! Finding words: the text is classified 64 bytes at a time into a bitmask of whitespace (SSE2,
//! which every x86-64 has; a byte table elsewhere), and word boundaries are walked as the bits where
//! that mask changes, so the loop branches once per word instead of once per byte.

/// The bytes of the oracle rule's whitespace, as a 64-bit mask over `block` (bit i = byte i).
#[inline(always)]
fn space_mask(block: &[u8; 64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline, so these intrinsics exist on every CPU this
    // code is compiled for; the four unaligned 16-byte loads stay inside the 64-byte array.
    unsafe {
        use std::arch::x86_64::*;
        let p = block.as_ptr() as *const __m128i;
        let space = _mm_set1_epi8(b' ' as i8);
        let tab = _mm_set1_epi8(b'\t' as i8);
        let flip = _mm_set1_epi8(i8::MIN);
        // \t \n \v \f \r are 9..=13: (byte - 9) < 5 unsigned, done as a signed compare of the
        // values with their top bit flipped.
        let below = _mm_set1_epi8(i8::MIN + 5);
        let mut mask = 0u64;
        for k in 0..4 {
            let x = _mm_loadu_si128(p.add(k));
            let is_space = _mm_cmpeq_epi8(x, space);
            let shifted = _mm_xor_si128(_mm_sub_epi8(x, tab), flip);
            let is_control = _mm_cmplt_epi8(shifted, below);
            let bits = _mm_movemask_epi8(_mm_or_si128(is_space, is_control)) as u32 & 0xffff;
            mask |= u64::from(bits) << (16 * k);
        }
        mask
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut mask = 0u64;
        for (i, &b) in block.iter().enumerate() {
            mask |= u64::from(crate::is_space(b)) << i;
        }
        mask
    }
}

/// Calls `f(start, end)` with the byte range of every maximal run of non-whitespace in `text`, in
/// order (the same words as [`crate::for_each_token`]).
#[inline(always)]
pub(crate) fn for_each_word(text: &[u8], mut f: impl FnMut(usize, usize)) {
    let n = text.len();
    let mut base = 0;
    // Start of the word being walked, and whether the byte before the block was inside one.
    let mut start = 0usize;
    let mut carry = 0u64;
    let mut tail = [b' '; 64];
    while base < n {
        let spaces = match text.get(base..base + 64) {
            Some(block) => space_mask(block.try_into().unwrap_or(&[b' '; 64])),
            None => {
                // The last, short block, padded with spaces.
                tail[..n - base].copy_from_slice(&text[base..]);
                space_mask(&tail)
            }
        };
        let inside = !spaces;
        let before = (inside << 1) | carry;
        // Bits where a word starts, and where one ends (the first space after it): they alternate.
        let mut edges = (inside & !before) | (spaces & before);
        // A word is open at the block's first byte when the byte before it was inside one.
        let mut in_word = carry != 0;
        carry = inside >> 63;
        while edges != 0 {
            let i = edges.trailing_zeros() as usize;
            if in_word {
                f(start, base + i);
            } else {
                start = base + i;
            }
            in_word = !in_word;
            edges &= edges - 1;
        }
        base += 64;
    }
    if carry != 0 {
        f(start, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        for_each_word(text, |s, e| out.push(&text[s..e]));
        out
    }

    #[test]
    fn words_cross_every_block_boundary() {
        for len in 0..200 {
            for at in 0..130 {
                let mut text = vec![b' '; len];
                for b in text.iter_mut().skip(at).take(70) {
                    *b = b'x';
                }
                let expected: Vec<&[u8]> = text
                    .split(|b| crate::is_space(*b))
                    .filter(|w| !w.is_empty())
                    .collect();
                assert_eq!(words(&text), expected, "len {len} at {at}");
            }
        }
    }
}
