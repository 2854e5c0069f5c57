//! Image preprocessing for the Qwen2-VL / Ops-MM-embedding-v1 embedder.
//!
//! Plain Rust on `image` buffers; nothing here touches the model runtime. The pipeline
//! reproduces the official Ops-MM-embedding-v1 recipe followed by the HuggingFace Qwen2-VL
//! image processor:
//!
//! 1. [`decode_image`]: bytes → 8-bit RGB (decompression-bomb guard, EXIF orientation,
//!    alpha dropped, grayscale expanded, 16-bit reduced).
//! 2. [`smart_resize`]: target size, a multiple of 28 within `[min_pixels, max_pixels]`.
//! 3. [`resize_bicubic_rgb`]: Pillow 13 `Image.resize(..., BICUBIC)`, bit-exact.
//! 4. [`preprocess_image`]: rescale by 1/255, CLIP normalisation, frame duplicated to the
//!    temporal patch size, 14×14 patches ordered in 2×2 merge windows.

use std::borrow::Cow;
use std::io::Cursor;

use image::error::{ImageFormatHint, UnsupportedErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

/// Side of a square vision patch, in pixels.
pub const PATCH_SIZE: u32 = 14;
/// Frames per temporal patch; a still image is duplicated to this many frames.
pub const TEMPORAL_PATCH_SIZE: u32 = 2;
/// Patches merged per side by the vision merger (2×2 patches → one token).
pub const MERGE_SIZE: u32 = 2;
/// Resized sides are multiples of this (`PATCH_SIZE * MERGE_SIZE`).
pub const IMAGE_FACTOR: u32 = PATCH_SIZE * MERGE_SIZE;
/// Number of colour channels fed to the vision tower.
pub const CHANNELS: usize = 3;
/// Floats per row of `pixel_values`: `CHANNELS * TEMPORAL_PATCH_SIZE * PATCH_SIZE²` = 1176.
pub const PATCH_DIM: usize =
    CHANNELS * TEMPORAL_PATCH_SIZE as usize * PATCH_SIZE as usize * PATCH_SIZE as usize;
/// Minimum pixel count of the Ops-MM recipe (`256 * 28 * 28`).
pub const DEFAULT_MIN_PIXELS: u64 = 256 * 28 * 28;
/// Maximum pixel count of the Ops-MM recipe (`1280 * 28 * 28`).
pub const DEFAULT_MAX_PIXELS: u64 = 1280 * 28 * 28;
/// Largest accepted `max(h, w) / min(h, w)`.
pub const MAX_ASPECT_RATIO: f64 = 200.0;
/// The HF processor's `rescale_factor` (1/255 as a Python float).
pub const RESCALE_FACTOR: f64 = 0.003_921_568_627_450_98;
/// CLIP normalisation mean (R, G, B), as the Python floats of the processor config; used as
/// `f32` (`mean as f32`, i.e. `np.array(mean, dtype=np.float32)`).
pub const CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP normalisation standard deviation (R, G, B); used as `f32` like [`CLIP_MEAN`].
pub const CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Everything that can go wrong while decoding or preprocessing an image.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    /// The byte buffer is empty.
    #[error("image data is empty")]
    EmptyInput,
    /// The content matches no known image signature.
    #[error("unknown image format (expected PNG, JPEG, WebP, GIF, BMP or TIFF)")]
    UnknownFormat,
    /// A recognised format, or a feature of it, that this build cannot decode.
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// The decoder rejected the data (corrupt or truncated file); holds its message.
    #[error("corrupt or truncated image data: {0}")]
    Decode(String),
    /// The header declares more pixels than allowed; nothing was decoded.
    #[error(
        "image is {width}x{height} = {pixels} pixels, more than the allowed maximum of {max_pixels}"
    )]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// The limit that was exceeded.
        max_pixels: u64,
    },
    /// The image has no pixels.
    #[error("image has zero size ({width}x{height})")]
    ZeroSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// `max(h, w) / min(h, w)` exceeds [`MAX_ASPECT_RATIO`].
    #[error(
        "aspect ratio of a {width}x{height} image is {ratio}, more than the allowed {MAX_ASPECT_RATIO}"
    )]
    AspectRatio {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// `max(h, w) / min(h, w)`.
        ratio: f64,
    },
    /// A parameter is out of range (e.g. a factor of 0, or a size that overflows `u32`).
    #[error("invalid resize parameters: {0}")]
    InvalidArgument(String),
}

