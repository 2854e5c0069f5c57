//! HTML to text: a small, tolerant scanner that drops markup, scripts and
//! styles, turns block elements into line breaks, decodes character
//! references and collapses whitespace.

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
}
