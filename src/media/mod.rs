//! Media ingestion: turns files into things the embedder understands.
//!
//! This layer knows nothing about models or the engine. It only
//!
//! * recognises what a file is ([`detect_kind`]),
//! * samples RGB frames from videos ([`video`], through FFmpeg),
//! * renders PDF pages and extracts their text ([`pdf`], through
//!   poppler-utils run as child processes under a timeout, `subprocess.rs`),
//! * extracts the text of HTML ([`html`]),
//! * and splits long text into token-bounded, overlapping chunks ([`chunk`]).
//!
//! Every failure is a [`MediaError`]; [`MediaError::is_bad_input`] tells a
//! caller whether the *file* is at fault (reject it, tell the user) or
//! something on our side failed (log it, maybe retry).

pub mod chunk;
pub mod html;
pub mod pdf;
mod subprocess;
pub mod video;

use std::path::{Path, PathBuf};

/// Everything that can go wrong while turning a file into frames, pages or
/// text. Variants carry the offending path so messages stand on their own.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The file has no bytes at all.
    #[error("{}: file is empty (0 bytes)", path.display())]
    Empty { path: PathBuf },

    /// The file is not of a kind we can read (wrong format, no video stream,
    /// unknown duration, ...).
    #[error("{}: unsupported: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },

    /// The file claims a format but its contents do not parse.
    #[error("{}: corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// The file parses but ends before the data it announces.
    #[error("{}: truncated: {reason}", path.display())]
    Truncated { path: PathBuf, reason: String },

    /// The file (or what it decodes to) exceeds a configured size limit.
    #[error("{}: too large: {what} is {actual}, the limit is {limit}", path.display())]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        actual: u64,
        limit: u64,
    },

    /// A video longer than the configured maximum.
    #[error("{}: too long: {duration_s:.1} s, the limit is {max_s:.1} s", path.display())]
    TooLong {
        path: PathBuf,
        duration_s: f64,
        max_s: f64,
    },

    /// A document with more pages than the configured maximum.
    #[error("{}: too many pages: {pages}, the limit is {max}", path.display())]
    TooManyPages { path: PathBuf, pages: u32, max: u32 },

    /// A document that cannot be opened without a password.
    #[error("{}: encrypted: the PDF needs a password to open; decrypt it first", path.display())]
    Encrypted { path: PathBuf },

    /// An external tool did not finish within the time limit. Treated as bad
    /// input: on an otherwise healthy machine this is a pathological file
    /// (e.g. a PDF bomb), and retrying would only hang again.
    #[error("{}: {tool} did not finish within {seconds:.1} s (pathological or oversized file?)", path.display())]
    Timeout {
        path: PathBuf,
        tool: &'static str,
        seconds: f64,
    },

    /// The caller passed parameters that make no sense (e.g. overlap >= chunk
    /// size). A programming error, not a property of the file.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Reading or writing a file failed at the OS level.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// An external tool could not be run or failed in an unexpected way.
    #[error("{}: {tool} failed: {message}", path.display())]
    Tool {
        path: PathBuf,
        tool: &'static str,
        message: String,
    },

    /// FFmpeg failed in a way that does not point at the file.
    #[error("{}: ffmpeg: {context}: {source}", path.display())]
    Ffmpeg {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: ffmpeg_next::Error,
    },

    /// Decoding an image we produced ourselves (a rendered page) failed.
    #[error("{}: {context}: {source}", path.display())]
    Image {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: image::ImageError,
    },

    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl MediaError {
    /// True when the file itself is at fault (corrupt, truncated, unsupported,
    /// over a limit, encrypted, pathological): the caller should reject it and
    /// report the message to the user. False for failures on our side (I/O,
    /// missing tools, library errors, bad arguments) that deserve a log entry.
    pub fn is_bad_input(&self) -> bool {
        match self {
            MediaError::Empty { .. }
            | MediaError::Unsupported { .. }
            | MediaError::Corrupt { .. }
            | MediaError::Truncated { .. }
            | MediaError::TooLarge { .. }
            | MediaError::TooLong { .. }
            | MediaError::TooManyPages { .. }
            | MediaError::Encrypted { .. }
            | MediaError::Timeout { .. } => true,
            MediaError::InvalidArgument(_)
            | MediaError::Io { .. }
            | MediaError::Tool { .. }
            | MediaError::Ffmpeg { .. }
            | MediaError::Image { .. }
            | MediaError::Tokenizer(_) => false,
        }
    }
}

/// Result alias for this layer.
pub type Result<T, E = MediaError> = std::result::Result<T, E>;

/// What a file is, as far as ingestion is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Video,
    Pdf,
    Text,
    Markdown,
    Html,
}

/// How many leading bytes [`detect_kind`] wants to see. Fewer is fine (short
/// files), it just recognises less.
pub const DETECT_HEAD_LEN: usize = 64;

