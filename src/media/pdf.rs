//! PDFs through poppler-utils (`pdfinfo`, `pdftoppm`, `pdftotext`): page
//! count and limits, pages rendered as images, and the text of each page.
//!
//! Poppler runs as child processes rather than as a linked library so that a
//! hostile PDF can neither crash nor hang this process: every run has a
//! wall-clock timeout after which the child is killed, and its output is
//! capped (`subprocess.rs`).

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use image::RgbImage;

use super::subprocess::{run_tool, tool_path_arg, ToolOutput};
use super::{MediaError, Result};

/// Refusal thresholds and rendering size for PDFs.
#[derive(Debug, Clone)]
pub struct PdfLimits {
    /// Documents with more pages are refused.
    pub max_pages: u32,
    /// Files larger than this are refused before any tool runs.
    pub max_bytes: u64,
    /// Wall-clock limit for each poppler process (one per page when
    /// rendering), after which it is killed.
    pub timeout: Duration,
    /// Rendered pages fit in a square of this many pixels (longer side).
    pub render_max_side: u32,
    /// Upper bound on the text one document may produce (a small compressed
    /// PDF can expand to gigabytes of text).
    pub max_text_bytes: u64,
}

impl Default for PdfLimits {
    fn default() -> Self {
        PdfLimits {
            max_pages: 500,
            max_bytes: 200 * 1024 * 1024,
            timeout: Duration::from_secs(60),
            render_max_side: 1024,
            max_text_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What `pdfinfo` reports about a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfInfo {
    pub pages: u32,
    /// Encrypted without a user password (opens, but has permission flags).
    /// Documents that need a password are refused with `Encrypted` instead.
    pub encrypted: bool,
    pub title: Option<String>,
}

/// One rendered page.
#[derive(Debug, Clone)]
pub struct RenderedPage {
    /// 1-based page number.
    pub page: u32,
    pub image: RgbImage,
}

/// The text of one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageText {
    /// 1-based page number.
    pub page: u32,
    pub text: String,
}

/// Upper bound on `pdfinfo`'s output; it is a few lines unless the metadata
/// is hostile.
const MAX_INFO_BYTES: u64 = 1024 * 1024;

/// Reads page count, encryption and title, and checks the document against
/// `limits` (size, pages, password).
pub fn pdf_info(path: &Path, limits: &PdfLimits) -> Result<PdfInfo> {
    check_pdf_file(path, limits)?;
    let mut cmd = Command::new("pdfinfo");
    cmd.args(["-enc", "UTF-8"]).arg(tool_path_arg(path));
    let out = run_tool(cmd, "pdfinfo", path, limits.timeout, MAX_INFO_BYTES)?;
    check_poppler_status("pdfinfo", path, &out)?;
    let info = parse_pdfinfo(path, &String::from_utf8_lossy(&out.stdout))?;
    if info.pages > limits.max_pages {
        return Err(MediaError::TooManyPages {
            path: path.to_owned(),
            pages: info.pages,
            max: limits.max_pages,
        });
    }
    Ok(info)
}

/// Renders every page in order. See [`for_each_page_image`] to handle pages
/// one at a time (progress, lower memory).
pub fn render_pages(path: &Path, limits: &PdfLimits) -> Result<Vec<RenderedPage>> {
    let mut pages = Vec::new();
    for_each_page_image(path, limits, |page, _total| {
        pages.push(page);
        Ok(())
    })?;
    Ok(pages)
}

/// Renders pages in order and hands each to `on_page` with the total page
/// count. An error from `on_page` stops rendering and is returned.
pub fn for_each_page_image<F>(path: &Path, limits: &PdfLimits, mut on_page: F) -> Result<()>
where
    F: FnMut(RenderedPage, u32) -> Result<()>,
{
    let info = pdf_info(path, limits)?;
    for page in 1..=info.pages {
        let image = render_page(path, page, limits)?;
        on_page(RenderedPage { page, image }, info.pages)?;
    }
    Ok(())
}

/// Renders one page (1-based) so that its longer side is
/// `limits.render_max_side` pixels. Does not check the page count; call
/// [`pdf_info`] first.
pub fn render_page(path: &Path, page: u32, limits: &PdfLimits) -> Result<RgbImage> {
    check_pdf_file(path, limits)?;
    if page == 0 || limits.render_max_side == 0 {
        return Err(MediaError::InvalidArgument(format!(
            "render_page needs a 1-based page and a positive render size, got page {page}, \
             size {}",
            limits.render_max_side
        )));
    }
    let dir = tempfile::tempdir().map_err(|source| MediaError::Io {
        path: std::env::temp_dir(),
        action: "creating a temporary directory",
        source,
    })?;
    let prefix = dir.path().join("page");
    let page_arg = page.to_string();
    let mut cmd = Command::new("pdftoppm");
    // PNG because the image crate reads it with the features the project
    // already enables; -singlefile names the output exactly `prefix.png`.
    cmd.args(["-png", "-singlefile", "-f", &page_arg, "-l", &page_arg])
        .args(["-scale-to", &limits.render_max_side.to_string()])
        .arg(tool_path_arg(path))
        .arg(&prefix);
    let out = run_tool(cmd, "pdftoppm", path, limits.timeout, MAX_INFO_BYTES)?;
    check_poppler_status("pdftoppm", path, &out)?;
    let png = prefix.with_extension("png");
    let image = image::open(&png).map_err(|source| match source {
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::NotFound => {
            MediaError::Corrupt {
                path: path.to_owned(),
                reason: format!("pdftoppm produced no image for page {page}"),
            }
        }
        source => MediaError::Image {
            path: png.clone(),
            context: "reading the page rendered by pdftoppm",
            source,
        },
    })?;
    Ok(image.to_rgb8())
}

/// Extracts the text of every page, in order.
///
/// Runs `pdftotext` in its default reading-order mode, not `-layout`:
/// `-layout` pads lines with spaces to reproduce the page geometry and
/// interleaves the lines of side-by-side columns, which is noise for an
/// embedder; reading order keeps each column's sentences together. Pages
/// are split on the form feed `pdftotext` writes after each page.
pub fn pdf_text(path: &Path, limits: &PdfLimits) -> Result<Vec<PageText>> {
    let info = pdf_info(path, limits)?;
    let mut cmd = Command::new("pdftotext");
    cmd.args(["-enc", "UTF-8", "-eol", "unix"])
        .args(["-f", "1", "-l", &info.pages.to_string()])
        .arg(tool_path_arg(path))
        .arg("-");
    let out = run_tool(
        cmd,
        "pdftotext",
        path,
        limits.timeout,
        limits.max_text_bytes,
    )?;
    check_poppler_status("pdftotext", path, &out)?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(split_pages(&text, info.pages))
}

/// Splits `pdftotext` output into pages: page `i` is the text before the
/// `i`-th form feed. Pages are numbered from 1 and exactly `pages` are
/// returned (missing ones empty) so numbering matches the document.
fn split_pages(text: &str, pages: u32) -> Vec<PageText> {
    let mut parts = text.split('\u{c}');
    (1..=pages)
        .map(|page| PageText {
            page,
            text: parts.next().unwrap_or("").trim_end().to_owned(),
        })
        .collect()
}

/// Checks, before running any tool, that `path` exists, is within the size
/// limit, is not empty and starts like a PDF.
fn check_pdf_file(path: &Path, limits: &PdfLimits) -> Result<()> {
    let io_err = |action, source| MediaError::Io {
        path: path.to_owned(),
        action,
        source,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| io_err("reading file metadata", e))?
        .len();
    if size == 0 {
        return Err(MediaError::Empty {
            path: path.to_owned(),
        });
    }
    if size > limits.max_bytes {
        return Err(MediaError::TooLarge {
            path: path.to_owned(),
            what: "file size in bytes",
            actual: size,
            limit: limits.max_bytes,
        });
    }
    let mut head = Vec::with_capacity(5);
    std::fs::File::open(path)
        .map_err(|e| io_err("opening the file", e))?
        .take(5)
        .read_to_end(&mut head)
        .map_err(|e| io_err("reading the file", e))?;
    if head != b"%PDF-" {
        return Err(MediaError::Unsupported {
            path: path.to_owned(),
            reason: "not a PDF: the file does not start with %PDF-".into(),
        });
    }
    Ok(())
}

/// Parses the `Key: value` lines of `pdfinfo`.
fn parse_pdfinfo(path: &Path, stdout: &str) -> Result<PdfInfo> {
    let field = |key: &str| {
        stdout.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k == key).then(|| v.trim().to_owned())
        })
    };
    let pages = field("Pages")
        .and_then(|p| p.parse::<u32>().ok())
        .ok_or_else(|| MediaError::Corrupt {
            path: path.to_owned(),
            reason: "pdfinfo reports no page count".into(),
        })?;
    if pages == 0 {
        return Err(MediaError::Corrupt {
            path: path.to_owned(),
            reason: "the PDF has no pages".into(),
        });
    }
    Ok(PdfInfo {
        pages,
        encrypted: field("Encrypted").is_some_and(|v| v.starts_with("yes")),
        title: field("Title").filter(|t| !t.is_empty()),
    })
}