// ---------------------------------------------------------------------------------------------
// smart_resize
// ---------------------------------------------------------------------------------------------

/// Qwen2-VL's `smart_resize`: the `(height, width)` closest to the input whose sides are
/// multiples of `factor` and whose area lies within `[min_pixels, max_pixels]`.
///
/// Mirrors the Python reference step by step in `f64` (Python floats): sides are rounded with
/// round-half-to-even (`round()`), at least `factor`; if the area exceeds `max_pixels` both sides
/// are scaled by `1/β`, `β = sqrt(h·w / max_pixels)` and floored to the factor (at least
/// `factor`); if it is below `min_pixels` they are scaled by `β = sqrt(min_pixels / (h·w))` and
/// ceiled. As in Python the result is not re-checked against the other bound.
///
/// Exact for `h·w < 2^53` (Python divides the exact integer product; beyond that `f64` rounds it
/// first).
///
/// # Errors
/// [`PreprocessError::ZeroSize`] for a zero side, [`PreprocessError::AspectRatio`] when
/// `max(h, w) / min(h, w) > 200`, [`PreprocessError::InvalidArgument`] for `factor == 0`,
/// `max_pixels == 0` or a result that does not fit `u32`.
pub fn smart_resize(
    height: u32,
    width: u32,
    factor: u32,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u32, u32), PreprocessError> {
    if factor == 0 || max_pixels == 0 {
        // Python raises ZeroDivisionError for either.
        return Err(PreprocessError::InvalidArgument(format!(
            "factor ({factor}) and max_pixels ({max_pixels}) must be positive"
        )));
    }
    if height == 0 || width == 0 {
        return Err(PreprocessError::ZeroSize { width, height });
    }
    let h = f64::from(height);
    let w = f64::from(width);
    let ratio = h.max(w) / h.min(w);
    if ratio > MAX_ASPECT_RATIO {
        return Err(PreprocessError::AspectRatio {
            width,
            height,
            ratio,
        });
    }
    let f = f64::from(factor);
    let fu = u64::from(factor);
    // `f64 as u64` saturates; values are non-negative here.
    let round_by = |x: f64| ((x / f).round_ties_even() as u64).saturating_mul(fu);
    let floor_by = |x: f64| ((x / f).floor() as u64).saturating_mul(fu);
    let ceil_by = |x: f64| ((x / f).ceil() as u64).saturating_mul(fu);

    let mut h_bar = round_by(h).max(fu);
    let mut w_bar = round_by(w).max(fu);
    // Python integer product (u64 saturates instead of growing; only absurd sizes get there).
    let area = h_bar.saturating_mul(w_bar);
    // Python: height * width (exact int) then true division by an int.
    let hw = (u64::from(height) * u64::from(width)) as f64;
    if area > max_pixels {
        let beta = (hw / max_pixels as f64).sqrt();
        h_bar = floor_by(h / beta).max(fu);
        w_bar = floor_by(w / beta).max(fu);
    } else if area < min_pixels {
        let beta = (min_pixels as f64 / hw).sqrt();
        h_bar = ceil_by(h * beta);
        w_bar = ceil_by(w * beta);
    }
    let to_u32 = |v: u64| {
        u32::try_from(v).map_err(|_| {
            PreprocessError::InvalidArgument(format!(
                "resized side {v} for a {width}x{height} image does not fit in u32"
            ))
        })
    };
    Ok((to_u32(h_bar)?, to_u32(w_bar)?))
}

// ---------------------------------------------------------------------------------------------
// Pillow 13 BICUBIC resize
// ---------------------------------------------------------------------------------------------

/// Fractional bits of Pillow's 8-bit fixed-point coefficients.
const PRECISION_BITS: u32 = 22;
/// Rounding offset the accumulators start from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Keys cubic convolution kernel with `a = -0.5` (Pillow's `bicubic_filter`).
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point filter windows for one axis: output sample `i` reads input samples
/// `start[i] .. start[i] + taps` with weights `weights[i * taps ..][..taps]`.
///
/// Zero weights at the ends of Pillow's windows are trimmed, then every window is padded with
/// zero weights to the longest length `taps` (shifted left where it would run past the end), so
/// the inner loops have one fixed trip count. A zero weight adds nothing to Pillow's integer
/// sums, so neither step changes any result.
struct Coefficients {
    taps: usize,
    start: Vec<usize>,
    weights: Vec<i32>,
}

