//! Plain data shared by every layer: document ids, modalities, segment spans,
//! sequence numbers and vector helpers. Depends on nothing but serde.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Monotonic sequence number of a committed write (one per document change).
pub type Seq = u64;

/// Longest accepted document id, in bytes.
pub const MAX_DOC_ID_BYTES: usize = 512;
/// Longest accepted collection name, in bytes.
pub const MAX_COLLECTION_NAME_BYTES: usize = 64;

/// What kind of input a document (and its vector) came from.
///
/// The order of the variants is part of the on-disk format (postcard stores
/// the variant index): append new variants, never reorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Text,
    Image,
    Video,
    Document,
    /// Text and image embedded together.
    Fused,
    /// A vector given by the caller, with no content the model saw.
    Vector,
}

impl Modality {
    pub const ALL: [Modality; 6] = [
        Modality::Text,
        Modality::Image,
        Modality::Video,
        Modality::Document,
        Modality::Fused,
        Modality::Vector,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Video => "video",
            Modality::Document => "document",
            Modality::Fused => "fused",
            Modality::Vector => "vector",
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Modality {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Modality::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown modality {s:?} (expected text, image, video, document, fused or vector)")
            })
    }
}

/// How a collection's index holds its vectors in memory. The store always
/// keeps the exact float32 vectors; a compressed index finds candidates with
/// its codes and rescores them exactly from the store.
///
/// Variant order is part of the on-disk format: append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorEncoding {
    /// float32, 4 bytes per dimension.
    #[default]
    F32,
    /// int8 scalar quantization (one scale per vector), 1 byte per dimension.
    Int8,
}

impl VectorEncoding {
    pub const ALL: [VectorEncoding; 2] = [VectorEncoding::F32, VectorEncoding::Int8];

    pub fn as_str(self) -> &'static str {
        match self {
            VectorEncoding::F32 => "f32",
            VectorEncoding::Int8 => "int8",
        }
    }

    /// Whether search results need exact rescoring.
    pub fn is_compressed(self) -> bool {
        self != VectorEncoding::F32
    }
}

impl fmt::Display for VectorEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VectorEncoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VectorEncoding::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown vector encoding {s:?} (expected f32 or int8)"))
    }
}

/// Which part of a document an extra vector describes.
///
/// Variant order is part of the on-disk format: append only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Span {
    /// A time range of a video or audio stream, in seconds.
    Time { start_s: f64, end_s: f64 },
    /// A page of a paged document (PDF), 1-based as people count pages.
    Page { page: u32 },
    /// A chunk of the document text, as byte offsets `[start, end)`.
    Bytes { start: u64, end: u64 },
}

impl Span {
    /// Checks that the span is well formed (finite, ordered).
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Span::Time { start_s, end_s } => {
                if !start_s.is_finite() || !end_s.is_finite() || start_s < 0.0 || end_s < start_s {
                    return Err(format!(
                        "time span must satisfy 0 <= start_s <= end_s, got {start_s}..{end_s}"
                    ));
                }
            }
            Span::Page { page } => {
                if page == 0 {
                    return Err("page numbers start at 1".into());
                }
            }
            Span::Bytes { start, end } => {
                if end < start {
                    return Err(format!("byte span end {end} is before start {start}"));
                }
            }
        }
        Ok(())
    }
}

/// The part of a document that matched a query: `index` is the position in
/// the document's `segments` list. A hit on the primary vector has no segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMatch {
    pub index: u32,
    pub span: Span,
}

/// Checks a user-given document id: 1 to [`MAX_DOC_ID_BYTES`] bytes, no
/// control characters.
pub fn validate_doc_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("document id is empty".into());
    }
    if id.len() > MAX_DOC_ID_BYTES {
        return Err(format!(
            "document id is {} bytes long (at most {MAX_DOC_ID_BYTES})",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("document id {id:?} contains control characters"));
    }
    // URL clients (browsers, curl, reqwest) resolve `.` and `..` path
    // segments away, escaped (`%2E`) or not: such a document could never be
    // fetched by its URL.
    if id == "." || id == ".." {
        return Err(format!(
            "document id {id:?} is not allowed (it cannot be a URL path segment)"
        ));
    }
    Ok(())
}

/// Checks a collection name: 1 to [`MAX_COLLECTION_NAME_BYTES`] of
/// `[A-Za-z0-9_.-]`, not starting with `.` (names appear in logs and URLs).
pub fn validate_collection_name(name: &str) -> Result<(), String> {
    let ok_len = !name.is_empty() && name.len() <= MAX_COLLECTION_NAME_BYTES;
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok_len || !ok_chars || name.starts_with('.') {
        return Err(format!(
            "invalid collection name {name:?}: use 1 to {MAX_COLLECTION_NAME_BYTES} characters of A-Z a-z 0-9 _ - . (not starting with .)"
        ));
    }
    Ok(())
}

