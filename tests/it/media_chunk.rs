//! Token chunking with the real Qwen2 tokenizer of the test model.

use tkr_embed::media::chunk::{chunk_text, Chunk};
use tkr_embed::media::MediaError;
use tokenizers::Tokenizer;

/// Integration note: point this at the main project's fixture path.
const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/qwen2vl-tiny/model/tokenizer.json"
);

fn tokenizer() -> Tokenizer {
    Tokenizer::from_file(TOKENIZER).unwrap()
}

fn count_tokens(tok: &Tokenizer, text: &str) -> usize {
    tok.encode(text, false).unwrap().len()
}

/// Token ranges of each chunk in the full text's encoding: the tokens whose
/// byte span lies inside the chunk.
fn token_ranges(tok: &Tokenizer, text: &str, chunks: &[Chunk]) -> Vec<(usize, usize)> {
    let enc = tok.encode(text, false).unwrap();
    let offsets = enc.get_offsets();
    chunks
        .iter()
        .map(|c| {
            let inside: Vec<usize> = (0..offsets.len())
                .filter(|&i| offsets[i].0 >= c.start && offsets[i].1 <= c.end)
                .collect();
            (inside[0], inside[inside.len() - 1] + 1)
        })
        .collect()
}

/// Checks the invariants every chunking must satisfy.
fn check_chunks(tok: &Tokenizer, text: &str, chunks: &[Chunk], size: usize) {
    assert!(!chunks.is_empty());
    let mut covered = vec![false; text.len()];
    for (i, c) in chunks.iter().enumerate() {
        assert!(
            text.is_char_boundary(c.start) && text.is_char_boundary(c.end),
            "{c:?}"
        );
        assert!(c.start < c.end);
        assert_eq!(c.text, text[c.start..c.end]);
        let n = count_tokens(tok, &c.text);
        assert!(n <= size, "chunk {i} has {n} tokens > {size}: {:?}", c.text);
        if i > 0 {
            assert!(c.start > chunks[i - 1].start && c.end > chunks[i - 1].end);
        }
        covered[c.start..c.end].iter_mut().for_each(|b| *b = true);
    }
    for (i, b) in text.bytes().enumerate() {
        assert!(
            covered[i] || b.is_ascii_whitespace(),
            "byte {i} ({b:#x}) not covered"
        );
    }
}

fn english() -> String {
    let sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "Vector databases store embeddings next to the documents they came from.",
        "Chunking splits long texts so that each piece fits the model's context window.",
        "Overlap keeps a sentence that straddles a boundary visible in both chunks.",
    ];
    (0..12)
        .map(|i| sentences[i % sentences.len()])
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn chunks_have_requested_size_and_overlap() {
    let tok = tokenizer();
    let text = english();
    let total = count_tokens(&tok, &text);
    for (size, overlap) in [(32, 8), (50, 0), (17, 16), (1000, 10)] {
        let chunks = chunk_text(&tok, &text, size, overlap).unwrap();
        check_chunks(&tok, &text, &chunks, size);
        let ranges = token_ranges(&tok, &text, &chunks);
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges[ranges.len() - 1].1, total);
        for (i, pair) in ranges.windows(2).enumerate() {
            // ASCII text: every token starts a character, so windows are exact.
            assert_eq!(pair[0].1 - pair[0].0, size.min(total), "chunk {i} size");
            assert_eq!(pair[0].1 - pair[1].0, overlap, "overlap after chunk {i}");
        }
        let expected = if total <= size {
            1
        } else {
            (total - overlap).div_ceil(size - overlap)
        };
        assert_eq!(chunks.len(), expected, "size {size} overlap {overlap}");
    }
}

#[test]
fn multibyte_text_stays_on_char_boundaries() {
    let tok = tokenizer();
    let text = "Emoji 😀🎉👩‍👩‍👧 mixed with 中文文本分块测试，日本語のテキスト、한국어 문장. \
                Ünïcödé àccents — “quotes” … and 🦀 Rust 🦀🦀 in the middle of 数据库 words."
        .repeat(4);
    for (size, overlap) in [(5, 2), (8, 0), (16, 4), (7, 6)] {
        let chunks = chunk_text(&tok, &text, size, overlap).unwrap();
        check_chunks(&tok, &text, &chunks, size);
    }
}

#[test]
fn empty_and_whitespace_give_no_chunks() {
    let tok = tokenizer();
    for text in ["", " ", "\n\n\t  \r\n"] {
        assert!(chunk_text(&tok, text, 16, 4).unwrap().is_empty());
    }
    let one = chunk_text(&tok, "  hi  ", 16, 4).unwrap();
    assert_eq!(one.len(), 1);
    assert!(one[0].text.contains("hi"));
}

#[test]
fn bad_sizes_are_rejected() {
    let tok = tokenizer();
    for (size, overlap) in [(8, 8), (8, 9), (0, 0)] {
        let err = chunk_text(&tok, "some text", size, overlap).unwrap_err();
        assert!(matches!(err, MediaError::InvalidArgument(_)), "{err}");
        assert!(!err.is_bad_input());
    }
}

/// The tokenizer normalises to NFC: `e` + U+0301 becomes one `é` whose
/// offsets cover only the `e`. The accent still belongs to a chunk, at a
/// chunk boundary and at the end of the text (found by the `chunk_text`
/// fuzz target; regressions in fuzz/regressions/chunk_text/).
#[test]
fn a_decomposed_accent_stays_with_its_letter() {
    let tok = tokenizer();
    let text = "un cafe\u{301}";
    let chunks = chunk_text(&tok, text, 8, 2).unwrap();
    assert_eq!(chunks.last().unwrap().end, text.len());
    let text = "e\u{301} x";
    let chunks = chunk_text(&tok, text, 1, 0).unwrap();
    assert_eq!(chunks[0].text, "e\u{301}");
    assert!(chunks.iter().all(|c| !c.text.starts_with('\u{301}')));
}