impl Coefficients {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the box `(0, in_size)`;
    /// `in_size` and `out_size` must be positive.
    fn new(in_size: usize, out_size: usize) -> Self {
        // Pillow receives the box as C floats: (double)(in1 - in0) / outSize.
        let scale = f64::from(in_size as f32) / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = 2.0 * filter_scale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv = 1.0 / filter_scale;

        // Pass 1: Pillow's windows, as (first input index, fixed-point weights).
        let mut windows: Vec<(usize, Vec<i32>)> = Vec::with_capacity(out_size);
        let mut window = Vec::with_capacity(ksize);
        for i in 0..out_size {
            let center = (i as f64 + 0.5) * scale;
            // C `(int)` truncates toward zero; negative values are clamped to 0 right after.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;

            window.clear();
            let mut sum = 0.0f64;
            for j in xmin..xmax.max(xmin) {
                let w = bicubic_filter((j as f64 - center + 0.5) * inv);
                window.push(w);
                sum += w;
            }
            if sum != 0.0 {
                for w in &mut window {
                    *w /= sum;
                }
            }
            let fixed: Vec<i32> = window
                .iter()
                .map(|&w| {
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    // Round half away from zero, then truncate like C's (int) cast.
                    if w < 0.0 {
                        (scaled - 0.5) as i32
                    } else {
                        (scaled + 0.5) as i32
                    }
                })
                .collect();
            let lead = fixed.iter().take_while(|&&w| w == 0).count();
            let trail = fixed[lead..].iter().rev().take_while(|&&w| w == 0).count();
            windows.push((xmin + lead, fixed[lead..fixed.len() - trail].to_vec()));
        }

        // Pass 2: pad to a common length.
        let taps = windows
            .iter()
            .map(|(_, w)| w.len())
            .max()
            .unwrap_or(0)
            .clamp(1, in_size);
        let mut start = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * taps];
        for ((xmin, fixed), dst) in windows.iter().zip(weights.chunks_exact_mut(taps)) {
            let first = (*xmin).min(in_size - taps);
            let offset = xmin - first;
            debug_assert!(offset + fixed.len() <= taps);
            dst[offset..offset + fixed.len()].copy_from_slice(fixed);
            start.push(first);
        }
        Coefficients {
            taps,
            start,
            weights,
        }
    }
}

/// Pillow's `clip8`: drop the fraction bits and clamp to `0..=255`.
#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass over packed RGB rows: per output pixel, one multiply-add per tap and
/// channel over the input `u8` triples. Common window lengths get a fully unrolled loop.
fn resample_horizontal(src: &[u8], in_w: usize, out_w: usize, coeffs: &Coefficients) -> Vec<u8> {
    match coeffs.taps {
        4 => horizontal_taps::<4>(src, in_w, out_w, coeffs),
        5 => horizontal_taps::<5>(src, in_w, out_w, coeffs),
        6 => horizontal_taps::<6>(src, in_w, out_w, coeffs),
        7 => horizontal_taps::<7>(src, in_w, out_w, coeffs),
        8 => horizontal_taps::<8>(src, in_w, out_w, coeffs),
        _ => horizontal_taps::<0>(src, in_w, out_w, coeffs),
    }
}

/// `TAPS` = window length, or 0 for "read it from `coeffs`".
fn horizontal_taps<const TAPS: usize>(
    src: &[u8],
    in_w: usize,
    out_w: usize,
    coeffs: &Coefficients,
) -> Vec<u8> {
    let taps = if TAPS == 0 { coeffs.taps } else { TAPS };
    debug_assert_eq!(taps, coeffs.taps);
    let rows = src.len() / (in_w * 3);
    let mut out = vec![0u8; rows * out_w * 3];
    for (src_row, dst_row) in src
        .chunks_exact(in_w * 3)
        .zip(out.chunks_exact_mut(out_w * 3))
    {
        for ((dst, &first), weights) in dst_row
            .chunks_exact_mut(3)
            .zip(&coeffs.start)
            .zip(coeffs.weights.chunks_exact(taps))
        {
            let pixels = &src_row[first * 3..(first + taps) * 3];
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (px, &w) in pixels.chunks_exact(3).zip(weights) {
                r += i32::from(px[0]) * w;
                g += i32::from(px[1]) * w;
                b += i32::from(px[2]) * w;
            }
            dst[0] = clip8(r);
            dst[1] = clip8(g);
            dst[2] = clip8(b);
        }
    }
    out
}

