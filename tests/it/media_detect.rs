//! `detect_kind` on the real fixture files.

use std::path::{Path, PathBuf};

use tkr_embed::media::{detect_kind, MediaKind, DETECT_HEAD_LEN};

fn kind_of(name: &str) -> Option<MediaKind> {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/media")
        .join(name);
    let bytes = std::fs::read(&path).unwrap();
    let head = &bytes[..bytes.len().min(DETECT_HEAD_LEN)];
    detect_kind(&path, head)
}

#[test]
fn fixtures_are_detected_by_content() {
    assert_eq!(kind_of("video.mp4"), Some(MediaKind::Video));
    assert_eq!(kind_of("truncated_head.mp4"), Some(MediaKind::Video));
    assert_eq!(kind_of("three_pages.pdf"), Some(MediaKind::Pdf));
    assert_eq!(kind_of("encrypted.pdf"), Some(MediaKind::Pdf));
    // Text and empty files named .mp4 are not videos.
    assert_eq!(kind_of("not_a_video.mp4"), None);
    assert_eq!(kind_of("empty.mp4"), None);
}
