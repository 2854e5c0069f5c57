//! Collections and documents: create, list, drop; insert content, files and
//! uploads; read, delete, fetch stored content.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::views::{CollectionView, DocumentPage, DocumentView, Inserted};
use super::{blocking, cancelled, commit, CancelOnDrop, ImageInput, Result, Service, ServiceError};
use crate::db::files::{embed_file, merge_summary, Progress};
use crate::db::{CollectionOptions, ContentData, ContentDocument, DbError};
use crate::media::{detect_kind, MediaKind};
use crate::types::VectorEncoding;

/// Most documents one listing page may hold.
pub const MAX_PAGE: usize = 1000;

/// A document given by its content: text and/or images (embedded together
/// into one vector), or a precomputed vector.
#[derive(Debug, Clone, Default)]
pub struct InsertContent {
    pub id: Option<String>,
    pub text: Option<String>,
    pub images: Vec<ImageInput>,
    /// A JSON object or `null`.
    pub metadata: Value,
    pub vector: Option<Vec<f32>>,
}

/// A file to ingest: one on this machine, or an upload held in memory.
pub enum FileSource {
    Path(PathBuf),
    Upload(Upload),
}

/// An uploaded file: FFmpeg and poppler read files, so it goes to a
/// temporary file (named like the upload, for the text kinds' extension).
pub struct Upload {
    /// The client's file name (may be empty).
    pub name: String,
    pub data: Vec<u8>,
}

impl Upload {
    pub fn to_temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let suffix = Path::new(&self.name)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        super::temp_file(&self.data, "tkr-upload-", &suffix)
    }

    /// Error messages name the file they are about; for an upload that is
    /// the client's file name, not our temporary copy.
    pub fn rename_in(&self, error: ServiceError, temp: &Path) -> ServiceError {
        let name = if self.name.is_empty() {
            "the upload"
        } else {
            &self.name
        };
        let message = error.to_string();
        let renamed = message.replace(&temp.display().to_string(), name);
        if renamed == message {
            return error;
        }
        ServiceError::Renamed {
            message: renamed,
            source: Box::new(error),
        }
    }
}

/// What kinds of file the database reads, for error messages.
const SUPPORTED: &str = "images, MP4/MOV/MKV/WebM/AVI video, PDF, .txt, .md, .html";

impl Service {
    pub async fn list_collections(&self) -> Result<Vec<CollectionView>> {
        let list = self.with_db(|db| db.list_collections()).await?;
        Ok(list.iter().map(CollectionView::from).collect())
    }

