//! Video sampling against real files decoded by the system's FFmpeg.
//! Fixtures come from tests/fixtures/media/make_fixtures.sh.

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use image::RgbImage;
use tkr_embed::media::video::{probe_video, sample_frames, Sampling, VideoLimits};
use tkr_embed::media::MediaError;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/media")
        .join(name)
}

/// Frame interval of the fixture (10 fps).
const FRAME_S: f64 = 0.1;

/// Decodes every frame from the start, in presentation order, converting it
/// the same way the sampler does (swscale, bilinear, same size). This is the
/// reference the seeking sampler must agree with.
fn decode_all(path: &Path) -> Vec<(f64, RgbImage)> {
    ff::init().unwrap();
    let mut input = ff::format::input(path).unwrap();
    let stream = input.streams().best(ff::media::Type::Video).unwrap();
    let (index, tb) = (stream.index(), stream.time_base());
    let start = stream.start_time();
    let mut decoder = ff::codec::context::Context::from_parameters(stream.parameters())
        .unwrap()
        .decoder()
        .video()
        .unwrap();
    let mut frames = Vec::new();
    let receive = |decoder: &mut ff::decoder::Video, frames: &mut Vec<(f64, RgbImage)>| {
        let mut frame = ff::frame::Video::empty();
        while decoder.receive_frame(&mut frame).is_ok() {
            let pts = frame.timestamp().unwrap() - start;
            let t = pts as f64 * f64::from(tb);
            frames.push((t, to_rgb(&frame)));
        }
    };
    for (s, packet) in input.packets() {
        if s.index() == index {
            decoder.send_packet(&packet).unwrap();
            receive(&mut decoder, &mut frames);
        }
    }
    decoder.send_eof().unwrap();
    receive(&mut decoder, &mut frames);
    frames
}

fn to_rgb(frame: &ff::frame::Video) -> RgbImage {
    let (w, h) = (frame.width(), frame.height());
    let mut scaler = ff::software::scaling::Context::get(
        frame.format(),
        w,
        h,
        ff::format::Pixel::RGB24,
        w,
        h,
        ff::software::scaling::Flags::BILINEAR,
    )
    .unwrap();
    let mut rgb = ff::frame::Video::empty();
    scaler.run(frame, &mut rgb).unwrap();
    let stride = rgb.stride(0);
    let mut data = Vec::new();
    for y in 0..h as usize {
        data.extend_from_slice(&rgb.data(0)[y * stride..y * stride + w as usize * 3]);
    }
    RgbImage::from_raw(w, h, data).unwrap()
}

#[test]
fn probe_reports_duration_size_and_codec() {
    let info = probe_video(&fixture("video.mp4"), &VideoLimits::default()).unwrap();
    assert!((info.duration_s - 4.0).abs() < 0.05, "{info:?}");
    assert_eq!((info.width, info.height), (64, 48));
    assert_eq!(info.codec, "h264");
    assert_eq!(info.stream_index, 0);
    assert!((info.fps.unwrap() - 10.0).abs() < 1e-6, "{info:?}");
}

#[test]
fn uniform_sampling_hits_segment_midpoints() {
    let frames = sample_frames(
        &fixture("video.mp4"),
        Sampling::Uniform(4),
        &VideoLimits::default(),
    )
    .unwrap();
    assert_eq!(frames.len(), 4);
    let duration = probe_video(&fixture("video.mp4"), &VideoLimits::default())
        .unwrap()
        .duration_s;
    for (i, f) in frames.iter().enumerate() {
        let i_f = i as f64;
        assert_eq!(f.index, i);
        assert_eq!(f.start_s, i_f * duration / 4.0);
        assert_eq!(f.end_s, (i_f + 1.0) * duration / 4.0);
        let mid = (f.start_s + f.end_s) / 2.0;
        assert!(
            (f.time_s - mid).abs() <= FRAME_S + 1e-9,
            "frame {i}: {} vs {mid}",
            f.time_s
        );
        assert!(
            f.time_s >= mid - 1e-9,
            "the frame is the first at or after the target"
        );
        assert_eq!(f.image.dimensions(), (64, 48));
    }
    assert_eq!(frames[3].end_s, duration);
}

#[test]
fn fps_sampling_gives_one_frame_per_interval() {
    let frames = sample_frames(
        &fixture("video.mp4"),
        Sampling::Fps(2.0),
        &VideoLimits::default(),
    )
    .unwrap();
    assert_eq!(frames.len(), 8);
    for (i, f) in frames.iter().enumerate() {
        let target = i as f64 / 2.0;
        assert_eq!(f.start_s, target);
        assert!(f.end_s <= 4.0 + 1e-9 && (f.end_s - (target + 0.5)).abs() < 0.05);
        assert!(f.time_s >= target - 1e-9 && f.time_s - target <= FRAME_S + 1e-9);
    }
}

