//! LRU cache of embeddings, keyed by a hash of everything that determines
//! the result: model, dtype, quantization, instruction, text and the image
//! contents.
use std::num::NonZeroUsize;

use lru::LruCache;

use super::{EmbedRequest, EngineInfo, ImageData};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn new(info: &EngineInfo, instruction: &str, request: &EmbedRequest) -> Self {
        let mut h = blake3::Hasher::new();
        // Length-prefix every field so different splits never collide.
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(info.model_id.as_bytes());
        field(info.dtype.as_bytes());
        field(info.quantization.as_bytes());
        field(instruction.as_bytes());
        field(request.text.as_bytes());
        for image in &request.images {
            match image {
                ImageData::Encoded(bytes) => {
                    field(b"encoded");
                    field(bytes);
                }
                ImageData::Decoded(img) => {
                    field(b"decoded");
                    field(&img.width().to_le_bytes());
                    field(&img.height().to_le_bytes());
                    field(img.as_raw());
                }
            }
        }
        CacheKey(*h.finalize().as_bytes())
    }
}

/// A cached result: the embedding and the prompt's token count (for usage
/// reports).
#[derive(Clone)]
pub struct Cached {
    pub embedding: Vec<f32>,
    pub tokens: usize,
}

/// `capacity` 0 disables caching.
pub struct EmbeddingCache {
    entries: Option<LruCache<CacheKey, Cached>>,
}

impl EmbeddingCache {
    pub fn new(capacity: usize) -> Self {
        EmbeddingCache {
            entries: NonZeroUsize::new(capacity).map(LruCache::new),
        }
    }

    pub fn get(&mut self, key: &CacheKey) -> Option<Cached> {
        self.entries.as_mut()?.get(key).cloned()
    }

    pub fn put(&mut self, key: CacheKey, value: Cached) {
        if let Some(entries) = self.entries.as_mut() {
            entries.put(key, value);
        }
    }
}
