//! Where request images come from: data URLs, bare base64, http(s) URLs
//! (fetched with SSRF guards) and, only when `server.file_root` is set,
//! local files under that root.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use thiserror::Error;

use crate::config::ServerConfig;

/// Why an image reference could not be turned into bytes.
#[derive(Debug, Error)]
pub enum ImageError {
    /// Not a data URL, base64 or URL; an unreadable or non-regular file.
    #[error("{0}")]
    Invalid(String),
    /// The URL could not be fetched (bad URL, network, non-2xx answer).
    #[error("{0}")]
    FetchFailed(String),
    /// The URL names a loopback, private or link-local address.
    #[error("{0}")]
    PrivateAddress(String),
    /// Larger than `server.url_max_bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// A local file was named but `server.file_root` is not set.
    #[error("{0}")]
    FileAccessDisabled(String),
    /// A local file outside `server.file_root`.
    #[error("{0}")]
    OutsideFileRoot(String),
    /// The image client could not be set up (`server.file_root` missing, TLS).
    #[error("image sources: {0}")]
    Setup(String),
    #[error("worker task failed: {0}")]
    Worker(String),
}

impl ImageError {
    /// Caused by the reference the caller gave (not by our setup).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ImageError::Setup(_) | ImageError::Worker(_))
    }
}

type ImageResult<T> = Result<T, ImageError>;

/// Fetches images named in requests.
pub struct ImageSources {
    client: reqwest::Client,
    allow_private: bool,
    max_bytes: u64,
    timeout: Duration,
    file_root: Option<PathBuf>,
}