/// Vertical pass over packed RGB rows of `row_len` bytes.
fn resample_vertical(src: &[u8], row_len: usize, out_h: usize, coeffs: &Coefficients) -> Vec<u8> {
    let mut out = vec![0u8; out_h * row_len];
    let mut acc = vec![0i32; row_len];
    let taps = coeffs.taps;
    for ((dst_row, &first), weights) in out
        .chunks_exact_mut(row_len)
        .zip(&coeffs.start)
        .zip(coeffs.weights.chunks_exact(taps))
    {
        acc.fill(HALF);
        let rows = &src[first * row_len..(first + taps) * row_len];
        for (src_row, &w) in rows.chunks_exact(row_len).zip(weights) {
            if w == 0 {
                continue;
            }
            for (a, &p) in acc.iter_mut().zip(src_row) {
                *a += i32::from(p) * w;
            }
        }
        for (d, &a) in dst_row.iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
    out
}

/// Resize an RGB image exactly like Pillow 13's `Image.resize((out_w, out_h))` with the default
/// `BICUBIC` filter (bit-exact).
///
/// The rules (Pillow's `Resample.c`): separable passes; the vertical pass runs first only when
/// `in_h - out_h > 0` and `in_h - out_h > 2 * (in_w - out_w)`, a pass whose dimension does not
/// change is skipped; Keys cubic kernel (`a = -0.5`, support 2, widened by the scale when
/// downscaling); weights normalised in `f64`, then rounded to 22-bit fixed point; each pass
/// rounds and clamps to 8 bits.
///
/// An empty input or a zero output size gives an all-black image of the requested size.
pub fn resize_bicubic_rgb(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    if (in_w, in_h) == (out_w, out_h) {
        return img.clone();
    }
    if in_w == 0 || in_h == 0 || out_w == 0 || out_h == 0 {
        return RgbImage::new(out_w, out_h);
    }
    let (iw, ih, ow, oh) = (in_w as usize, in_h as usize, out_w as usize, out_h as usize);
    let src = img.as_raw().as_slice();

    let horizontal = |data: &[u8]| resample_horizontal(data, iw, ow, &Coefficients::new(iw, ow));
    let vertical = |data: &[u8], row_len: usize| {
        resample_vertical(data, row_len, oh, &Coefficients::new(ih, oh))
    };

    let dh = i64::from(in_h) - i64::from(out_h);
    let dw = i64::from(in_w) - i64::from(out_w);
    let vertical_first = dh > 0 && dh > 2 * dw;

    let out = match (in_w != out_w, in_h != out_h) {
        (true, false) => horizontal(src),
        (false, true) => vertical(src, iw * 3),
        _ if vertical_first => horizontal(&vertical(src, iw * 3)),
        _ => vertical(&horizontal(src), ow * 3),
    };
    RgbImage::from_raw(out_w, out_h, out).expect("resampled buffer has the output size")
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

fn map_image_error(err: ImageError) -> PreprocessError {
    match err {
        ImageError::Unsupported(e) => match e.kind() {
            UnsupportedErrorKind::Format(ImageFormatHint::Unknown) => {
                PreprocessError::UnknownFormat
            }
            _ => PreprocessError::Unsupported(e.to_string()),
        },
        other => PreprocessError::Decode(other.to_string()),
    }
}

/// Whether a JPEG stream has an end-of-image marker (`FF D9`) after its first start-of-scan.
///
/// Walks the marker segments up to the first SOS, then searches the rest (entropy-coded data
/// never contains `FF D9`: `FF` is always followed by a stuffed `00` or a marker). Markers inside
/// earlier segments (e.g. an EXIF thumbnail's own EOI) are skipped over by their lengths.
fn jpeg_has_end_marker(data: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 1 < data.len() {
        if data[i] != 0xff {
            return false; // not at a marker: malformed, let the decoder have the final word
        }
        let marker = data[i + 1];
        match marker {
            0xff => i += 1, // fill byte
            0x01 | 0xd0..=0xd7 => i += 2,
            0xd9 => return true,
            _ => {
                let Some(len) = data.get(i + 2..i + 4) else {
                    return false;
                };
                let end = i + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
                if marker == 0xda {
                    return data
                        .get(end..)
                        .is_some_and(|scan| scan.windows(2).any(|w| w == [0xff, 0xd9]));
                }
                i = end;
            }
        }
    }
    false
}

/// Top byte of a 16-bit sample (what Pillow does when it opens 16-bit RGB/RGBA/LA files).
#[inline]
fn msb(v: u16) -> u8 {
    (v >> 8) as u8
}

/// Convert any decoded image to 8-bit RGB the way Pillow's `convert('RGB')` would: alpha is
/// dropped (no compositing onto a background), grayscale is replicated to R = G = B, and 16-bit
/// samples keep their top byte (`v >> 8`).
///
/// Pillow differs in one corner: a 16-bit *grayscale without alpha* file opens as mode `I;16`,
/// which `convert('RGB')` clamps (`min(v, 255)`, so nearly everything turns white); we take the
/// top byte there as well. Float images use the `image` crate's conversion (clamp to `[0, 1]`,
/// scale by 255, round).
fn to_rgb8(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let from_u16 = |samples: &[u16], channels: usize| -> RgbImage {
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for px in samples.chunks_exact(channels) {
            if channels >= 3 {
                out.extend_from_slice(&[msb(px[0]), msb(px[1]), msb(px[2])]);
            } else {
                let l = msb(px[0]);
                out.extend_from_slice(&[l, l, l]);
            }
        }
        RgbImage::from_raw(w, h, out).expect("converted buffer has the image size")
    };
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma16(i) => from_u16(i.as_raw(), 1),
        DynamicImage::ImageLumaA16(i) => from_u16(i.as_raw(), 2),
        DynamicImage::ImageRgb16(i) => from_u16(i.as_raw(), 3),
        DynamicImage::ImageRgba16(i) => from_u16(i.as_raw(), 4),
        // Rgba8 → drop alpha; Luma8/LumaA8 → replicate; float formats → clamp, scale, round.
        other => other.into_rgb8(),
    }
}

/// Decode an encoded image (PNG, JPEG, WebP, GIF, BMP, TIFF; format guessed from the content)
/// into 8-bit RGB.
///
/// * The dimensions are read from the header and `width * height > max_pixels` is rejected
///   before any pixel data is decoded (decompression-bomb guard).
/// * EXIF orientation (JPEG, PNG `eXIf`, WebP, TIFF) is applied, so the result is upright; a
///   malformed orientation tag is ignored.
/// * Colour: alpha dropped without compositing, grayscale replicated, 16-bit reduced to the top
///   byte (see `to_rgb8` in the source for the one Pillow corner case), palette expanded,
///   CMYK JPEGs converted by the `image` crate. Animated GIF/WebP: the first frame.
///
/// # Errors
/// [`PreprocessError::EmptyInput`], [`PreprocessError::UnknownFormat`],
/// [`PreprocessError::Unsupported`], [`PreprocessError::Decode`] (corrupt or truncated data,
/// with the decoder's message), [`PreprocessError::TooManyPixels`],
/// [`PreprocessError::ZeroSize`].
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::EmptyInput);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PreprocessError::Decode(e.to_string()))?;
    // The pixel limit below checks the declared size only; a decoder's own buffers (a GIF
    // frame larger than its logical screen) are bounded here, by what `max_pixels` pixels
    // take at 16 bytes each (RGBA f32), never above the `image` crate's default.
    let mut limits = Limits::default();
    limits.max_alloc = limits
        .max_alloc
        .map(|default| default.min(max_pixels.saturating_mul(16)));
    reader.limits(limits);
    let Some(format) = reader.format() else {
        return Err(PreprocessError::UnknownFormat);
    };
    // Constructing the decoder parses only the header (and metadata before the pixel data).
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(PreprocessError::ZeroSize { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(PreprocessError::TooManyPixels {
            width,
            height,
            pixels,
            max_pixels,
        });
    }
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        // zune-jpeg would fill the missing scan data with grey; Pillow refuses the file.
        return Err(PreprocessError::Decode(
            "JPEG data is truncated (no end-of-image marker after the scan data)".into(),
        ));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let decoded = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    let mut rgb = DynamicImage::ImageRgb8(to_rgb8(decoded));
    rgb.apply_orientation(orientation);
    Ok(rgb.into_rgb8())
}