/// Interprets poppler's exit status (documented in its man pages: 1 = error
/// opening the PDF, 2 = error opening an output file, 3 = permissions,
/// 99 = other) into the file's fault or ours.
fn check_poppler_status(tool: &'static str, path: &Path, out: &ToolOutput) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Incorrect password") {
        return Err(MediaError::Encrypted {
            path: path.to_owned(),
        });
    }
    // Keep the message short: a broken PDF can produce thousands of lines.
    let detail: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    let detail = if detail.is_empty() {
        format!("{tool} exited with {}", out.status)
    } else {
        detail.join("; ")
    };
    if stderr.contains("Wrong page range") {
        // The document is fine; the caller asked for a page it does not have.
        return Err(MediaError::InvalidArgument(format!(
            "{}: {detail}",
            path.display()
        )));
    }
    match out.status.code() {
        Some(1) => Err(MediaError::Corrupt {
            path: path.to_owned(),
            reason: format!("the PDF cannot be opened: {detail}"),
        }),
        Some(3) => Err(MediaError::Encrypted {
            path: path.to_owned(),
        }),
        _ => Err(MediaError::Tool {
            path: path.to_owned(),
            tool,
            message: detail,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_pages_on_form_feed() {
        let pages = split_pages("one\n\u{c}two\n\u{c}\u{c}", 3);
        let texts: Vec<_> = pages.iter().map(|p| (p.page, p.text.as_str())).collect();
        assert_eq!(texts, vec![(1, "one"), (2, "two"), (3, "")]);
    }

    #[test]
    fn pdfinfo_parsing() {
        let info = parse_pdfinfo(
            Path::new("x.pdf"),
            "Title:          A: B\nPages:          12\nEncrypted:      yes (print:yes)\n",
        )
        .unwrap();
        assert_eq!(
            info,
            PdfInfo {
                pages: 12,
                encrypted: true,
                title: Some("A: B".into())
            }
        );
    }
}
