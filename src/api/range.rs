//! `Range: bytes=…` requests (RFC 9110 §14): browsers seek in a video by
//! asking for the part of the file they need, and will not seek at all
//! unless the server answers `206 Partial Content`.
//!
//! One range per request is served; a header with several ranges, another
//! unit, or a syntax error is ignored and the whole body sent (200), as the
//! RFC allows. A well-formed range that lies wholly past the end is
//! unsatisfiable (416).
use std::ops::Range;

/// What to send for a body of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable `Range` header: the whole body.
    Whole,
    /// These bytes, as `206` with `Content-Range`.
    Part(Range<usize>),
    /// A range that starts past the end: `416` with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Reads a `Range` header value against a body of `len` bytes.
pub fn answer(header: Option<&str>, len: usize) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        match !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            true => s.parse().ok(),
            false => None,
        }
    };
    let len64 = len as u64;
    match (first.trim().is_empty(), number(first), number(last)) {
        // `-N`: the last N bytes.
        (true, _, Some(suffix)) => match (suffix, len64) {
            (0, _) | (_, 0) => RangeAnswer::Unsatisfiable,
            _ => RangeAnswer::Part(len - suffix.min(len64) as usize..len),
        },
        // `A-` or `A-B`.
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if start >= len64 {
                return RangeAnswer::Unsatisfiable;
            }
            let end_inclusive = end.unwrap_or(u64::MAX).min(len64 - 1);
            if end_inclusive < start {
                return RangeAnswer::Whole;
            }
            RangeAnswer::Part(start as usize..end_inclusive as usize + 1)
        }
        _ => RangeAnswer::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    #[test]
    fn single_ranges_of_every_form() {
        assert_eq!(answer(Some("bytes=0-9"), 100), Part(0..10));
        assert_eq!(answer(Some("bytes=90-"), 100), Part(90..100));
        assert_eq!(answer(Some("bytes=90-1000"), 100), Part(90..100));
        assert_eq!(answer(Some("bytes=-10"), 100), Part(90..100));
        assert_eq!(answer(Some("bytes=-1000"), 100), Part(0..100));
        assert_eq!(answer(Some("bytes=99-99"), 100), Part(99..100));
        assert_eq!(answer(Some("bytes=0-"), 1), Part(0..1));
    }

    #[test]
    fn past_the_end_is_unsatisfiable() {
        assert_eq!(answer(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(answer(Some("bytes=100-200"), 100), Unsatisfiable);
        assert_eq!(answer(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(answer(Some("bytes=0-"), 0), Unsatisfiable);
    }

    #[test]
    fn anything_else_gets_the_whole_body() {
        for h in [
            None,
            Some("items=0-9"),
            Some("bytes=0-9,20-29"),
            Some("bytes=9-0"),
            Some("bytes=a-b"),
            Some("bytes=-"),
            Some("bytes=+1-2"),
            Some("bytes=1"),
        ] {
            assert_eq!(answer(h, 100), Whole, "{h:?}");
        }
    }
}
