//! Target `media_kind`: what kind of file an upload is
//! (`tkr_embed::media::detect_kind`), from a file name and its bytes.
//!
//! Input: the file name up to the first `\n` (lossy UTF-8), then the file's
//! bytes. Uploads pass all their bytes, files on disk the first
//! `DETECT_HEAD_LEN`; both are tried.
//!
//! Properties: nothing panics; binary kinds (image, video, PDF) are decided
//! by content alone, whatever the name; content with a NUL byte is never
//! text; and what is called an image is a format the image decoder
//! recognises (else an upload would be accepted as an image and then fail
//! to decode as an unknown format).
use std::path::Path;

use image::ImageFormat;
use tkr_embed::media::{detect_kind, MediaKind, DETECT_HEAD_LEN};

pub fn run(data: &[u8]) {
    let (name, bytes) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b""[..], data),
    };
    let name = String::from_utf8_lossy(name);
    let head = &bytes[..bytes.len().min(DETECT_HEAD_LEN)];
    for content in [bytes, head] {
        let kind = detect_kind(Path::new(name.as_ref()), content);
        let binary = matches!(
            kind,
            Some(MediaKind::Image | MediaKind::Video | MediaKind::Pdf)
        );
        for other in ["", "x.txt", "x.html", "x.md", "x.mp4", "x.png", "x.pdf"] {
            let again = detect_kind(Path::new(other), content);
            if binary {
                assert_eq!(again, kind, "a binary kind depends on the name {other:?}");
            } else {
                assert!(
                    !matches!(
                        again,
                        Some(MediaKind::Image | MediaKind::Video | MediaKind::Pdf)
                    ),
                    "binary kind {again:?} only under the name {other:?}"
                );
            }
        }
        if !binary && content.contains(&0) {
            assert_eq!(kind, None, "content with a NUL byte taken for text");
        }
        if kind == Some(MediaKind::Image) {
            let format = image::guess_format(content);
            assert!(
                matches!(
                    format,
                    Ok(ImageFormat::Png
                        | ImageFormat::Jpeg
                        | ImageFormat::Gif
                        | ImageFormat::WebP
                        | ImageFormat::Bmp
                        | ImageFormat::Tiff)
                ),
                "detected as an image, but the decoder guesses {format:?}"
            );
        }
    }
    // The head alone decides binary kinds the same way as the whole file.
    let whole = detect_kind(Path::new(""), bytes);
    let first = detect_kind(Path::new(""), head);
    if matches!(
        whole,
        Some(MediaKind::Image | MediaKind::Video | MediaKind::Pdf)
    ) {
        assert_eq!(whole, first);
    }
}
