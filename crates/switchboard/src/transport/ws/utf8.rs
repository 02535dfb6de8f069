//! UTF-8 validation of a text message that arrives in pieces (fragments, and reads of one
//! frame), failing at the first byte that no continuation could make valid: a client is
//! refused as soon as its text is wrong (RFC 6455 §8.1), not once the message is whole.

/// Carries the start of a code point split between pieces; std's validator does the rest.
#[derive(Debug, Default)]
pub(super) struct Utf8Stream {
    /// The first bytes of a code point whose rest has not arrived (at most 3 are kept).
    pending: [u8; 4],
    pending_len: usize,
}

/// The bytes are not UTF-8, whatever follows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Invalid;

impl Utf8Stream {
    /// Validates the next piece of the message.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Invalid> {
        if self.pending_len > 0 {
            let have = self.pending_len;
            let need = width(self.pending[0]);
            let take = need.saturating_sub(have).min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            let now = have + take;
            let slot = self.pending.get_mut(have..now).ok_or(Invalid)?;
            slot.copy_from_slice(head);
            match std::str::from_utf8(&self.pending[..now]) {
                Ok(_) => self.pending_len = 0,
                // Still short of the code point's width: `bytes` ended.
                Err(e) if e.error_len().is_none() && now < need => {
                    self.pending_len = now;
                    return Ok(());
                }
                Err(_) => return Err(Invalid),
            }
            bytes = rest;
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // A code point cut off at the end: valid so far, kept for the next piece.
            Err(e) if e.error_len().is_none() => {
                let tail = bytes.get(e.valid_up_to()..).unwrap_or_default();
                let slot = self.pending.get_mut(..tail.len()).ok_or(Invalid)?;
                slot.copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// Ends the message: valid only if no code point was left unfinished.
    pub(super) fn finish(&mut self) -> Result<(), Invalid> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(Invalid)
        }
    }
}

/// Bytes of the code point a leading byte starts (std has already checked the byte).
fn width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `bytes` cut at `cuts` and finishes.
    fn pieces(bytes: &[u8], cuts: &[usize]) -> Result<(), Invalid> {
        let mut stream = Utf8Stream::default();
        let mut at = 0;
        for &cut in cuts {
            let cut = cut.clamp(at, bytes.len());
            stream.feed(&bytes[at..cut])?;
            at = cut;
        }
        stream.feed(&bytes[at..])?;
        stream.finish()
    }

    #[test]
    fn fails_at_the_first_impossible_byte() {
        let mut stream = Utf8Stream::default();
        // "κόσμε", then the lead byte of a 4-byte sequence: still possible.
        stream
            .feed(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4")
            .unwrap();
        // 0x90 after 0xF4 would be past U+10FFFF: refused on this piece, not at the end.
        assert_eq!(stream.feed(b"\x90"), Err(Invalid));
    }

    #[test]
    fn a_code_point_split_over_many_pieces_is_valid() {
        let snowman = "a☃😀b".as_bytes();
        for cut in 0..snowman.len() {
            assert_eq!(pieces(snowman, &[cut]), Ok(()), "cut at {cut}");
        }
        let every_byte: Vec<usize> = (1..snowman.len()).collect();
        assert_eq!(pieces(snowman, &every_byte), Ok(()));
    }

    #[test]
    fn an_unfinished_code_point_fails_at_the_end() {
        let mut stream = Utf8Stream::default();
        stream.feed(b"ok\xe2\x98").unwrap();
        assert_eq!(stream.finish(), Err(Invalid));
        // finish() starts the next message afresh.
        stream.feed(b"next").unwrap();
        assert_eq!(stream.finish(), Ok(()));
    }

    #[test]
    fn surrogates_and_overlong_forms_are_refused_in_any_cut() {
        for bad in [
            &b"\xed\xa0\x80"[..],
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xf8\x88\x80\x80\x80",
        ] {
            for cut in 0..=bad.len() {
                assert_eq!(pieces(bad, &[cut]), Err(Invalid), "{bad:x?} cut at {cut}");
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_std_on_any_bytes_and_cuts(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            mut cuts in prop::collection::vec(0..64usize, 0..6),
        ) {
            cuts.sort_unstable();
            let whole = std::str::from_utf8(&bytes).is_ok();
            prop_assert_eq!(pieces(&bytes, &cuts).is_ok(), whole);
        }

        #[test]
        fn valid_text_passes_in_any_cuts(
            text in "\\PC{0,24}",
            mut cuts in prop::collection::vec(0..96usize, 0..8),
        ) {
            cuts.sort_unstable();
            prop_assert_eq!(pieces(text.as_bytes(), &cuts), Ok(()));
        }
    }
}
