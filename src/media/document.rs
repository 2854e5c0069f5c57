//! Documents: PDFs through poppler-utils (`pdfinfo`, `pdftoppm`,
//! `pdftotext`), and HTML through a small text extractor.
//!
//! Poppler runs as child processes rather than as a linked library so that a
//! hostile PDF can neither crash nor hang this process: every run has a
//! wall-clock timeout after which the child is killed, and its output is
//! capped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;

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

/// A finished tool's exit status and (capped) output.
struct ToolOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// How often `run_tool` checks whether the child has exited. Short enough to
/// add no noticeable latency, long enough to cost nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Upper bound on the stderr we keep (diagnostics only).
const MAX_STDERR_BYTES: u64 = 64 * 1024;

/// Runs `cmd` to completion within `timeout`, capturing stdout (at most
/// `max_stdout` bytes) and stderr. On timeout the child is killed. Output
/// beyond the cap is refused as `TooLarge`.
///
/// The pipes are drained on their own threads while this thread polls for
/// exit: a child that fills a pipe nobody reads would block forever and turn
/// every large output into a timeout.
fn run_tool(
    mut cmd: Command,
    tool: &'static str,
    path: &Path,
    timeout: Duration,
    max_stdout: u64,
) -> Result<ToolOutput> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| MediaError::Tool {
        path: path.to_owned(),
        tool,
        message: format!("cannot start {tool} (is poppler-utils installed?): {e}"),
    })?;
    let stdout = drain(child.stdout.take(), max_stdout);
    let stderr = drain(child.stderr.take(), MAX_STDERR_BYTES);
    let status = wait_with_timeout(&mut child, timeout).map_err(|e| MediaError::Tool {
        path: path.to_owned(),
        tool,
        message: format!("waiting for {tool} failed: {e}"),
    })?;
    let stdout = join_drain(stdout);
    let stderr = join_drain(stderr);
    let Some(status) = status else {
        return Err(MediaError::Timeout {
            path: path.to_owned(),
            tool,
            seconds: timeout.as_secs_f64(),
        });
    };
    let (stdout, stdout_overflow) = stdout;
    if stdout_overflow {
        return Err(MediaError::TooLarge {
            path: path.to_owned(),
            what: "tool output in bytes",
            actual: max_stdout + 1,
            limit: max_stdout,
        });
    }
    Ok(ToolOutput {
        status,
        stdout,
        stderr: stderr.0,
    })
}

/// Reads a pipe to its end on a thread, keeping at most `cap` bytes. If the
/// child writes more, the read end is dropped, so its next write fails
/// (EPIPE / SIGPIPE) and it exits instead of producing gigabytes.
fn drain<R: Read + Send + 'static>(
    pipe: Option<R>,
    cap: u64,
) -> Option<JoinHandle<(Vec<u8>, bool)>> {
    let pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut limited = pipe.take(cap + 1);
        // A read error mid-way leaves what was read so far; the exit status
        // tells whether the tool succeeded.
        let _ = limited.read_to_end(&mut buf);
        let overflow = buf.len() as u64 > cap;
        buf.truncate(cap as usize);
        (buf, overflow)
    }))
}

fn join_drain(handle: Option<JoinHandle<(Vec<u8>, bool)>>) -> (Vec<u8>, bool) {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// Waits for `child` until `timeout`; kills and reaps it on timeout and
/// returns `None`.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // kill() fails only if the child already exited; wait() reaps
            // it either way so no zombie is left.
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A path as a command-line argument that cannot be mistaken for an option.
fn tool_path_arg(path: &Path) -> PathBuf {
    if path.as_os_str().to_string_lossy().starts_with('-') {
        Path::new(".").join(path)
    } else {
        path.to_owned()
    }
}

// ---------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------

/// Elements whose content is not document text.
const SKIPPED_ELEMENTS: &[&str] = &["script", "style", "noscript", "template"];

/// Elements that end a paragraph: a blank line around them.
const PARAGRAPH_ELEMENTS: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "figure",
    "form",
    "hr",
    "address",
    "details",
    "fieldset",
];

/// Elements that end a line.
const LINE_ELEMENTS: &[&str] = &[
    "br",
    "div",
    "li",
    "tr",
    "dt",
    "dd",
    "title",
    "figcaption",
    "summary",
    "caption",
    "option",
    "legend",
    "label",
];

/// Table cells: separated by a space on the same line.
const CELL_ELEMENTS: &[&str] = &["td", "th"];

/// Extracts readable text from HTML: drops comments, `<script>`/`<style>`
/// and friends, turns block elements into line breaks, decodes the common
/// character references and collapses whitespace (keeping it verbatim inside
/// `<pre>`; a decoded `&nbsp;` counts as whitespace). Tolerant of broken markup: it never fails, a stray `<` that does
/// not start a tag stays text.
pub fn html_to_text(html: &str) -> String {
    let mut out = TextSink::default();
    let mut rest = html;
    let mut pre_depth = 0usize;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.text(&decode_entities(rest), pre_depth > 0);
            break;
        };
        out.text(&decode_entities(&rest[..lt]), pre_depth > 0);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
        } else if rest.starts_with("<!") || rest.starts_with("<?") {
            // Doctype, CDATA marker, processing instruction.
            rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
        } else if let Some((tag, after)) = parse_tag(rest) {
            rest = after;
            if !tag.closing && SKIPPED_ELEMENTS.contains(&tag.name.as_str()) {
                rest = skip_element_content(rest, &tag.name);
                continue;
            }
            if tag.name == "pre" {
                pre_depth = if tag.closing {
                    pre_depth.saturating_sub(1)
                } else {
                    pre_depth + 1
                };
            }
            out.tag(&tag.name);
        } else {
            // Not a tag ("a < b"): keep the character as text.
            out.text("<", pre_depth > 0);
            rest = &rest[1..];
        }
    }
    out.finish()
}