/// Seeking must land on exactly the frame sequential decoding produces at
/// that time: same timestamp, same pixels.
#[test]
fn seeked_frames_equal_sequentially_decoded_frames() {
    let reference = decode_all(&fixture("video.mp4"));
    assert_eq!(reference.len(), 40);
    for sampling in [Sampling::Uniform(4), Sampling::Fps(2.0), Sampling::Fps(3.0)] {
        let frames =
            sample_frames(&fixture("video.mp4"), sampling, &VideoLimits::default()).unwrap();
        for f in &frames {
            let (t, image) = reference
                .iter()
                .find(|(t, _)| (t - f.time_s).abs() < 1e-6)
                .unwrap_or_else(|| panic!("no decoded frame at {}", f.time_s));
            assert!(
                *image == f.image,
                "{sampling:?}: frame at {t} differs from sequential decode"
            );
        }
        // The fixture's frames all differ, so equality above is meaningful.
        for pair in frames.windows(2) {
            assert!(pair[0].image != pair[1].image);
        }
    }
}

#[test]
fn max_frames_caps_both_samplings() {
    let limits = VideoLimits {
        max_frames: 3,
        ..VideoLimits::default()
    };
    let path = fixture("video.mp4");
    assert_eq!(
        sample_frames(&path, Sampling::Uniform(10), &limits)
            .unwrap()
            .len(),
        3
    );
    let fps = sample_frames(&path, Sampling::Fps(2.0), &limits).unwrap();
    assert_eq!(fps.len(), 3);
    assert_eq!(fps[2].start_s, 1.0);
}

fn assert_bad_input(err: MediaError, path: &Path, needle: &str) {
    let msg = err.to_string();
    assert!(err.is_bad_input(), "not bad input: {msg}");
    assert!(
        msg.contains(&*path.to_string_lossy()),
        "message lacks the path: {msg}"
    );
    assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
}

#[test]
fn limits_refuse_long_and_large_videos() {
    let path = fixture("video.mp4");
    let long = VideoLimits {
        max_duration_s: 3.0,
        ..VideoLimits::default()
    };
    let err = probe_video(&path, &long).unwrap_err();
    assert!(matches!(err, MediaError::TooLong { .. }));
    assert_bad_input(err, &path, "too long");
    let err = sample_frames(&path, Sampling::Uniform(2), &long).unwrap_err();
    assert!(matches!(err, MediaError::TooLong { .. }));

    let large = VideoLimits {
        max_pixels: 64 * 48 - 1,
        ..VideoLimits::default()
    };
    let err = sample_frames(&path, Sampling::Uniform(2), &large).unwrap_err();
    assert!(matches!(err, MediaError::TooLarge { actual: 3072, .. }));
    assert_bad_input(err, &path, "too large");
}

#[test]
fn bad_files_are_bad_input_not_panics() {
    let cases = [
        ("empty.mp4", "empty"),
        ("not_a_video.mp4", "not a video"),
        ("three_pages.pdf", "not a video"),
        ("truncated_head.mp4", "corrupt"),
        ("audio_only.mp4", "no video stream"),
    ];
    for (name, needle) in cases {
        let path = fixture(name);
        let err = probe_video(&path, &VideoLimits::default()).unwrap_err();
        assert_bad_input(err, &path, needle);
        let err = sample_frames(&path, Sampling::Uniform(4), &VideoLimits::default()).unwrap_err();
        assert_bad_input(err, &path, needle);
    }
}

#[test]
fn truncated_media_data_is_reported() {
    let path = fixture("truncated_mid.mp4");
    // The index is intact, so the header still reads...
    let info = probe_video(&path, &VideoLimits::default()).unwrap();
    assert!((info.duration_s - 4.0).abs() < 0.05);
    // ...but the frames past the cut are gone.
    let err = sample_frames(&path, Sampling::Uniform(4), &VideoLimits::default()).unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    eprintln!("truncated_mid: {err}");
}

#[test]
fn missing_file_is_not_bad_input() {
    let err = probe_video(&fixture("no_such_file.mp4"), &VideoLimits::default()).unwrap_err();
    assert!(!err.is_bad_input());
    assert!(err.to_string().contains("no_such_file.mp4"));
}

#[test]
fn bad_sampling_arguments_are_errors() {
    let path = fixture("video.mp4");
    let err = sample_frames(&path, Sampling::Uniform(0), &VideoLimits::default()).unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)));
    let err = sample_frames(&path, Sampling::Fps(-1.0), &VideoLimits::default()).unwrap_err();
    assert!(matches!(err, MediaError::InvalidArgument(_)));
}