/// Decides what a file is from its first bytes (`head`, ideally
/// [`DETECT_HEAD_LEN`] of them) and, for text only, its extension.
///
/// Binary formats are recognised by content alone: a text file renamed to
/// `.mp4` is not a video, and a PNG renamed to `.txt` is still an image.
/// Text has no magic number, so the extension decides between text kinds,
/// but only for content that does not look binary (no NUL bytes). Files that
/// start like an HTML document are HTML whatever their extension says.
pub fn detect_kind(path: &Path, head: &[u8]) -> Option<MediaKind> {
    if let Some(kind) = detect_binary(head) {
        return Some(kind);
    }
    if head.contains(&0) {
        // Binary data we do not recognise; never hand it to a text reader.
        return None;
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("txt") => Some(MediaKind::Text),
        Some("md") | Some("markdown") => Some(MediaKind::Markdown),
        Some("html") | Some("htm") => Some(MediaKind::Html),
        _ if looks_like_html(head) => Some(MediaKind::Html),
        _ => None,
    }
}

/// Magic-number recognition of the binary kinds we ingest.
fn detect_binary(head: &[u8]) -> Option<MediaKind> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);

    let image = at(0, b"\x89PNG\r\n\x1a\n")
        || at(0, b"\xff\xd8\xff")
        || at(0, b"GIF87a")
        || at(0, b"GIF89a")
        || (at(0, b"RIFF") && at(8, b"WEBP"))
        || at(0, b"II*\0")
        || at(0, b"MM\0*")
        || looks_like_bmp(head);
    if image {
        return Some(MediaKind::Image);
    }
    // ISO BMFF (MP4, MOV, M4V, 3GP): a box size then `ftyp`. Old QuickTime
    // files may start directly with the `moov` box.
    let video = at(4, b"ftyp")
        || at(4, b"moov")
        || at(0, b"\x1a\x45\xdf\xa3") // EBML header: Matroska / WebM
        || (at(0, b"RIFF") && at(8, b"AVI "));
    if video {
        return Some(MediaKind::Video);
    }
    if at(0, b"%PDF-") {
        return Some(MediaKind::Pdf);
    }
    None
}

/// "BM" alone is too weak (any text starting with "BM"), so also require the
/// header's two reserved 16-bit fields to be zero, as every writer sets them.
fn looks_like_bmp(head: &[u8]) -> bool {
    head.len() >= 14 && head.starts_with(b"BM") && head[6..10] == [0, 0, 0, 0]
}

/// An HTML document announces itself in its first bytes (after an optional
/// UTF-8 byte-order mark and whitespace).
fn looks_like_html(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let lower: Vec<u8> = head[start..]
        .iter()
        .take(14)
        .map(u8::to_ascii_lowercase)
        .collect();
    lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str, head: &[u8]) -> Option<MediaKind> {
        detect_kind(Path::new(name), head)
    }

    #[test]
    fn magic_beats_extension() {
        assert_eq!(
            kind("a.txt", b"\x89PNG\r\n\x1a\n...."),
            Some(MediaKind::Image)
        );
        assert_eq!(kind("a.mp4", b"This is text"), None);
        assert_eq!(kind("a", b"\0\0\0\x20ftypisom"), Some(MediaKind::Video));
        assert_eq!(
            kind("a.bin", b"\x1a\x45\xdf\xa3\x01"),
            Some(MediaKind::Video)
        );
        assert_eq!(kind("a", b"RIFF\0\0\0\0AVI LIST"), Some(MediaKind::Video));
        assert_eq!(kind("a", b"RIFF\0\0\0\0WEBPVP8 "), Some(MediaKind::Image));
        assert_eq!(kind("a.md", b"%PDF-1.7\n"), Some(MediaKind::Pdf));
        assert_eq!(kind("a", b"\xff\xd8\xff\xe0"), Some(MediaKind::Image));
        assert_eq!(kind("a", b"GIF89a"), Some(MediaKind::Image));
        assert_eq!(kind("a", b"II*\0"), Some(MediaKind::Image));
        assert_eq!(
            kind("a", b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0"),
            Some(MediaKind::Image)
        );
    }

    #[test]
    fn text_kinds_by_extension() {
        assert_eq!(kind("a.TXT", b"hello"), Some(MediaKind::Text));
        assert_eq!(kind("a.md", b"# hi"), Some(MediaKind::Markdown));
        assert_eq!(kind("a.markdown", b"# hi"), Some(MediaKind::Markdown));
        assert_eq!(kind("a.htm", b"<p>"), Some(MediaKind::Html));
        assert_eq!(kind("a.html", b""), Some(MediaKind::Html));
        assert_eq!(kind("a.txt", b"BMP is a format"), Some(MediaKind::Text));
        assert_eq!(
            kind("a", b"\xef\xbb\xbf  <!DOCTYPE html>"),
            Some(MediaKind::Html)
        );
        assert_eq!(kind("a.txt", b"bin\0ary"), None);
        assert_eq!(kind("a.rs", b"fn main() {}"), None);
    }
}
