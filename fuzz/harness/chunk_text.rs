//! Target `chunk_text`: the token-window text chunker
//! (`tkr_embed::media::chunk::chunk_text`) with the tiny model's tokenizer
//! (a byte-level BPE like the real model's).
//!
//! Input: two bytes choose the chunk size (1 to 64 tokens) and the overlap
//! (0 to 63, so sometimes not smaller than the size: an error), the rest is
//! the text (lossy UTF-8).
//!
//! Properties: no panic; an invalid size/overlap is an error and nothing
//! else is; chunks are slices of the text at char boundaries, in order
//! (starts and ends strictly increase), none is whitespace only, and
//! together they cover every non-whitespace character.
use std::sync::OnceLock;

use tkr_embed::media::chunk::chunk_text;
use tkr_embed::media::MediaError;
use tokenizers::Tokenizer;

use super::common::tiny_model_dir;

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_file(tiny_model_dir().join("tokenizer.json"))
            .expect("the tiny model's tokenizer loads")
    })
}

pub fn run(data: &[u8]) {
    let [size, overlap, rest @ ..] = data else {
        return;
    };
    let size = usize::from(size % 64) + 1;
    let overlap = usize::from(overlap % 64);
    let text = String::from_utf8_lossy(rest);
    let chunks = match chunk_text(tokenizer(), &text, size, overlap) {
        Ok(chunks) => {
            assert!(overlap < size, "overlap {overlap} >= size {size} accepted");
            chunks
        }
        Err(MediaError::InvalidArgument(_)) if overlap >= size => return,
        Err(e) => panic!("chunk_text({size}, {overlap}) failed: {e}"),
    };
    if text.trim().is_empty() {
        assert!(chunks.is_empty());
        return;
    }
    let mut covered = vec![false; text.len()];
    let mut previous: Option<(usize, usize)> = None;
    for chunk in &chunks {
        assert!(chunk.start < chunk.end && chunk.end <= text.len());
        assert_eq!(text.get(chunk.start..chunk.end), Some(chunk.text.as_str()));
        assert!(!chunk.text.trim().is_empty(), "whitespace-only chunk");
        if let Some((start, end)) = previous {
            assert!(
                chunk.start > start && chunk.end > end,
                "chunks out of order: {start}..{end} then {}..{}",
                chunk.start,
                chunk.end
            );
        }
        previous = Some((chunk.start, chunk.end));
        covered[chunk.start..chunk.end].fill(true);
    }
    for (at, c) in text.char_indices() {
        assert!(
            c.is_whitespace() || covered[at],
            "{c:?} at byte {at} is in no chunk (size {size}, overlap {overlap})"
        );
    }
}
