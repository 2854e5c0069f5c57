//! Video probing and frame sampling through FFmpeg (the `ffmpeg-next` crate,
//! safe API only).
//!
//! Sampling seeks to each target time instead of decoding the whole file:
//! the cost per sampled frame is at most one group of pictures (keyframe
//! interval), so a two-hour film costs the same as a two-minute clip for the
//! same number of frames.
//!
//! Frames are converted to RGB at the stream's display size (coded size
//! stretched by the sample aspect ratio). Rotation metadata (the display
//! matrix of phone videos) is ignored: a portrait phone video comes out
//! sideways, which the embedder tolerates and which keeps this layer free of
//! filter graphs.

use std::path::Path;
use std::sync::Once;

use ff::format::context::Input;
use ff::software::scaling;
use ff::Rescale as _;
use ffmpeg_next as ff;
use image::RgbImage;

use super::{detect_kind, MediaError, MediaKind, Result, DETECT_HEAD_LEN};

/// Refusal thresholds, checked before any decoding.
#[derive(Debug, Clone)]
pub struct VideoLimits {
    /// Upper bound on the frames one call returns (memory: each frame is an
    /// uncompressed RGB image).
    pub max_frames: usize,
    /// Longer videos are refused rather than sampled sparsely.
    pub max_duration_s: f64,
    /// Upper bound on width × height of the video stream (decoder memory).
    pub max_pixels: u64,
}

impl Default for VideoLimits {
    fn default() -> Self {
        VideoLimits {
            max_frames: 64,
            max_duration_s: 4.0 * 3600.0,
            max_pixels: 7680 * 4320,
        }
    }
}

/// What [`probe_video`] learns about a file's best video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Duration of the video stream (falls back to the container's).
    pub duration_s: f64,
    /// Coded width of the stream, in pixels.
    pub width: u32,
    /// Coded height of the stream, in pixels.
    pub height: u32,
    /// Average frame rate, when the container knows it.
    pub fps: Option<f64>,
    /// FFmpeg's short codec name, e.g. `h264`.
    pub codec: String,
    /// Index of the video stream inside the container.
    pub stream_index: usize,
}

/// How to choose the frames to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// `n` frames, one from the middle of each of `n` equal segments.
    Uniform(usize),
    /// One frame every `1/f` seconds, starting at 0.
    Fps(f64),
}

/// One sampled frame and the stretch of the video it stands for.
#[derive(Debug, Clone)]
pub struct SampledFrame {
    /// Position of this frame in the returned list.
    pub index: usize,
    /// Presentation time of the decoded frame, in seconds from the start of
    /// the stream (not the requested target time).
    pub time_s: f64,
    /// Start of the segment this frame represents, in seconds.
    pub start_s: f64,
    /// End of the segment this frame represents, in seconds.
    pub end_s: f64,
    /// The frame, RGB, at the stream's display size.
    pub image: RgbImage,
}

/// Demuxers we let FFmpeg use. FFmpeg can open far more than videos (HLS and
/// concat playlists that reference other files or URLs, raw streams, images);
/// restricting it to the containers `detect_kind` recognises keeps a hostile
/// file from making FFmpeg read anything but itself.
const FORMAT_WHITELIST: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi";

/// Reads the file's header and its best video stream, and checks it against
/// `limits`.
///
/// Refuses, as bad input: empty files, files that are not a video container
/// (by content, whatever the extension), containers without a video stream,
/// streams of unknown duration, and videos over `limits`.
pub fn probe_video(path: &Path, limits: &VideoLimits) -> Result<VideoInfo> {
    Ok(OpenVideo::open(path, limits)?.info)
}

