//! Splits long text into overlapping chunks measured in the embedding
//! model's own tokens, so every chunk fits the model's context exactly
//! (characters or words are only a guess at the token count).

use tokenizers::Tokenizer;

use super::{MediaError, Result};

/// A piece of the input text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Byte offset of the first byte, on a char boundary.
    pub start: usize,
    /// Byte offset one past the last byte, on a char boundary.
    pub end: usize,
    /// `&text[start..end]`.
    pub text: String,
}

/// Splits `text` into chunks of at most `chunk_tokens` tokens, consecutive
/// chunks sharing `overlap_tokens` tokens, using `tokenizer`'s offsets
/// (encoded without special tokens).
///
/// Chunks are windows over the token sequence, so together they cover every
/// token and hence every non-whitespace byte of `text`. A byte-level BPE
/// may split one character (an emoji, a CJK ideograph) over several tokens;
/// windows never end or start inside such a character, so a window boundary
/// can move back by up to three tokens (the chunk is then shorter, and the
/// overlap with the next one slightly larger). Bytes that no token's offsets
/// cover (a combining mark that the tokenizer's NFC normaliser composed
/// with the character before it: the composed character's offsets cover
/// only its base) belong to the chunk before them. Whitespace-only windows
/// are dropped; empty or whitespace-only text gives no chunks.
pub fn chunk_text(
    tokenizer: &Tokenizer,
    text: &str,
    chunk_tokens: usize,
    overlap_tokens: usize,
) -> Result<Vec<Chunk>> {
    if chunk_tokens == 0 || overlap_tokens >= chunk_tokens {
        return Err(MediaError::InvalidArgument(format!(
            "chunking needs 0 <= overlap < chunk size, got chunk size {chunk_tokens} and \
             overlap {overlap_tokens}"
        )));
    }
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let offsets = token_offsets(tokenizer, text)?;
    let offsets = offsets.as_slice();
    let windows = token_windows(offsets, chunk_tokens, overlap_tokens);
    Ok(windows
        .into_iter()
        .filter_map(|(first, end)| {
            // Where the tokens after the window begin (the text's end after the last).
            let next = offsets.get(end).map_or(text.len(), |t| t.0);
            chunk_of(text, &offsets[first..end], next)
        })
        .collect())
}

/// Bytes of text handed to the tokenizer at once when a long text is
/// tokenized piece by piece.
const PIECE_BYTES: usize = 64 * 1024;

/// The byte offsets of `text`'s tokens (encoded without special tokens),
/// exactly as one `encode` of the whole text gives them, but tokenized in
/// pieces of about 64 KB cut at [`piece_boundary`]: the tokenizer's
/// `Encoding` of a whole text holds every token's string and several
/// per-token arrays, gigabytes for tens of megabytes of text; this keeps
/// only the offsets.
pub fn token_offsets(tokenizer: &Tokenizer, text: &str) -> Result<Vec<(usize, usize)>> {
    let mut offsets = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = piece_boundary(text, start + PIECE_BYTES).unwrap_or(text.len());
        let encoding = tokenizer
            .encode(&text[start..end], false)
            .map_err(|e| MediaError::Tokenizer(e.to_string()))?;
        offsets.extend(
            encoding
                .get_offsets()
                .iter()
                .map(|&(s, e)| (s + start, e + start)),
        );
        start = end;
    }
    Ok(offsets)
}

/// The first byte offset at or after `at` where `text` can be cut without
/// changing how a Qwen2 tokenizer splits it: a space preceded by a printable
/// ASCII character and followed by an ASCII letter. The pre-tokenizer's
/// pattern never lets a piece run from a non-space character into a space
/// after it, so a piece starts at that space with or without the cut (the
/// space joins the letters after it as one piece, ` word`), BPE never merges
/// across pieces, and NFC composes nothing across a space. `None` when
/// there is no such place (then the text is tokenized whole).
pub fn piece_boundary(text: &str, at: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    (at.max(1)..bytes.len().saturating_sub(1)).find(|&i| {
        bytes[i] == b' ' && bytes[i - 1].is_ascii_graphic() && bytes[i + 1].is_ascii_alphabetic()
    })
}

/// Token windows `[first, end)` of at most `size` tokens whose boundaries
/// fall where a token starts a new character. Each window starts `overlap`
/// tokens before the previous one ends (moved back to a character start),
/// or later if that window would bring no new tokens.
fn token_windows(offsets: &[(usize, usize)], size: usize, overlap: usize) -> Vec<(usize, usize)> {
    let n = offsets.len();
    let mut windows = Vec::new();
    let mut first = 0;
    while first < n {
        let end = window_end(offsets, first, size);
        windows.push((first, end));
        if end == n {
            break;
        }
        let mut next = end.saturating_sub(overlap).max(first + 1);
        while next > first + 1 && !starts_char(offsets, next) {
            next -= 1;
        }
        // Guarantees progress: the loop ends at the latest at `next == end`,
        // whose window always reaches past `end`.
        while next < end && (!starts_char(offsets, next) || window_end(offsets, next, size) <= end)
        {
            next += 1;
        }
        first = next;
    }
    windows
}

/// End of the window starting at `first`: `size` tokens on, moved back to a
/// character start, or forward if one character alone is longer than `size`
/// tokens (only possible for sizes below 4).
fn window_end(offsets: &[(usize, usize)], first: usize, size: usize) -> usize {
    let n = offsets.len();
    let mut end = (first + size).min(n);
    while end > first + 1 && !starts_char(offsets, end) {
        end -= 1;
    }
    while !starts_char(offsets, end) {
        end += 1;
    }
    end
}