impl ImageSources {
    pub fn new(config: &ServerConfig) -> ImageResult<ImageSources> {
        let allow_private = config.allow_private_urls;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            // `previous` holds the URLs requested so far, the first one
            // included: 5 redirects means 6 of them.
            if attempt.previous().len() > 5 {
                return attempt.error("more than 5 redirects");
            }
            match check_url(attempt.url(), allow_private) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e.to_string()),
            }
        });
        let timeout = Duration::from_secs(config.url_timeout_secs);
        let client = reqwest::Client::builder()
            // Every connection, redirects included, resolves through the
            // guard, so a name cannot be re-pointed at an internal address
            // between our check and the connect.
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .redirect(redirect)
            .no_proxy()
            .timeout(timeout)
            .user_agent(concat!("tkr-embed/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImageError::Setup(e.to_string()))?;
        let file_root = match &config.file_root {
            Some(root) => Some(std::fs::canonicalize(root).map_err(|e| {
                ImageError::Setup(format!("server.file_root {}: {e}", root.display()))
            })?),
            None => None,
        };
        Ok(ImageSources {
            client,
            allow_private,
            max_bytes: config.url_max_bytes,
            timeout,
            file_root,
        })
    }

    /// The bytes of an image given as a data URL, an http(s) URL, a
    /// `file://` path (under `file_root` only) or bare base64.
    pub async fn load(&self, source: &str) -> ImageResult<Vec<u8>> {
        let source = source.trim();
        if let Some(rest) = source.strip_prefix("data:") {
            return decode_data_url(rest);
        }
        let lower = source.get(..8).unwrap_or(source).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return self.fetch(source).await;
        }
        if lower.starts_with("file://") {
            return self.read_file(&source[7..]).await;
        }
        decode_base64(source).map_err(|_| {
            ImageError::Invalid(
                "image must be a data URL (data:image/png;base64,...), base64, or an http(s) URL"
                    .into(),
            )
        })
    }

    async fn fetch(&self, url: &str) -> ImageResult<Vec<u8>> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| url_error(format!("invalid image URL {url:?}: {e}")))?;
        check_url(&parsed, self.allow_private)?;
        let fail = |e: reqwest::Error| {
            if e.is_timeout() {
                url_error(format!(
                    "fetching {url} took longer than {} s",
                    self.timeout.as_secs()
                ))
            } else {
                // The guard's refusal surfaces here as a connect error; its
                // text names the reason.
                url_error(format!("fetching {url}: {}", error_chain(&e)))
            }
        };
        let mut response = self.client.get(parsed).send().await.map_err(fail)?;
        if !response.status().is_success() {
            return Err(url_error(format!(
                "fetching {url}: the server answered {}",
                response.status()
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(self.too_big(url));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fail)? {
            if (body.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(self.too_big(url));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn too_big(&self, url: &str) -> ImageError {
        ImageError::TooLarge(format!(
            "the image at {url} is larger than server.url_max_bytes ({} bytes)",
            self.max_bytes
        ))
    }

    async fn read_file(&self, path: &str) -> ImageResult<Vec<u8>> {
        let Some(root) = self.file_root.clone() else {
            return Err(ImageError::FileAccessDisabled(
                "reading local files through the API is off (set server.file_root to allow a directory)"
                    .into(),
            ));
        };
        let path = file_url_path(path);
        let max = self.max_bytes;
        tokio::task::spawn_blocking(move || read_under_root(&root, &path, max))
            .await
            .map_err(|e| ImageError::Worker(e.to_string()))?
    }
}

/// The path of a `file://` reference: `file:///abs/path` (percent-decoded)
/// or `file://relative/path` (relative to the root, taken literally).
fn file_url_path(rest: &str) -> PathBuf {
    if rest.starts_with('/') {
        if let Ok(url) = url::Url::parse(&format!("file://{rest}")) {
            if let Ok(path) = url.to_file_path() {
                return path;
            }
        }
    }
    PathBuf::from(rest)
}

/// Reads `path` (absolute, or relative to `root`) if it lies inside `root`
/// (canonical). The check is made on the path as written before touching
/// the file system (so nothing outside can be probed), then again on the
/// resolved path (so a symlink cannot lead out); only regular files are
/// read, and never more than `max` bytes.
fn read_under_root(root: &Path, path: &Path, max: u64) -> ImageResult<Vec<u8>> {
    use std::io::Read;
    let outside =
        || ImageError::OutsideFileRoot(format!("{} is outside server.file_root", path.display()));
    let joined = lexical_normalize(&root.join(path));
    if !joined.starts_with(root) {
        return Err(outside());
    }
    let resolved = std::fs::canonicalize(&joined)
        .map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))?;
    if !resolved.starts_with(root) {
        return Err(outside());
    }
    let not_a_file = || ImageError::Invalid(format!("{} is not a regular file", path.display()));
    // Opening a FIFO (or a device) can wait forever: look first, and open
    // without blocking, then check what was opened (it may have been
    // swapped in between).
    let looked = std::fs::metadata(&resolved)
        .map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))?;
    if !looked.is_file() {
        return Err(not_a_file());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(&resolved)
        .map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))?;
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(not_a_file());
    }
    let mut data = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut data)
        .map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))?;
    if data.len() as u64 > max {
        return Err(ImageError::TooLarge(format!(
            "{} is larger than server.url_max_bytes ({max} bytes)",
            path.display()
        )));
    }
    Ok(data)
}

/// Removes `.` and resolves `..` without the file system (`..` at the top
/// stays at the top).
fn lexical_normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn url_error(message: String) -> ImageError {
    ImageError::FetchFailed(message)
}

/// reqwest hides the root cause in `source()`; users need it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Scheme and literal-address checks (names are checked by the resolver).
fn check_url(url: &reqwest::Url, allow_private: bool) -> ImageResult<()> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(url_error(format!(
            "only http and https image URLs are fetched, not {}:",
            url.scheme()
        )));
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(url_error(format!("image URL {url} has no host"))),
    };
    if let Some(ip) = ip {
        if !allow_private && !is_public(ip) {
            return Err(private_error(&ip.to_string()));
        }
    }
    Ok(())
}

fn private_error(host: &str) -> ImageError {
    ImageError::PrivateAddress(format!(
        "image URL host {host} is a loopback, private or link-local address; \
             these are refused (server.allow_private_urls)"
    ))
}