/// Samples frames according to `sampling`, each with the segment of the
/// video it represents; see [`Sampling`] for the exact segments.
///
/// Every frame is found by seeking to the keyframe at or before its target
/// time and decoding forward to the first frame whose presentation time is
/// at or after the target (or the stream's last frame, if the target lies
/// beyond it but within the segment).
pub fn sample_frames(
    path: &Path,
    sampling: Sampling,
    limits: &VideoLimits,
) -> Result<Vec<SampledFrame>> {
    let mut video = OpenVideo::open(path, limits)?;
    let segments = plan_segments(sampling, video.info.duration_s, limits.max_frames)?;
    let mut frames = Vec::with_capacity(segments.len());
    for (index, segment) in segments.into_iter().enumerate() {
        let (time_s, image) = video.frame_at(&segment, limits)?;
        frames.push(SampledFrame {
            index,
            time_s,
            start_s: segment.start_s,
            end_s: segment.end_s,
            image,
        });
    }
    Ok(frames)
}

/// The frame that stands for the stretch `[start_s, end_s)` of the video:
/// the first frame at or after its middle (as [`Sampling::Uniform`] picks
/// it), with its presentation time. For pictures of segments already
/// embedded (thumbnails), where only the stretch was kept.
pub fn frame_in(
    path: &Path,
    start_s: f64,
    end_s: f64,
    limits: &VideoLimits,
) -> Result<(f64, RgbImage)> {
    if !(start_s.is_finite() && end_s.is_finite() && 0.0 <= start_s && start_s <= end_s) {
        return Err(MediaError::InvalidArgument(format!(
            "a video stretch needs 0 <= start <= end, got {start_s} to {end_s}"
        )));
    }
    let mut video = OpenVideo::open(path, limits)?;
    let segment = Segment {
        start_s,
        end_s,
        target_s: (start_s + end_s) / 2.0,
    };
    video.frame_at(&segment, limits)
}

/// A stretch of the video and the time we want a frame from.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    start_s: f64,
    end_s: f64,
    target_s: f64,
}

/// Turns a sampling request into segments over `[0, duration_s]`.
fn plan_segments(sampling: Sampling, duration_s: f64, max_frames: usize) -> Result<Vec<Segment>> {
    if max_frames == 0 {
        return Err(MediaError::InvalidArgument(
            "VideoLimits::max_frames must be at least 1".into(),
        ));
    }
    match sampling {
        Sampling::Uniform(0) => Err(MediaError::InvalidArgument(
            "Sampling::Uniform needs at least 1 frame".into(),
        )),
        Sampling::Uniform(n) => {
            let n = n.min(max_frames);
            let len = duration_s / n as f64;
            Ok((0..n)
                .map(|i| {
                    let start_s = i as f64 * len;
                    // Computed from (i+1) rather than start+len so the last
                    // segment ends exactly at the duration.
                    let end_s = (i + 1) as f64 * duration_s / n as f64;
                    Segment {
                        start_s,
                        end_s,
                        target_s: (start_s + end_s) / 2.0,
                    }
                })
                .collect())
        }
        Sampling::Fps(f) if !(f.is_finite() && f > 0.0) => Err(MediaError::InvalidArgument(
            format!("Sampling::Fps needs a positive, finite rate, got {f}"),
        )),
        Sampling::Fps(f) => Ok((0..max_frames)
            .map(|i| (i as f64 / f, (i + 1) as f64 / f))
            .take_while(|&(start_s, _)| start_s < duration_s)
            .map(|(start_s, next_s)| Segment {
                start_s,
                end_s: next_s.min(duration_s),
                target_s: start_s,
            })
            .collect()),
    }
}

/// An opened container with a decoder for its best video stream.
struct OpenVideo<'p> {
    path: &'p Path,
    input: Input,
    decoder: ff::decoder::Video,
    info: VideoInfo,
    time_base: ff::Rational,
    /// Presentation timestamp of the stream's start, in `time_base` units;
    /// reported times are relative to it so they run from 0 to the duration.
    start_pts: i64,
    /// Created on first use and recreated if the frame geometry changes.
    scaler: Option<Scaler>,
}

/// A swscale context and the geometry it was built for.
struct Scaler {
    context: scaling::Context,
    key: (ff::format::Pixel, u32, u32, u32, u32),
}