/// Whether token `i` begins a new character, i.e. does not share bytes with
/// the previous token. Tokens of one split character report overlapping (in
/// practice identical) offsets.
fn starts_char(offsets: &[(usize, usize)], i: usize) -> bool {
    i == 0 || i >= offsets.len() || offsets[i].0 >= offsets[i - 1].1
}

/// The chunk spanned by a window's tokens, or `None` if it is only
/// whitespace. Bytes up to `next` (where the following tokens begin) that
/// no token covers are part of it, but for trailing whitespace. Offsets
/// are widened to char boundaries defensively: they come from the
/// tokenizer and a misaligned slice would panic.
fn chunk_of(text: &str, tokens: &[(usize, usize)], next: usize) -> Option<Chunk> {
    let start = tokens.iter().map(|t| t.0).min()?;
    let end = tokens.iter().map(|t| t.1).max()?;
    let start = floor_char_boundary(text, start.min(text.len()));
    let mut end = ceil_char_boundary(text, end.min(text.len()));
    let next = floor_char_boundary(text, next.min(text.len()));
    if let Some(uncovered) = text.get(end..next) {
        end += uncovered.trim_end().len();
    }
    let slice = text.get(start..end)?;
    if slice.trim().is_empty() {
        return None;
    }
    Some(Chunk {
        start,
        end,
        text: slice.to_owned(),
    })
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per byte of "ab" then a 3-token character, then "c".
    fn offsets() -> Vec<(usize, usize)> {
        vec![(0, 1), (1, 2), (2, 6), (2, 6), (2, 6), (6, 7)]
    }

    fn tiny_tokenizer() -> Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/qwen2vl-tiny/model/tokenizer.json"
        );
        Tokenizer::from_file(path).unwrap()
    }

    /// Text with every kind of place a cut could land: runs of spaces,
    /// newlines, punctuation, contractions, digits, CJK, emoji, a combining
    /// mark after a space, and a special token's text.
    fn mixed_text(repeats: usize) -> String {
        let parts = [
            "The quick brown fox's den",
            "  double  spaced\n\n  text ",
            "(quoted) \"words\", and: more;",
            "3.14159 numbers 2026-12-05 x",
            "日本語のテキスト 中文 한국어",
            "emoji 🦀🎉 e\u{301}t\u{e9} \u{301}a",
            "tabs\tand\r\nCRLF <|im_end|> after",
        ];
        let mut text = String::new();
        for i in 0..repeats {
            text.push_str(parts[i % parts.len()]);
            text.push(if i % 3 == 0 { '\n' } else { ' ' });
        }
        text
    }

    #[test]
    fn piecewise_offsets_equal_whole_text_tokenization() {
        let tokenizer = tiny_tokenizer();
        // Several pieces of PIECE_BYTES.
        let text = mixed_text(12_000);
        assert!(text.len() > 4 * PIECE_BYTES);
        let whole = tokenizer.encode(text.as_str(), false).unwrap();
        let pieces = token_offsets(&tokenizer, &text).unwrap();
        assert_eq!(pieces, whole.get_offsets());
        // And every boundary on its own cuts cleanly.
        let mut at = 0;
        let mut checked = 0;
        while let Some(cut) = piece_boundary(&text[..20_000], at + 1) {
            let head = tokenizer.encode(&text[..cut], false).unwrap();
            let tail = tokenizer.encode(&text[cut..20_000], false).unwrap();
            let joined: Vec<u32> = head
                .get_ids()
                .iter()
                .chain(tail.get_ids())
                .copied()
                .collect();
            let whole = tokenizer.encode(&text[..20_000], false).unwrap();
            assert_eq!(joined, whole.get_ids(), "cut at {cut}");
            at = cut + 997;
            checked += 1;
        }
        assert!(checked > 10);
    }

    #[test]
    fn no_boundary_without_a_space_before_a_letter() {
        assert_eq!(piece_boundary("aaaa", 0), None);
        assert_eq!(piece_boundary("a  b", 0), None);
        assert_eq!(piece_boundary("ab cd", 0), Some(2));
        assert_eq!(piece_boundary("ab cd", 3), None);
        assert_eq!(piece_boundary("a 1 b", 0), Some(3));
        assert_eq!(piece_boundary("日 b", 0), None);
    }

    #[test]
    fn windows_plain() {
        let o: Vec<_> = (0..10).map(|i| (i, i + 1)).collect();
        assert_eq!(token_windows(&o, 4, 1), vec![(0, 4), (3, 7), (6, 10)]);
        assert_eq!(token_windows(&o, 5, 0), vec![(0, 5), (5, 10)]);
        assert_eq!(token_windows(&o, 20, 5), vec![(0, 10)]);
    }

    #[test]
    fn windows_do_not_split_characters() {
        // Size 3 would end after the first token of the split character.
        assert_eq!(
            token_windows(&offsets(), 3, 0),
            vec![(0, 2), (2, 5), (5, 6)]
        );
        // A character longer than the window stays whole; no window repeats.
        assert_eq!(
            token_windows(&offsets(), 2, 1),
            vec![(0, 2), (2, 5), (5, 6)]
        );
    }
}
