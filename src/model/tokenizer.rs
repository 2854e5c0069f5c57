//! The Ops-MM prompt and its token ids.
//!
//! `<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{IMG*n}{text}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>`
//! with `IMG = <|vision_start|><|image_pad|><|vision_end|>`; each image's
//! single `<|image_pad|>` is then expanded to `t·h·w / merge²` copies (the
//! number of tokens the vision tower produces for it).
use std::path::Path;

use tokenizers::Tokenizer;

use super::ModelError;

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
    pub fn encode(
        &self,
        instruction: &str,
        text: &str,
        image_tokens: &[usize],
        max_len: usize,
    ) -> Result<Vec<u32>, ModelError> {
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
        Ok(out)
    }
}