    pub async fn collection(&self, name: &str) -> Result<CollectionView> {
        self.list_collections()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| DbError::UnknownCollection(name.to_owned()).into())
    }

    /// `vectors`: `f32` (default) or `int8`.
    pub async fn create_collection(
        &self,
        name: String,
        vectors: Option<&str>,
        text_fields: Vec<String>,
    ) -> Result<CollectionView> {
        let vectors = match vectors {
            None => VectorEncoding::default(),
            Some(v) => v
                .parse()
                .map_err(|e: String| ServiceError::Invalid(format!("field `vectors`: {e}")))?,
        };
        let options = CollectionOptions {
            vectors,
            text_fields,
        };
        let info = self
            .write_db(move |db| db.create_collection_with(&name, options))
            .await?;
        Ok(CollectionView::from(&info))
    }

    /// Creates the collection unless it exists (CLI inserts).
    pub async fn ensure_collection(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write_db(move |db| {
            if !db.list_collections()?.iter().any(|c| c.name == name) {
                db.create_collection(&name)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn drop_collection(&self, name: &str) -> Result<()> {
        let owned = name.to_owned();
        if !self.write_db(move |db| db.drop_collection(&owned)).await? {
            return Err(DbError::UnknownCollection(name.to_owned()).into());
        }
        Ok(())
    }

    /// Refuses document text over `processing.max_document_text_bytes`
    /// before anything else is done with it.
    fn check_text_size(&self, text: Option<&str>) -> Result<()> {
        let max = self.limits().max_document_text_bytes;
        match text {
            Some(text) if text.len() as u64 > max => Err(ServiceError::TooLarge(format!(
                "the document's text is {} bytes; at most {max} \
                 (processing.max_document_text_bytes): split it into several documents",
                text.len()
            ))),
            _ => Ok(()),
        }
    }

    /// Embeds (unless a vector is given) and stores a document. The
    /// collection is checked before the (expensive) embedding; if the
    /// caller drops the future, nothing is stored.
    pub async fn insert(&self, collection: &str, input: InsertContent) -> Result<Inserted> {
        self.check_text_size(input.text.as_deref())?;
        let images = self.load_images(input.images).await?;
        let mut prepared = ContentDocument {
            id: input.id,
            text: input.text,
            images,
            metadata: input.metadata,
            vector: input.vector,
            instruction: None,
        }
        .prepare()?;
        let vector = match prepared.request.take() {
            Some(request) => {
                self.check_collection(collection).await?;
                Some(self.embed_one(request).await?)
            }
            None => None,
        };
        let modality = prepared.modality;
        let document = prepared.into_document(vector)?;
        let name = collection.to_owned();
        let id = self.write_db(move |db| db.insert(&name, document)).await?;
        Ok(Inserted {
            id,
            modality: modality.as_str().to_owned(),
        })
    }

    /// An uploaded file: an image becomes a content document (with `text`,
    /// fused), anything else (video, PDF, text) is ingested part by part.
    /// The file's name is kept in the metadata as `filename` unless set.
    pub async fn insert_upload(
        &self,
        collection: &str,
        upload: Upload,
        mut input: InsertContent,
    ) -> Result<Inserted> {
        if !upload.name.is_empty() {
            if let Value::Null = input.metadata {
                input.metadata = Value::Object(Default::default());
            }
            if let Value::Object(map) = &mut input.metadata {
                map.entry("filename")
                    .or_insert_with(|| Value::String(upload.name.clone()));
            }
        }
        match detect_kind(Path::new(&upload.name), &upload.data) {
            Some(MediaKind::Image) => {
                input.images = vec![ImageInput::Bytes(upload.data)];
                self.insert(collection, input).await
            }
            Some(_) if input.text.is_some() => Err(ServiceError::Invalid(
                "`text` can only be combined with an image file".into(),
            )),
            Some(_) => {
                self.insert_file(
                    collection,
                    FileSource::Upload(upload),
                    input.id,
                    input.metadata,
                    Arc::new(|_, _| {}),
                )
                .await
            }
            None => Err(ServiceError::UnsupportedFile(format!(
                "{:?} is not a supported file ({SUPPORTED})",
                upload.name
            ))),
        }
    }

    /// Reads, embeds (part by part: frames, pages, chunks) and stores a
    /// file as one document, on the blocking pool. `progress` hears (done,
    /// total) units. If the caller drops the future, nothing is stored.
    pub async fn insert_file(
        &self,
        collection: &str,
        file: FileSource,
        id: Option<String>,
        metadata: Value,
        progress: Arc<dyn Fn(u64, u64) + Send + Sync>,
    ) -> Result<Inserted> {
        self.check_collection(collection).await?;
        let engine = Arc::clone(self.engine()?);
        let options = self.ingest.clone();
        let db = Arc::clone(self.db());
        let collection = collection.to_owned();
        let cancel = CancelOnDrop::default();
        let flag = cancel.flag();
        let gate = commit::current();
        let inserted = blocking(move || -> Result<Inserted> {
            let progress: Progress<'_> = &*progress;
            let temp;
            let (path, upload) = match &file {
                FileSource::Path(path) => (path.as_path(), None),
                FileSource::Upload(upload) => {
                    temp = upload.to_temp_file()?;
                    (temp.path(), Some(upload))
                }
            };
            let embedded = embed_file(&engine, path, &options, progress).map_err(|e| {
                let e = ServiceError::from(e);
                match upload {
                    Some(upload) => upload.rename_in(e, path),
                    None => e,
                }
            })?;
            let modality = embedded.document.modality;
            let mut document = embedded
                .document
                .with_metadata(merge_summary(metadata, embedded.summary)?);
            document.id = id;
            if cancelled(&flag) {
                return Err(ServiceError::Cancelled);
            }
            commit::begin(gate.as_ref())?;
            Ok(Inserted {
                id: db.insert(&collection, document)?,
                modality: modality.as_str().to_owned(),
            })
        })
        .await?;
        drop(cancel);
        inserted
    }

    pub async fn check_collection(&self, collection: &str) -> Result<()> {
        let name = collection.to_owned();
        self.with_db(move |db| db.check_collection(&name)).await
    }

    pub async fn document(&self, collection: &str, id: &str) -> Result<DocumentView> {
        let (c, i) = (collection.to_owned(), id.to_owned());
        let doc = self.with_db(move |db| db.get(&c, &i)).await?;
        let doc = doc.ok_or_else(|| DbError::DocumentNotFound {
            collection: collection.to_owned(),
            id: id.to_owned(),
        })?;
        Ok(DocumentView::from(&doc))
    }

    /// A page of a collection's documents in id order (`limit` 1 to
    /// [`MAX_PAGE`]), after the id `after`; `next` continues the listing.
    pub async fn list_documents(
        &self,
        collection: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<DocumentPage> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ServiceError::Invalid(format!(
                "limit must be 1 to {MAX_PAGE}, got {limit}"
            )));
        }
        let c = collection.to_owned();
        let (documents, next) = self
            .with_db(move |db| db.list_documents(&c, after.as_deref(), limit))
            .await?;
        Ok(DocumentPage {
            documents: documents.iter().map(DocumentView::from).collect(),
            next,
        })
    }

    pub async fn delete(&self, collection: &str, id: &str) -> Result<()> {
        let (c, i) = (collection.to_owned(), id.to_owned());
        if !self.write_db(move |db| db.delete(&c, &i)).await? {
            return Err(DbError::DocumentNotFound {
                collection: collection.to_owned(),
                id: id.to_owned(),
            }
            .into());
        }
        Ok(())
    }

    /// The stored content of a document: bytes and their type, or the URL
    /// it was imported from. A file imported by path is the server's
    /// business and is not handed out.
    pub async fn content(&self, collection: &str, id: &str) -> Result<StoredContent> {
        let (c, i) = (collection.to_owned(), id.to_owned());
        match self.with_db(move |db| db.get_content(&c, &i)).await? {
            Some(ContentData::Bytes { data, content_type }) => {
                Ok(StoredContent::Bytes { data, content_type })
            }
            Some(ContentData::External { uri, .. }) if uri.starts_with("http") => {
                Ok(StoredContent::Url(uri))
            }
            Some(ContentData::External { .. }) => {
                Err(ServiceError::ContentExternal { id: id.to_owned() })
            }
            None => Err(ServiceError::NoContent {
                collection: collection.to_owned(),
                id: id.to_owned(),
            }),
        }
    }
}

/// A document's content as it can be handed out.
pub enum StoredContent {
    Bytes {
        data: Vec<u8>,
        content_type: String,
    },
    /// Imported from this http(s) URL.
    Url(String),
}