impl<'p> OpenVideo<'p> {
    /// Opens `path`, finds its video stream, checks `limits`, and opens a
    /// decoder.
    fn open(path: &'p Path, limits: &VideoLimits) -> Result<Self> {
        init_ffmpeg();
        check_is_video_file(path)?;
        let input = open_input(path)?;
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| MediaError::Unsupported {
                path: path.to_owned(),
                reason: "the container has no video stream".into(),
            })?;
        let stream_index = stream.index();
        let time_base = stream.time_base();
        let start_pts = Some(stream.start_time())
            .filter(|&t| t != ff::ffi::AV_NOPTS_VALUE)
            .unwrap_or(0);
        let fps = rational_to_f64(stream.avg_frame_rate()).or(rational_to_f64(stream.rate()));
        let duration_s =
            stream_duration_s(&input, &stream).ok_or_else(|| MediaError::Unsupported {
                path: path.to_owned(),
                reason: "the video's duration is unknown (a raw or live stream?)".into(),
            })?;
        let context = ff::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|source| ffmpeg_err(path, "reading codec parameters", source))?;
        let codec = context.id().name().to_owned();
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| MediaError::Unsupported {
                path: path.to_owned(),
                reason: format!("no decoder for video codec {codec:?}: {e}"),
            })?;
        let info = VideoInfo {
            duration_s,
            width: decoder.width(),
            height: decoder.height(),
            fps,
            codec,
            stream_index,
        };
        check_limits(path, &info, limits)?;
        Ok(OpenVideo {
            path,
            input,
            decoder,
            info,
            time_base,
            start_pts,
            scaler: None,
        })
    }

    /// Seeks to `segment.target_s` and returns the first frame at or after
    /// it, with its presentation time in seconds.
    fn frame_at(&mut self, segment: &Segment, limits: &VideoLimits) -> Result<(f64, RgbImage)> {
        let target_pts = self.start_pts + seconds_to_pts(segment.target_s, self.time_base);
        self.seek_before(target_pts)?;
        let (pts, frame) = self
            .decode_until(target_pts)?
            .ok_or_else(|| MediaError::Truncated {
                path: self.path.to_owned(),
                reason: format!(
                    "no video frame could be decoded from {:.3} s on although the container says \
                 the video lasts {:.3} s",
                    segment.target_s, self.info.duration_s
                ),
            })?;
        let time_s = pts_to_seconds(pts - self.start_pts, self.time_base);
        // The fallback "last frame of the stream" is only honest if that frame
        // lies in the segment; otherwise the stream stopped early, which is
        // what a file cut short looks like.
        if pts < target_pts && time_s < segment.start_s {
            return Err(MediaError::Truncated {
                path: self.path.to_owned(),
                reason: format!(
                    "video frames end at {time_s:.3} s although the container says the video \
                     lasts {:.3} s",
                    self.info.duration_s
                ),
            });
        }
        let image = self.convert_to_rgb(&frame, limits)?;
        Ok((time_s, image))
    }

    /// Positions the demuxer on the last keyframe at or before `target_pts`
    /// and resets the decoder, so that decoding forward reaches the target
    /// with the least work and no state from before the seek.
    fn seek_before(&mut self, target_pts: i64) -> Result<()> {
        // With no stream index, `avformat_seek_file` takes AV_TIME_BASE
        // units. The range `..ts` becomes max_ts = ts (ffmpeg-next passes the
        // end as an inclusive bound): "a keyframe at or before ts".
        let ts = target_pts.rescale(self.time_base, ff::rescale::TIME_BASE);
        if self.input.seek(ts, ..ts).is_err() {
            // A stream whose first keyframe starts a hair after the target
            // (rounding, edit lists) has no keyframe before it; the nearest
            // one is then the first one, which is what we want.
            self.input.seek(ts, ..).map_err(|e| MediaError::Corrupt {
                path: self.path.to_owned(),
                reason: format!("cannot seek to {ts} µs: {e}"),
            })?;
        }
        self.decoder.flush();
        Ok(())
    }

    /// Decodes forward until a frame with pts >= `target_pts`. Returns that
    /// frame, or the last frame decoded if the stream ends first, or `None`
    /// if nothing could be decoded. Frames without a timestamp cannot be
    /// placed in time and are skipped.
    fn decode_until(&mut self, target_pts: i64) -> Result<Option<(i64, ff::frame::Video)>> {
        let mut last: Option<(i64, ff::frame::Video)> = None;
        let mut frame = ff::frame::Video::empty();
        let mut packet = ff::Packet::empty();
        let mut at_eof = false;
        loop {
            if !at_eof {
                match packet.read(&mut self.input) {
                    Ok(()) if packet.stream() != self.info.stream_index => continue,
                    Ok(()) => self.send_packet(&packet)?,
                    Err(ff::Error::Eof) => {
                        at_eof = true;
                        // Flushes the frames the decoder holds back for
                        // reordering (B-frames).
                        self.decoder.send_eof().map_err(|e| self.decode_err(e))?;
                    }
                    Err(e) => {
                        return Err(MediaError::Corrupt {
                            path: self.path.to_owned(),
                            reason: format!("reading video data failed: {e}"),
                        })
                    }
                }
            }
            loop {
                match self.decoder.receive_frame(&mut frame) {
                    Ok(()) => {
                        let Some(pts) = frame.timestamp() else {
                            continue;
                        };
                        if pts >= target_pts {
                            return Ok(Some((pts, frame)));
                        }
                        // Swap rather than clone: the old `last` buffer is
                        // reused (and unref'd) by the next receive_frame.
                        let previous = last.replace((pts, frame));
                        frame = previous
                            .map(|(_, f)| f)
                            .unwrap_or_else(ff::frame::Video::empty);
                    }
                    Err(ff::Error::Eof) => return Ok(last),
                    // After end of stream the decoder must not ask for
                    // more input; if it does, stop rather than spin.
                    Err(ff::Error::Other { errno }) if errno == ff::error::EAGAIN && at_eof => {
                        return Ok(last)
                    }
                    Err(ff::Error::Other { errno }) if errno == ff::error::EAGAIN => break,
                    Err(e) => return Err(self.decode_err(e)),
                }
            }
        }
    }

    /// Feeds one packet. The receive loop drains the decoder after every
    /// packet, so "try again" cannot happen with the send/receive API's
    /// contract; it is still mapped to an error rather than a panic.
    fn send_packet(&mut self, packet: &ff::Packet) -> Result<()> {
        self.decoder
            .send_packet(packet)
            .map_err(|e| self.decode_err(e))
    }

    /// Decoder errors on data we were given mean the stream is broken.
    fn decode_err(&self, e: ff::Error) -> MediaError {
        MediaError::Corrupt {
            path: self.path.to_owned(),
            reason: format!("decoding the {} video stream failed: {e}", self.info.codec),
        }
    }

    /// Converts a decoded frame to packed RGB at its display size.
    fn convert_to_rgb(
        &mut self,
        frame: &ff::frame::Video,
        limits: &VideoLimits,
    ) -> Result<RgbImage> {
        let (width, height) = (frame.width(), frame.height());
        let (out_w, out_h) = display_size(width, height, frame.aspect_ratio(), limits.max_pixels);
        let key = (frame.format(), width, height, out_w, out_h);
        let scaler = match &mut self.scaler {
            Some(s) if s.key == key => s,
            slot => {
                // Bilinear is plenty for the modest resampling a sample
                // aspect ratio asks for, and it is deterministic.
                let context = scaling::Context::get(
                    frame.format(),
                    width,
                    height,
                    ff::format::Pixel::RGB24,
                    out_w,
                    out_h,
                    scaling::Flags::BILINEAR,
                )
                .map_err(|e| MediaError::Unsupported {
                    path: self.path.to_owned(),
                    reason: format!(
                        "cannot convert {:?} frames of {width}x{height} to RGB: {e}",
                        frame.format()
                    ),
                })?;
                slot.insert(Scaler { context, key })
            }
        };
        let mut rgb = ff::frame::Video::empty();
        scaler
            .context
            .run(frame, &mut rgb)
            .map_err(|e| ffmpeg_err(self.path, "converting a frame to RGB", e))?;
        packed_rgb(&rgb).ok_or_else(|| MediaError::Tool {
            path: self.path.to_owned(),
            tool: "swscale",
            message: "RGB frame has an unexpected layout".into(),
        })
    }
}