/// Scales `v` to unit L2 norm in place. Fails on an empty, all-zero or
/// non-finite vector (those have no direction to compare).
pub fn l2_normalize(v: &mut [f32]) -> Result<(), String> {
    if v.is_empty() {
        return Err("vector is empty".into());
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!("vector component {i} is not finite ({})", v[i]));
    }
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err("vector has zero length".into());
    }
    // Already unit length to float32 precision (each component rounded by
    // at most 2^-24 relative): left as it is, so normalising is idempotent
    // and stored vectors copied between stores stay bit for bit the same.
    if (norm - 1.0).abs() <= f64::from(f32::EPSILON) {
        return Ok(());
    }
    // Divide in f64: for a vector of tiny (subnormal) components, 1/norm
    // does not fit an f32 and would turn every component into infinity.
    v.iter_mut()
        .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    let check = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
    if (check - 1.0).abs() >= 1e-3 || check.is_nan() {
        return Err(format!(
            "vector cannot be scaled to unit length (norm {norm:e})"
        ));
    }
    Ok(())
}

/// Inner product: the index's distance and every exact score.
///
/// Explicit SIMD through `pulp`, which picks the widest instruction set the
/// CPU has at run time (AVX-512, AVX2+FMA, NEON; scalar elsewhere): LLVM's
/// auto-vectoriser turned the plain accumulator loop into 2-lane code, 4×
/// slower. Two independent accumulators hide the FMA latency. The
/// summation order depends on the lane width, so the last bits of a score
/// can differ between CPUs (not between runs).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);
    ARCH.dispatch(Dot { a, b })
}

struct Dot<'a> {
    a: &'a [f32],
    b: &'a [f32],
}

impl pulp::WithSimd for Dot<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        let (a, a_tail) = S::as_simd_f32s(self.a);
        let (b, b_tail) = S::as_simd_f32s(self.b);
        let mut acc = [simd.splat_f32s(0.0); 2];
        let (a2, b2) = (a.chunks_exact(2), b.chunks_exact(2));
        let (a_odd, b_odd) = (a2.remainder(), b2.remainder());
        for (x, y) in a2.zip(b2) {
            acc[0] = simd.mul_add_f32s(x[0], y[0], acc[0]);
            acc[1] = simd.mul_add_f32s(x[1], y[1], acc[1]);
        }
        for (&x, &y) in a_odd.iter().zip(b_odd) {
            acc[0] = simd.mul_add_f32s(x, y, acc[0]);
        }
        let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
        simd.reduce_sum_f32s(simd.add_f32s(acc[0], acc[1])) + tail
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_rejects_degenerate_vectors() {
        assert!(l2_normalize(&mut []).is_err());
        assert!(l2_normalize(&mut [0.0, 0.0]).is_err());
        assert!(l2_normalize(&mut [f32::NAN, 1.0]).is_err());
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn normalize_scales_tiny_and_huge_vectors_to_finite_unit_length() {
        // Subnormal components: 1/norm does not fit an f32.
        let mut tiny = [1e-45f32; 64];
        l2_normalize(&mut tiny).unwrap();
        assert!(tiny.iter().all(|x| (x - 0.125).abs() < 1e-6), "{tiny:?}");
        let mut huge = [3e38f32, 3e38, 0.0];
        l2_normalize(&mut huge).unwrap();
        assert!(huge.iter().all(|x| x.is_finite()));
        assert!((huge[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn normalizing_a_unit_vector_again_changes_no_bit() {
        let mut state = 12345u64;
        for dim in [3usize, 64, 1536, 3584] {
            for _ in 0..50 {
                let mut v: Vec<f32> = (0..dim)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                    })
                    .collect();
                l2_normalize(&mut v).unwrap();
                let once = v.clone();
                l2_normalize(&mut v).unwrap();
                assert!(
                    once.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "dim {dim}"
                );
            }
        }
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }

    #[test]
    fn ids_and_names() {
        assert!(validate_doc_id("a/b c").is_ok());
        assert!(validate_doc_id("").is_err());
        assert!(validate_doc_id("a\nb").is_err());
        assert!(validate_collection_name("my_docs-1.0").is_ok());
        assert!(validate_collection_name("../x").is_err());
        assert!(validate_collection_name(".x").is_err());
        assert_eq!("image".parse::<Modality>().unwrap(), Modality::Image);
        assert!("sound".parse::<Modality>().is_err());
    }
}
