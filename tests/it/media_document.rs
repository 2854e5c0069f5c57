//! PDFs through the system's poppler-utils, and HTML text extraction.
//! Fixtures come from tests/fixtures/media/make_fixtures.sh.

use std::path::{Path, PathBuf};
use std::time::Duration;

use image::RgbImage;
use tkr_embed::media::html::html_to_text;
use tkr_embed::media::pdf::{
    for_each_page_image, pdf_info, pdf_text, render_page, render_pages, PdfLimits,
};
use tkr_embed::media::MediaError;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/media")
        .join(name)
}

fn limits() -> PdfLimits {
    PdfLimits {
        render_max_side: 100,
        ..PdfLimits::default()
    }
}

/// The page's colour in the middle of its big rectangle: 'r', 'g' or 'b'.
fn dominant_colour(image: &RgbImage) -> char {
    let (w, h) = image.dimensions();
    let [r, g, b] = image.get_pixel(w / 2, h / 2).0;
    match (r > 200, g > 200, b > 200) {
        (true, false, false) if g < 60 && b < 60 => 'r',
        (false, true, false) if r < 60 && b < 60 => 'g',
        (false, false, true) if r < 60 && g < 60 => 'b',
        _ => panic!("no dominant colour: {r} {g} {b}"),
    }
}

#[test]
fn info_reports_pages_and_title() {
    let info = pdf_info(&fixture("three_pages.pdf"), &limits()).unwrap();
    assert_eq!(info.pages, 3);
    assert!(!info.encrypted);
    assert_eq!(info.title.as_deref(), Some("Three colour pages"));
}

#[test]
fn pages_render_in_order_at_the_requested_size() {
    let pages = render_pages(&fixture("three_pages.pdf"), &limits()).unwrap();
    let order: Vec<(u32, char)> = pages
        .iter()
        .map(|p| (p.page, dominant_colour(&p.image)))
        .collect();
    assert_eq!(order, vec![(1, 'r'), (2, 'g'), (3, 'b')]);
    for p in &pages {
        // 200x250 pt pages scaled so the longer side is 100 px.
        assert_eq!(p.image.dimensions(), (80, 100));
    }
}

#[test]
fn single_page_and_progress_callback() {
    let path = fixture("three_pages.pdf");
    assert_eq!(
        dominant_colour(&render_page(&path, 2, &limits()).unwrap()),
        'g'
    );
    let mut seen = Vec::new();
    for_each_page_image(&path, &limits(), |page, total| {
        seen.push((page.page, total));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![(1, 3), (2, 3), (3, 3)]);
    // A callback error stops rendering and comes back unchanged.
    let mut calls = 0;
    let err = for_each_page_image(&path, &limits(), |_, _| {
        calls += 1;
        Err(MediaError::InvalidArgument("stop".into()))
    })
    .unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)));
    assert_eq!(calls, 1);
}

#[test]
fn text_is_split_by_page() {
    let pages = pdf_text(&fixture("three_pages.pdf"), &limits()).unwrap();
    let got: Vec<(u32, &str)> = pages.iter().map(|p| (p.page, p.text.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (1, "Page one alpha"),
            (2, "Page two bravo"),
            (3, "Page three charlie")
        ]
    );
}

#[test]
fn encrypted_pdf_is_refused_clearly() {
    let path = fixture("encrypted.pdf");
    let errors = [
        pdf_info(&path, &limits()).unwrap_err(),
        render_pages(&path, &limits()).unwrap_err(),
        render_page(&path, 1, &limits()).unwrap_err(),
        pdf_text(&path, &limits()).unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, MediaError::Encrypted { .. }), "{err}");
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("password"), "{err}");
        assert!(err.to_string().contains("encrypted.pdf"), "{err}");
    }
}

#[test]
fn too_many_pages_names_both_numbers() {
    let path = fixture("three_pages.pdf");
    let two = PdfLimits {
        max_pages: 2,
        ..limits()
    };
    for err in [
        pdf_info(&path, &two).unwrap_err(),
        render_pages(&path, &two).unwrap_err(),
        pdf_text(&path, &two).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                MediaError::TooManyPages {
                    pages: 3,
                    max: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_bad_input());
        let msg = err.to_string();
        assert!(msg.contains("too many pages: 3, the limit is 2"), "{msg}");
    }
}

