//! What can go wrong in a service call. Front ends decide how each kind is
//! shown (an HTTP status in `api/error.rs`, a one-line message in the CLI).
use thiserror::Error;

use super::images::ImageError;
use crate::db::DbError;
use crate::engine::EngineError;
use crate::media::MediaError;

#[derive(Debug, Error)]
pub enum ServiceError {
    /// The request itself is wrong (missing or conflicting fields, a value
    /// out of range).
    #[error("{0}")]
    Invalid(String),
    /// The request is over a limit (inputs, images, hits).
    #[error("{0}")]
    TooLarge(String),
    /// A file of a kind the database cannot read.
    #[error("{0}")]
    UnsupportedFile(String),
    /// An uploaded file is not what the route needs (e.g. not a video).
    #[error("{0}")]
    WrongMedia(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The document's content was imported by reference (a path on the
    /// server), not stored.
    #[error("the content of {id:?} was imported by reference and is not stored in the database")]
    ContentExternal { id: String },
    #[error("document {id:?} in {collection:?} has no stored content (or does not exist)")]
    NoContent { collection: String, id: String },
    /// The document has no such page or video segment to picture.
    #[error("document {id:?} has no {what}")]
    NoSegment { id: String, what: String },
    /// Backups through the API are off (`server.backup_root` is not set).
    #[error("{0}")]
    BackupDisabled(String),
    /// A backup destination outside `server.backup_root`.
    #[error("{0}")]
    OutsideBackupRoot(String),
    /// This service was made without a model.
    #[error("no model is loaded")]
    NoModel,
    /// The request was dropped before its result was stored.
    #[error("cancelled before storing")]
    Cancelled,
    /// A task on the blocking pool panicked or was cancelled.
    #[error("worker task failed: {0}")]
    Worker(String),
    /// A file could not be written or read on the way (temporary files).
    #[error("{0}")]
    Io(String),
    /// The same error told with another message (an upload's temporary
    /// path replaced by the client's file name).
    #[error("{message}")]
    Renamed {
        message: String,
        source: Box<ServiceError>,
    },
    /// Prefixed with where in the request it happened (`input 3: …`).
    #[error("{context}: {source}")]
    In {
        context: String,
        source: Box<ServiceError>,
    },
}

impl ServiceError {
    /// Names where in the request the error happened.
    pub fn context(self, context: impl Into<String>) -> ServiceError {
        ServiceError::In {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The error under any [`ServiceError::In`] layers.
    pub fn root(&self) -> &ServiceError {
        match self {
            ServiceError::In { source, .. } | ServiceError::Renamed { source, .. } => source.root(),
            other => other,
        }
    }

    /// Caused by the caller's input rather than by us.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ServiceError::Invalid(_)
            | ServiceError::TooLarge(_)
            | ServiceError::UnsupportedFile(_)
            | ServiceError::WrongMedia(_)
            | ServiceError::ContentExternal { .. }
            | ServiceError::NoContent { .. }
            | ServiceError::NoSegment { .. }
            | ServiceError::BackupDisabled(_)
            | ServiceError::OutsideBackupRoot(_) => true,
            ServiceError::Db(e) => e.is_bad_input(),
            ServiceError::Engine(e) => e.is_bad_input(),
            ServiceError::Media(e) => e.is_bad_input(),
            ServiceError::Image(e) => e.is_bad_input(),
            ServiceError::In { source, .. } | ServiceError::Renamed { source, .. } => {
                source.is_bad_input()
            }
            ServiceError::NoModel
            | ServiceError::Cancelled
            | ServiceError::Worker(_)
            | ServiceError::Io(_) => false,
        }
    }
}