// ---------------------------------------------------------------------------------------------
// Patchify
// ---------------------------------------------------------------------------------------------

/// One image, ready for the vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInput {
    /// Row-major `[grid_h * grid_w, PATCH_DIM]` (`PATCH_DIM` = 1176). Rows are ordered over
    /// `(grid_h / 2, grid_w / 2, 2, 2)` (2×2 merge windows); each row is laid out as
    /// `(C = 3, T = 2, 14, 14)`.
    pub pixel_values: Vec<f32>,
    /// `[t, grid_h, grid_w]` in patches: `[1, H / 14, W / 14]`.
    pub grid_thw: [u32; 3],
    /// Size after `smart_resize`, `(width, height)` in pixels.
    pub resized_wh: (u32, u32),
}

impl ImageInput {
    /// Number of rows of `pixel_values` (patches).
    pub fn num_patches(&self) -> usize {
        self.grid_thw.iter().map(|&v| v as usize).product()
    }

    /// Number of `<|image_pad|>` tokens this image expands to.
    pub fn num_tokens(&self) -> usize {
        num_image_tokens(self.grid_thw)
    }
}

/// Number of `<|image_pad|>` tokens for a grid: `t * h * w / MERGE_SIZE²`.
pub fn num_image_tokens(grid_thw: [u32; 3]) -> usize {
    grid_thw.iter().map(|&v| v as usize).product::<usize>() / (MERGE_SIZE * MERGE_SIZE) as usize
}