#[test]
fn bad_files_are_bad_input() {
    let cases = [
        ("corrupt.pdf", "corrupt"),
        ("video.mp4", "not a PDF"),
        ("empty.mp4", "empty"),
    ];
    for (name, needle) in cases {
        let path = fixture(name);
        for err in [
            pdf_info(&path, &limits()).unwrap_err(),
            render_page(&path, 1, &limits()).unwrap_err(),
            pdf_text(&path, &limits()).unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(err.is_bad_input(), "{msg}");
            assert!(msg.contains(name) && msg.contains(needle), "{msg}");
        }
    }
    let small = PdfLimits {
        max_bytes: 100,
        ..limits()
    };
    let err = pdf_info(&fixture("three_pages.pdf"), &small).unwrap_err();
    assert!(
        matches!(err, MediaError::TooLarge { limit: 100, .. }),
        "{err}"
    );
}

#[test]
fn text_output_is_capped() {
    let tiny = PdfLimits {
        max_text_bytes: 10,
        ..limits()
    };
    let err = pdf_text(&fixture("three_pages.pdf"), &tiny).unwrap_err();
    assert!(
        matches!(err, MediaError::TooLarge { limit: 10, .. }),
        "{err}"
    );
    assert!(err.is_bad_input());
}

#[test]
fn a_page_past_the_end_is_a_caller_error() {
    let err = render_page(&fixture("three_pages.pdf"), 9, &limits()).unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)), "{err}");
    assert!(!err.is_bad_input());
    assert!(err.to_string().contains("(9)"), "{err}");
}

#[test]
fn slow_tool_is_killed_at_the_timeout() {
    // Rendering a page 8,000 pixels wide takes pdftoppm over a second; the
    // limit is 0. (pdfinfo, ~10 ms, was used before: when this thread was
    // descheduled longer than that, the tool had finished before the first
    // poll and the test saw a success.)
    let zero = PdfLimits {
        timeout: Duration::ZERO,
        render_max_side: 8000,
        ..limits()
    };
    let err = render_page(&fixture("three_pages.pdf"), 1, &zero).unwrap_err();
    assert!(
        matches!(
            err,
            MediaError::Timeout {
                tool: "pdftoppm",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_bad_input());
}

#[test]
fn html_text_extraction() {
    let html = r#"<!DOCTYPE html>
<html><head><title>T &amp; C</title>
<style>body { color: red; } </style>
<script type="text/javascript">if (a < b && c > d) { alert("</p>"); }</script>
</head>
<body>
  <!-- a comment with <p>markup</p> -->
  <h1>Hello,
     world</h1>
  <p>First&nbsp;paragraph with <b>bold</b> and <a href="x?a=1&amp;b=2" title='a > b'>a link</a>.</p>
  <ul><li>one</li><li>two &lt;3&gt;</li></ul>
  <p>Numbers: &#65;&#x42;&#X43; caf&eacute; &#128512; 3 < 4</p>
  <div>line<br>break</div>
  <table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>
  <pre>  keep
    this</pre>
  <SCRIPT>ignored()</SCRIPT>tail
</body></html>"#;
    let expected = "T & C\n\nHello, world\n\nFirst paragraph with bold and a link.\n\n\
                    one\ntwo <3>\n\nNumbers: ABC caf&eacute; \u{1F600} 3 < 4\n\nline\nbreak\n\n\
                    a b\nc d\n\n  keep\n    this\n\ntail";
    assert_eq!(html_to_text(html), expected);
    assert_eq!(html_to_text(""), "");
    assert_eq!(html_to_text("   \n  "), "");
    assert_eq!(html_to_text("<p>unclosed <b"), "unclosed");
    assert_eq!(html_to_text("a<script>never closed"), "a");
    assert_eq!(html_to_text("x<style>a</styles></STYLE >y"), "xy");
}
