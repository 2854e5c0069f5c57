//! Request bodies: JSON with errors that name the field, and multipart forms
//! read into memory (bounded by the body limit).
use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{FromRequest, Multipart, Request},
    http::header,
};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body. Unlike `axum::Json`, every rejection is an [`ApiError`]
/// (JSON, with the failing field's path).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + Send + 'static, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(&req) {
            return Err(ApiError::unsupported_media(
                "expected a JSON body (Content-Type: application/json)",
            ));
        }
        let bytes = body_bytes(req, state).await?;
        parse_json_off_thread(bytes).await.map(JsonBody)
    }
}

fn content_type(req: &Request) -> &str {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub fn is_json(req: &Request) -> bool {
    let ct = content_type(req).to_ascii_lowercase();
    ct.starts_with("application/json") || (ct.starts_with("application/") && ct.contains("+json"))
}

pub fn is_multipart(req: &Request) -> bool {
    content_type(req)
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
}

/// The whole body, within the router's body limit (413 past it).
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        let status = rejection.status();
        ApiError::rejected(status, rejection.body_text())
    })
}

/// Bodies above this are parsed on the blocking pool (tens of MB of JSON
/// would stall an async worker and every connection on it).
const PARSE_INLINE_MAX: usize = 256 * 1024;

pub async fn parse_json_off_thread<T: DeserializeOwned + Send + 'static>(
    bytes: Bytes,
) -> Result<T, ApiError> {
    if bytes.len() <= PARSE_INLINE_MAX {
        return parse_json(&bytes);
    }
    tokio::task::spawn_blocking(move || parse_json(&bytes)).await?
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body at `{path}`: {inner}"))
        }
    })?;
    // Only whitespace may follow the value (`{…} xyz` is not JSON).
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// One uploaded file of a multipart form.
pub struct UploadedFile {
    pub field: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// A multipart form read into memory: files (fields with a filename or a
/// non-text content type) and text fields.
#[derive(Default)]
pub struct Form {
    pub files: Vec<UploadedFile>,
    pub fields: HashMap<String, String>,
}

impl Form {
    pub async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Form, ApiError> {
        let mut multipart = Multipart::from_request(req, state).await.map_err(|r| {
            ApiError::bad_request(format!("invalid multipart form: {}", r.body_text()))
        })?;
        let mut form = Form::default();
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) => return Err(multipart_error(e)),
            };
            let name = field.name().unwrap_or("").to_owned();
            let filename = field.file_name().map(str::to_owned);
            let data = field.bytes().await.map_err(multipart_error)?;
            if filename.is_some() || name == "file" {
                form.files.push(UploadedFile {
                    field: name,
                    filename,
                    data: data.to_vec(),
                });
            } else {
                let text = String::from_utf8(data.to_vec()).map_err(|_| {
                    ApiError::bad_request(format!("form field {name:?} is not valid UTF-8"))
                })?;
                if form.fields.insert(name.clone(), text).is_some() {
                    return Err(ApiError::bad_request(format!(
                        "form field {name:?} is given more than once"
                    )));
                }
            }
        }
        Ok(form)
    }

    /// A form that must carry a `file` (415 unless the body is multipart):
    /// the other fields and the file.
    pub async fn read_upload(req: Request) -> Result<(Form, UploadedFile), ApiError> {
        if !is_multipart(&req) {
            return Err(ApiError::unsupported_media(
                "expected multipart/form-data with a `file` field",
            ));
        }
        let mut form = Form::read(req, &()).await?;
        let file = form.take_file()?;
        Ok((form, file))
    }

    /// The one file upload named `file` (a second one is refused, not
    /// ignored).
    pub fn take_file(&mut self) -> Result<UploadedFile, ApiError> {
        if self.files.iter().filter(|f| f.field == "file").count() > 1 {
            return Err(ApiError::bad_request(
                "the form has more than one `file`; send one file per request",
            ));
        }
        let at = self
            .files
            .iter()
            .position(|f| f.field == "file")
            .ok_or_else(|| ApiError::bad_request("the form has no `file` field"))?;
        Ok(self.files.remove(at))
    }

    /// A text field parsed as JSON (`metadata`, `filter`, …).
    pub fn json_field<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.fields.get(name) {
            None => Ok(None),
            Some(text) => serde_json::from_str(text).map(Some).map_err(|e| {
                ApiError::bad_request(format!("form field {name:?}: invalid JSON: {e}"))
            }),
        }
    }

    /// A text field parsed with `FromStr` (numbers, names).
    pub fn parsed_field<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        match self.fields.get(name) {
            None => Ok(None),
            Some(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| ApiError::bad_request(format!("form field {name:?}: {e}"))),
        }
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    ApiError::rejected(status, format!("multipart form: {}", e.body_text()))
}