/// A start or end tag, name lower-cased.
struct Tag {
    name: String,
    closing: bool,
}

/// Parses the tag at the start of `s` (which starts with `<`). Returns it
/// and the text after its `>`; `None` if `s` does not start a tag. Quoted
/// attribute values may contain `>`. An unterminated tag swallows the rest.
fn parse_tag(s: &str) -> Option<(Tag, &str)> {
    let body = s.strip_prefix('<')?;
    let (closing, body) = match body.strip_prefix('/') {
        Some(b) => (true, b),
        None => (false, body),
    };
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ':'))
        .unwrap_or(body.len());
    if name_len == 0 || !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let name = body[..name_len].to_ascii_lowercase();
    let mut quote: Option<char> = None;
    for (i, c) in body[name_len..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => {
                let after = &body[name_len + i + 1..];
                return Some((Tag { name, closing }, after));
            }
            (None, _) => {}
        }
    }
    Some((Tag { name, closing }, ""))
}

/// Skips raw-text content up to and including `</name ...>`
/// (case-insensitive); everything if it is never closed. Scans forward only,
/// so many such elements still cost linear time.
fn skip_element_content<'a>(s: &'a str, name: &str) -> &'a str {
    let mut from = 0;
    while let Some(i) = s[from..].find("</") {
        let at = from + i;
        let after = &s.as_bytes()[at + 2..];
        let name_matches = after
            .get(..name.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()));
        let name_ends = after
            .get(name.len())
            .is_none_or(|b| !b.is_ascii_alphanumeric());
        if name_matches && name_ends {
            return s[at..].find('>').map_or("", |end| &s[at + end + 1..]);
        }
        from = at + 2;
    }
    ""
}

/// Accumulates text with whitespace collapsed: runs of whitespace become one
/// space, block boundaries become one or two newlines, and nothing leads or
/// trails.
#[derive(Default)]
struct TextSink {
    out: String,
    pending_space: bool,
    pending_newlines: usize,
}

impl TextSink {
    fn text(&mut self, s: &str, preformatted: bool) {
        if preformatted {
            if !s.is_empty() {
                self.flush_break();
                self.out.push_str(&s.replace("\r\n", "\n"));
            }
            return;
        }
        for c in s.chars() {
            if c.is_whitespace() {
                self.pending_space = true;
            } else {
                self.flush_break();
                self.out.push(c);
            }
        }
    }

    fn tag(&mut self, name: &str) {
        let newlines = if PARAGRAPH_ELEMENTS.contains(&name) {
            2
        } else if LINE_ELEMENTS.contains(&name) {
            1
        } else if CELL_ELEMENTS.contains(&name) {
            self.pending_space = true;
            0
        } else {
            0
        };
        // No leading newlines: only break after some text.
        if newlines > 0 && !self.out.is_empty() {
            self.pending_newlines = self.pending_newlines.max(newlines);
            self.pending_space = false;
        }
    }

    /// Emits the pending separator before new text.
    fn flush_break(&mut self) {
        if self.pending_newlines > 0 {
            // Drop trailing spaces before the line break.
            let trimmed = self.out.trim_end_matches([' ', '\t']).len();
            self.out.truncate(trimmed);
            for _ in 0..self.pending_newlines {
                self.out.push('\n');
            }
        } else if self.pending_space && !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push(' ');
        }
        self.pending_newlines = 0;
        self.pending_space = false;
    }

    fn finish(self) -> String {
        self.out.trim_end().to_owned()
    }
}

/// Decodes `&name;`, `&#NNN;` and `&#xHH;` references. Unknown or malformed
/// references are kept as written; invalid code points become U+FFFD.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // Entities are short; a ';' further away is not ours.
        let end = rest[1..]
            .char_indices()
            .take(32)
            .find(|&(_, c)| c == ';' || c == '&' || c.is_whitespace())
            .filter(|&(_, c)| c == ';')
            .map(|(i, _)| i + 1);
        let decoded = end.and_then(|end| decode_entity(&rest[1..end]).map(|c| (c, end)));
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character for one reference body (between `&` and `;`).
fn decode_entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return Some(match char::from_u32(code) {
            Some('\0') | None => '\u{fffd}',
            Some(c) => c,
        });
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "ndash" => '\u{2013}',
        "mdash" => '\u{2014}',
        "hellip" => '\u{2026}',
        "lsquo" => '\u{2018}',
        "rsquo" => '\u{2019}',
        "ldquo" => '\u{201c}',
        "rdquo" => '\u{201d}',
        "laquo" => '\u{ab}',
        "raquo" => '\u{bb}',
        "copy" => '\u{a9}',
        "reg" => '\u{ae}',
        "trade" => '\u{2122}',
        "euro" => '\u{20ac}',
        "middot" => '\u{b7}',
        "bull" => '\u{2022}',
        "deg" => '\u{b0}',
        "times" => '\u{d7}',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities(
                "a &amp; b &lt;c&gt; &quot;q&quot; &#39;s&#39; &#x41;&#66; &bogus; & x"
            ),
            "a & b <c> \"q\" 's' AB &bogus; & x"
        );
        assert_eq!(
            decode_entities("&#0; &#xD800; &#1114112;"),
            "\u{fffd} \u{fffd} \u{fffd}"
        );
        assert_eq!(decode_entities("caf&eacute"), "caf&eacute");
    }

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