/// Copies an RGB24 frame (rows padded to `stride`) into a tight `RgbImage`.
fn packed_rgb(rgb: &ff::frame::Video) -> Option<RgbImage> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let stride = rgb.stride(0);
    let row = w * 3;
    let data = rgb.data(0);
    let mut pixels = Vec::with_capacity(row * h);
    for y in 0..h {
        pixels.extend_from_slice(data.get(y * stride..y * stride + row)?);
    }
    RgbImage::from_raw(rgb.width(), rgb.height(), pixels)
}

/// Display size: the coded size with the width stretched by the sample
/// aspect ratio (anamorphic video). Falls back to the coded size when the
/// ratio is unset or would inflate the frame past `max_pixels`.
fn display_size(width: u32, height: u32, sar: ff::Rational, max_pixels: u64) -> (u32, u32) {
    let (num, den) = (i64::from(sar.numerator()), i64::from(sar.denominator()));
    if num <= 0 || den <= 0 || num == den {
        return (width, height);
    }
    let stretched = (i64::from(width) * num + den / 2) / den;
    match u32::try_from(stretched) {
        Ok(w) if w > 0 && u64::from(w) * u64::from(height) <= max_pixels => (w, height),
        _ => (width, height),
    }
}

/// Refuses files that are not a video container by content, before FFmpeg
/// sees them: FFmpeg would happily guess at many other formats.
fn check_is_video_file(path: &Path) -> Result<()> {
    use std::io::Read;
    let io_err = |action, source| MediaError::Io {
        path: path.to_owned(),
        action,
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| io_err("opening the file", e))?;
    let mut head = Vec::with_capacity(DETECT_HEAD_LEN);
    file.take(DETECT_HEAD_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| io_err("reading the file", e))?;
    if head.is_empty() {
        return Err(MediaError::Empty {
            path: path.to_owned(),
        });
    }
    match detect_kind(path, &head) {
        Some(MediaKind::Video) => Ok(()),
        Some(other) => Err(MediaError::Unsupported {
            path: path.to_owned(),
            reason: format!("not a video: the content is {other:?}"),
        }),
        None => Err(MediaError::Unsupported {
            path: path.to_owned(),
            reason: "not a video: the content is not an MP4/MOV, Matroska/WebM or AVI \
                     container (the extension is not trusted)"
                .into(),
        }),
    }
}

