//! The Ops-MM prompt and its token ids.
//!
//! `<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{IMG*n}{text}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>`
//! with `IMG = <|vision_start|><|image_pad|><|vision_end|>`; each image's
//! single `<|image_pad|>` is then expanded to `t·h·w / merge²` copies (the
//! number of tokens the vision tower produces for it).
use std::path::Path;

use tokenizers::Tokenizer;

use super::ModelError;
use crate::media::chunk::piece_boundary;

const IMAGE_PLACEHOLDER: &str = "<|vision_start|><|image_pad|><|vision_end|>";

pub struct PromptTokenizer {
    inner: Tokenizer,
    image_pad_id: u32,
}

/// The prompt text, and the byte range of the user's text inside it.
fn build_prompt(
    instruction: &str,
    n_images: usize,
    text: &str,
) -> (String, std::ops::Range<usize>) {
    let mut prompt = format!("<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n");
    prompt.push_str(&IMAGE_PLACEHOLDER.repeat(n_images));
    let start = prompt.len();
    prompt.push_str(text);
    let end = prompt.len();
    prompt.push_str("<|im_end|>\n<|im_start|>assistant\n<|endoftext|>");
    (prompt, start..end)
}

impl PromptTokenizer {
    /// The underlying tokenizer (e.g. to chunk long text by model tokens).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner
    }

    pub fn from_file(path: &Path, image_pad_id: u32) -> Result<Self, ModelError> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("cannot load {}: {e}", path.display())))?;
        match inner.token_to_id("<|image_pad|>") {
            Some(id) if id == image_pad_id => {}
            other => {
                return Err(ModelError::Tokenizer(format!(
                    "tokenizer's <|image_pad|> is {other:?}, config.json says {image_pad_id}"
                )))
            }
        }
        Ok(PromptTokenizer {
            inner,
            image_pad_id,
        })
    }

    /// Token ids of one input. `image_tokens[i]` is how many tokens image i
    /// becomes. When the prompt exceeds `max_len`, the user's text is cut
    /// (from the end); image tokens are never cut — if they alone exceed the
    /// limit, that is an error.
    ///
    /// A long text is tokenized from a prefix only: a prefix cut where
    /// tokenization does not change ([`piece_boundary`]) has the same first
    /// tokens as the whole text, so once the prefix alone has to be cut to
    /// fit, the result is exact. The prefix starts at 8 bytes per token of
    /// `max_len` and doubles until that holds (megabytes of text would
    /// otherwise be tokenized in full to keep a few thousand tokens).
    pub fn encode(
        &self,
        instruction: &str,
        text: &str,
        image_tokens: &[usize],
        max_len: usize,
    ) -> Result<Vec<u32>, ModelError> {
        let mut prefix_bytes = max_len.saturating_mul(8).max(4096);
        loop {
            let Some(cut) = piece_boundary(text, prefix_bytes) else {
                return Ok(self
                    .encode_prompt(instruction, text, image_tokens, max_len)?
                    .0);
            };
            let (ids, dropped) =
                self.encode_prompt(instruction, &text[..cut], image_tokens, max_len)?;
            if dropped > 0 {
                return Ok(ids);
            }
            prefix_bytes = prefix_bytes.saturating_mul(2);
        }
    }

    /// [`Self::encode`] of the whole `text`, and how many of its tokens were
    /// cut to fit `max_len`.
    fn encode_prompt(
        &self,
        instruction: &str,
        text: &str,
        image_tokens: &[usize],
        max_len: usize,
    ) -> Result<(Vec<u32>, usize), ModelError> {
        let (prompt, text_range) = build_prompt(instruction, image_tokens.len(), text);
        let encoding = self
            .inner
            .encode(prompt.as_str(), false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let ids = encoding.get_ids();
        let offsets = encoding.get_offsets();
        let expanded_len = ids.len() + image_tokens.iter().map(|n| n - 1).sum::<usize>();
        // Tokens that lie inside the user's text (a token straddling its start
        // belongs to the text too).
        let in_text: Vec<bool> = offsets
            .iter()
            .map(|&(s, e)| e > text_range.start && s < text_range.end && e > s)
            .collect();
        let text_tokens = in_text.iter().filter(|&&t| t).count();
        let mut drop = expanded_len.saturating_sub(max_len);
        let dropped = drop;
        if drop > text_tokens {
            return Err(ModelError::TooLong {
                needed: expanded_len - text_tokens,
                limit: max_len,
            });
        }
        let mut out = Vec::with_capacity(expanded_len - drop);
        let mut images = image_tokens.iter();
        // Walk backwards over the text tokens to drop the last `drop` of them.
        let mut keep = vec![true; ids.len()];
        for i in (0..ids.len()).rev() {
            if drop == 0 {
                break;
            }
            if in_text[i] {
                keep[i] = false;
                drop -= 1;
            }
        }
        for (i, &id) in ids.iter().enumerate() {
            if !keep[i] {
                continue;
            }
            if id == self.image_pad_id && !in_text[i] {
                let n = *images.next().ok_or_else(|| {
                    ModelError::Tokenizer("more <|image_pad|> tokens than images".into())
                })?;
                out.extend(std::iter::repeat_n(id, n));
            } else {
                out.push(id);
            }
        }
        Ok((out, dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> PromptTokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/qwen2vl-tiny/model/tokenizer.json"
        );
        PromptTokenizer::from_file(Path::new(path), 151655).unwrap()
    }

    #[test]
    fn long_text_is_cut_exactly_as_from_the_whole_text() {
        let tokenizer = tiny();
        let sentence = "Rust's ownership model (2015) keeps memory safe: no GC, no races! ";
        let text = sentence.repeat(4000); // ≈ 260 KB, far past 8 bytes × max_len
        for (max_len, images) in [(64, vec![]), (300, vec![4]), (1000, vec![2, 9])] {
            let whole = tokenizer
                .encode_prompt("Represent it.", &text, &images, max_len)
                .unwrap()
                .0;
            let fast = tokenizer
                .encode("Represent it.", &text, &images, max_len)
                .unwrap();
            assert_eq!(fast, whole, "max_len {max_len}");
            assert_eq!(fast.len(), max_len);
        }
        // Text that fits is untouched by the prefix logic.
        let short = tokenizer.encode("i", "a short text", &[], 64).unwrap();
        assert_eq!(
            short,
            tokenizer
                .encode_prompt("i", "a short text", &[], 64)
                .unwrap()
                .0
        );
        // Images alone over the limit: the same error either way.
        let err = tokenizer.encode("i", &text, &[100], 50).unwrap_err();
        assert!(
            matches!(err, ModelError::TooLong { limit: 50, .. }),
            "{err}"
        );
    }
}