/// Whether an address is on the public internet (not loopback, private,
/// link-local, CGNAT, multicast, unspecified or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        // ::ffff:a.b.c.d and the deprecated ::a.b.c.d both reach IPv4 hosts.
        IpAddr::V6(v6) => match v6.to_ipv4() {
            Some(v4) if !v6.is_loopback() && !v6.is_unspecified() => is_public_v4(v4),
            _ => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF 192.0.0/24
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let first = seg[0];
    // Prefixes that carry an IPv4 address a gateway may forward to: judge
    // the embedded address (NAT64 64:ff9b::/96, 6to4 2002::/16); Teredo
    // (2001::/32) hides it obfuscated, so refuse it.
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(seg[6], seg[7]));
    }
    // IPv4-translated addresses (SIIT, ::ffff:0:a.b.c.d).
    if seg[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return is_public_v4(embedded(seg[6], seg[7]));
    }
    if first == 0x2002 {
        return is_public_v4(embedded(seg[1], seg[2]));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first == 0x2001 && seg[1] == 0) // Teredo
        || (first == 0x64 && seg[1] == 0xff9b) // local-use NAT64 64:ff9b:1::/48
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0) // site-local fec0::/10 (deprecated)
}

/// Resolves names and drops non-public addresses (unless allowed).
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves only to loopback, private or link-local addresses, \
                     which are refused (server.allow_private_urls)"
                )
                .into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

fn decode_data_url(rest: &str) -> ImageResult<Vec<u8>> {
    let (header, data) = rest
        .split_once(',')
        .ok_or_else(|| ImageError::Invalid("data URL has no ',' before its data".into()))?;
    if !header.ends_with(";base64") {
        return Err(ImageError::Invalid(
            "only base64 data URLs are supported (data:<type>;base64,<data>)".into(),
        ));
    }
    decode_base64(data).map_err(|e| ImageError::Invalid(format!("data URL: invalid base64: {e}")))
}

/// Standard or URL-safe alphabet, padded or not, whitespace ignored.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(base64::DecodeError::InvalidLength(0));
    }
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    standard
        .decode(&compact)
        .or_else(|_| url_safe.decode(&compact))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "192.0.0.8",
            "198.18.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\nbG8=").unwrap(), b"hello");
        assert!(decode_base64("not base64!").is_err());
        assert_eq!(
            decode_data_url("image/png;base64,aGVsbG8=").unwrap(),
            b"hello"
        );
        assert!(decode_data_url("image/png,hello").is_err());
    }

    #[test]
    fn file_root_confinement() {
        let root = tempfile::tempdir().unwrap();
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root_path.join("a.png"), b"x").unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        assert_eq!(
            read_under_root(&root_path, Path::new("a.png"), 10).unwrap(),
            b"x"
        );
        let code = |p: &str| match read_under_root(&root_path, Path::new(p), 10).unwrap_err() {
            ImageError::OutsideFileRoot(_) => "outside_file_root",
            ImageError::Invalid(_) => "invalid_request",
            ImageError::TooLarge(_) => "payload_too_large",
            other => panic!("unexpected {other:?}"),
        };
        // Outside by `..`, by absolute path, whether or not it exists.
        assert_eq!(code("../../../../etc/passwd"), "outside_file_root");
        assert_eq!(code("/etc/passwd"), "outside_file_root");
        assert_eq!(code("/no/such/file"), "outside_file_root");
        // A symlink inside the root that points out.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.path().join("secret"), root_path.join("link"))
                .unwrap();
            assert_eq!(code("link"), "outside_file_root");
        }
        // Directories are not files; size is capped.
        std::fs::create_dir(root_path.join("d")).unwrap();
        assert_eq!(code("d"), "invalid_request");
        std::fs::write(root_path.join("big"), vec![0u8; 11]).unwrap();
        assert_eq!(code("big"), "payload_too_large");
        assert_eq!(
            file_url_path("/tmp/a%20b.png"),
            PathBuf::from("/tmp/a b.png")
        );
    }
}