/// Opens the container with only local-file access and known demuxers.
fn open_input(path: &Path) -> Result<Input> {
    let mut options = ff::Dictionary::new();
    options.set("format_whitelist", FORMAT_WHITELIST);
    options.set("protocol_whitelist", "file");
    ff::format::input_with_dictionary(path, options).map_err(|e| MediaError::Corrupt {
        path: path.to_owned(),
        reason: format!("the video container cannot be parsed (damaged or truncated?): {e}"),
    })
}

/// The stream's own duration if known, else the container's. The stream's
/// is preferred because a container may also hold longer audio.
fn stream_duration_s(input: &Input, stream: &ff::Stream) -> Option<f64> {
    let from_stream = Some(stream.duration())
        .filter(|&d| d > 0 && d != ff::ffi::AV_NOPTS_VALUE)
        .map(|d| pts_to_seconds(d, stream.time_base()));
    let from_container = Some(input.duration())
        .filter(|&d| d > 0 && d != ff::ffi::AV_NOPTS_VALUE)
        .map(|d| d as f64 / f64::from(ff::ffi::AV_TIME_BASE));
    from_stream
        .or(from_container)
        .filter(|d| d.is_finite() && *d > 0.0)
}

/// Refuses videos over `limits`.
fn check_limits(path: &Path, info: &VideoInfo, limits: &VideoLimits) -> Result<()> {
    if info.duration_s > limits.max_duration_s {
        return Err(MediaError::TooLong {
            path: path.to_owned(),
            duration_s: info.duration_s,
            max_s: limits.max_duration_s,
        });
    }
    let pixels = u64::from(info.width) * u64::from(info.height);
    if pixels == 0 {
        return Err(MediaError::Corrupt {
            path: path.to_owned(),
            reason: "the video stream has no frame size".into(),
        });
    }
    if pixels > limits.max_pixels {
        return Err(MediaError::TooLarge {
            path: path.to_owned(),
            what: "frame size in pixels (width x height)",
            actual: pixels,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

fn seconds_to_pts(seconds: f64, time_base: ff::Rational) -> i64 {
    (seconds * f64::from(time_base.denominator()) / f64::from(time_base.numerator())).round() as i64
}

fn pts_to_seconds(pts: i64, time_base: ff::Rational) -> f64 {
    pts as f64 * f64::from(time_base.numerator()) / f64::from(time_base.denominator())
}

fn rational_to_f64(r: ff::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r))
}

fn ffmpeg_err(path: &Path, context: &'static str, source: ff::Error) -> MediaError {
    MediaError::Ffmpeg {
        path: path.to_owned(),
        context,
        source,
    }
}

/// FFmpeg's global setup, once per process. Its log goes to stderr and would
/// print a line for every damaged packet of a bad upload; errors are all we
/// want to see there, the rest reaches the caller as `MediaError`.
fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Only registers components on FFmpeg < 5 and cannot fail on 5+;
        // a failure would surface anyway when opening the first file.
        let _ = ff::init();
        // Fatal only: FFmpeg's error lines ("Invalid NAL unit size") would
        // interleave with our progress bars; the same failure reaches the
        // caller as a MediaError with its own message.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_segments_are_exact() {
        let s = plan_segments(Sampling::Uniform(4), 4.0, 64).unwrap();
        let got: Vec<_> = s.iter().map(|s| (s.start_s, s.end_s, s.target_s)).collect();
        assert_eq!(
            got,
            vec![
                (0.0, 1.0, 0.5),
                (1.0, 2.0, 1.5),
                (2.0, 3.0, 2.5),
                (3.0, 4.0, 3.5)
            ]
        );
        assert_eq!(
            plan_segments(Sampling::Uniform(10), 4.0, 3).unwrap().len(),
            3
        );
    }

    #[test]
    fn fps_segments_stop_at_duration() {
        let s = plan_segments(Sampling::Fps(2.0), 3.2, 64).unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!((s[6].start_s, s[6].end_s, s[6].target_s), (3.0, 3.2, 3.0));
        assert_eq!(plan_segments(Sampling::Fps(2.0), 4.0, 5).unwrap().len(), 5);
    }

    #[test]
    fn bad_sampling_arguments() {
        assert!(plan_segments(Sampling::Uniform(0), 4.0, 64).is_err());
        assert!(plan_segments(Sampling::Fps(0.0), 4.0, 64).is_err());
        assert!(plan_segments(Sampling::Fps(f64::NAN), 4.0, 64).is_err());
        assert!(plan_segments(Sampling::Uniform(3), 4.0, 0).is_err());
    }

    #[test]
    fn display_size_applies_sample_aspect_ratio() {
        assert_eq!(
            display_size(720, 576, ff::Rational(16, 15), u64::MAX),
            (768, 576)
        );
        assert_eq!(display_size(64, 48, ff::Rational(0, 1), u64::MAX), (64, 48));
        assert_eq!(
            display_size(64, 48, ff::Rational(1000, 1), 10_000),
            (64, 48)
        );
    }
}
