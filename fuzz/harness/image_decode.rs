//! Target `image_decode`: an image as a request delivers it, through what
//! the engine does with it: `ImageSources::load` (data URLs and bare
//! base64; URLs are not fetched here), `preprocess::decode_image` with a
//! pixel limit (the decompression-bomb guard), then `preprocess_image`
//! (resize, normalise, patchify).
//!
//! Input: the encoded image itself; an input that is UTF-8 text is also
//! tried as an image reference (`data:image/png;base64,...` or base64).
//!
//! Properties: no panic; nothing larger than the limit is decoded (run with
//! `-malloc_limit_mb=256`: at the 4-megapixel limit used here no buffer
//! needs more than 64 MB, so a larger allocation is a bomb that got
//! through); what decodes preprocesses (or is refused for its aspect
//! ratio) into a well-formed model input.
use std::sync::OnceLock;

use tkr_embed::config::ServerConfig;
use tkr_embed::model::preprocess::{
    decode_image, preprocess_image, PreprocessError, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS,
    MERGE_SIZE, PATCH_DIM, PATCH_SIZE,
};
use tkr_embed::service::ImageSources;

/// The pixel limit (`server.max_image_pixels`, 64 megapixels by default,
/// scaled down so that each input stays fast).
pub const MAX_PIXELS: u64 = 4 << 20;

struct Sources {
    runtime: tokio::runtime::Runtime,
    sources: ImageSources,
}

fn sources() -> &'static Sources {
    static SOURCES: OnceLock<Sources> = OnceLock::new();
    SOURCES.get_or_init(|| Sources {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime"),
        sources: ImageSources::new(&ServerConfig::default()).expect("image sources"),
    })
}

pub fn run(data: &[u8]) {
    decode_and_preprocess(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lower = text.trim().to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return; // a fetch: no network from a fuzzer
    }
    let Sources { runtime, sources } = sources();
    match runtime.block_on(sources.load(text)) {
        Ok(bytes) => decode_and_preprocess(&bytes),
        Err(e) => assert!(e.is_bad_input(), "{e}"),
    }
}

fn decode_and_preprocess(bytes: &[u8]) {
    let Ok(rgb) = decode_image(bytes, MAX_PIXELS) else {
        return;
    };
    let (width, height) = rgb.dimensions();
    assert!(width > 0 && height > 0);
    assert!(u64::from(width) * u64::from(height) <= MAX_PIXELS);
    let input = match preprocess_image(&rgb, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS) {
        Ok(input) => input,
        Err(PreprocessError::AspectRatio { .. }) => return,
        Err(e) => panic!("a decoded {width}x{height} image does not preprocess: {e}"),
    };
    let [t, grid_h, grid_w] = input.grid_thw;
    let (new_w, new_h) = input.resized_wh;
    assert_eq!(t, 1);
    assert_eq!((grid_h * PATCH_SIZE, grid_w * PATCH_SIZE), (new_h, new_w));
    assert!(grid_h.is_multiple_of(MERGE_SIZE) && grid_w.is_multiple_of(MERGE_SIZE));
    assert_eq!(input.pixel_values.len(), input.num_patches() * PATCH_DIM);
    assert!(
        u64::from(new_w) * u64::from(new_h) <= 2 * DEFAULT_MAX_PIXELS,
        "{width}x{height} resized to {new_w}x{new_h}"
    );
    assert!(input.pixel_values.iter().all(|v| v.is_finite()));
}