/// Per-channel lookup table of the normalised value of every byte, computed exactly like the HF
/// (slow) image processor: `x = f32(f64(v) * 0.00392156862745098)`, then `(x - mean) / std` in
/// `f32`.
fn normalisation_lut() -> [[f32; 256]; 3] {
    let mut lut = [[0.0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, out) in table.iter_mut().enumerate() {
            let x = (v as f64 * RESCALE_FACTOR) as f32;
            *out = (x - CLIP_MEAN[c] as f32) / CLIP_STD[c] as f32;
        }
    }
    lut
}

/// Full image preprocessing for Qwen2-VL: `smart_resize` (factor 28) → Pillow bicubic resize
/// (skipped when the size already fits) → rescale 1/255 → CLIP normalisation → frame duplicated
/// to `TEMPORAL_PATCH_SIZE` → 14×14 patches in 2×2 merge-window order.
///
/// The recipe's values are [`DEFAULT_MIN_PIXELS`] and [`DEFAULT_MAX_PIXELS`].
///
/// # Errors
/// Whatever [`smart_resize`] rejects (zero size, aspect ratio > 200, sizes overflowing `u32`).
pub fn preprocess_image(
    img: &RgbImage,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<ImageInput, PreprocessError> {
    let (width, height) = img.dimensions();
    let (new_h, new_w) = smart_resize(height, width, IMAGE_FACTOR, min_pixels, max_pixels)?;
    let resized: Cow<'_, RgbImage> = if (new_w, new_h) == (width, height) {
        Cow::Borrowed(img)
    } else {
        Cow::Owned(resize_bicubic_rgb(img, new_w, new_h))
    };

    let lut = normalisation_lut();
    let p = PATCH_SIZE as usize;
    let t = TEMPORAL_PATCH_SIZE as usize;
    let m = MERGE_SIZE as usize;
    let (grid_h, grid_w) = (new_h as usize / p, new_w as usize / p);
    let stride = new_w as usize * 3;
    let raw = resized.as_raw();
    let frame = p * p;
    let channel_block = t * frame;

    let mut pixel_values = vec![0.0f32; grid_h * grid_w * PATCH_DIM];
    let mut rows = pixel_values.chunks_exact_mut(PATCH_DIM);
    for bh in 0..grid_h / m {
        for bw in 0..grid_w / m {
            for mh in 0..m {
                for mw in 0..m {
                    let row = rows.next().expect("row count matches the grid");
                    let y0 = (bh * m + mh) * p;
                    let x0 = (bw * m + mw) * p;
                    for (c, table) in lut.iter().enumerate() {
                        let block = &mut row[c * channel_block..(c + 1) * channel_block];
                        let (first, rest) = block.split_at_mut(frame);
                        for (py, dst) in first.chunks_exact_mut(p).enumerate() {
                            let start = (y0 + py) * stride + x0 * 3 + c;
                            let src = &raw[start..start + (p - 1) * 3 + 1];
                            for (d, px) in dst.iter_mut().zip(src.iter().step_by(3)) {
                                *d = table[usize::from(*px)];
                            }
                        }
                        for copy in rest.chunks_exact_mut(frame) {
                            copy.copy_from_slice(first);
                        }
                    }
                }
            }
        }
    }

    Ok(ImageInput {
        pixel_values,
        grid_thw: [1, grid_h as u32, grid_w as u32],
        resized_wh: (new_w, new_h),
    })
}
