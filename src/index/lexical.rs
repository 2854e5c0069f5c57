//! The lexical (BM25) index of one collection, on tantivy: one tantivy
//! document per *text unit* — a text chunk of a long text or PDF (the
//! chunks that have vectors, by segment), or a document's whole text — with
//! the document's id, segment number and version (`seq`).
//!
//! Derived data, like the graph: the store is the truth. Changes are
//! applied in commit order by the write path; a commit carries the
//! database's instance id and the highest sequence number it covers (its
//! payload), from which the change log
//! catches it up on open (or the store rebuilds it). Searches commit first
//! when changes are pending, so a write is searchable (and a delete gone)
//! as soon as it is acknowledged; the caller drops hits whose `seq` is not
//! the document's current one.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::{Map, Value};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value as _, STORED, STRING, TEXT};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use thiserror::Error;

use crate::types::{Seq, Span};

/// Indexing memory of the writer (tantivy's minimum per thread is 15 MB).
const WRITER_MEMORY: usize = 32 << 20;

/// Deletes queued in the writer after which the index commits on its own.
/// tantivy keeps every queued delete (a term weight of about 1.3 KB) until
/// a commit applies it, so without searches (which commit) a write-only
/// load would grow without bound.
const MAX_PENDING_DELETES: usize = 5_000;

/// Documents added since the last commit after which the index commits on
/// its own (bounds [`Writer::added`]).
const MAX_PENDING_ADDS: usize = 100_000;

#[derive(Debug, Error)]
#[error("lexical index at {path}: {reason}")]
pub struct LexicalError {
    pub path: PathBuf,
    pub reason: String,
}

/// A piece of a document's text that is indexed (and matched) on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct TextUnit {
    /// 0: the document as a whole; `i > 0`: its segment `i - 1`.
    pub segment: u32,
    pub text: String,
}

/// A lexical match: a text unit and its BM25 score.
#[derive(Debug, Clone, PartialEq)]
pub struct LexicalHit {
    pub doc: String,
    pub segment: u32,
    pub seq: Seq,
    pub score: f32,
}

/// The units of a document: one per text chunk (`Span::Bytes` segment of
/// `text`); without chunks, the whole text as unit 0. The string values of
/// the metadata `fields` (dotted paths; strings or lists of strings) join
/// unit 0, so a title or tag matches the document itself.
pub fn text_units(
    text: Option<&str>,
    segments: &[Span],
    metadata: &Map<String, Value>,
    fields: &[String],
) -> Vec<TextUnit> {
    let mut units = Vec::new();
    let mut whole = String::new();
    if let Some(text) = text {
        let mut chunked = false;
        for (i, span) in segments.iter().enumerate() {
            if let Span::Bytes { start, end } = *span {
                if let Some(chunk) = text.get(start as usize..end as usize) {
                    chunked = true;
                    units.push(TextUnit {
                        segment: i as u32 + 1,
                        text: chunk.to_owned(),
                    });
                }
            }
        }
        if !chunked {
            whole.push_str(text);
        }
    }
    for field in fields {
        let mut value = metadata.get(field.split('.').next().unwrap_or(field));
        for part in field.split('.').skip(1) {
            value = value.and_then(|v| v.get(part));
        }
        let strings: Vec<&str> = match value {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for s in strings {
            whole.push('\n');
            whole.push_str(s);
        }
    }
    if !whole.trim().is_empty() {
        units.insert(
            0,
            TextUnit {
                segment: 0,
                text: whole,
            },
        );
    }
    units
}

#[derive(Clone, Copy)]
struct Fields {
    doc_id: Field,
    segment: Field,
    seq: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let fields = Fields {
        doc_id: builder.add_text_field("doc_id", STRING | STORED),
        segment: builder.add_u64_field("segment", STORED),
        seq: builder.add_u64_field("seq", STORED),
        text: builder.add_text_field("text", TEXT),
    };
    (builder.build(), fields)
}

/// The writer with what it holds that is not committed.
struct Writer {
    inner: IndexWriter,
    /// Ids with units added since the last commit (not in `reader` yet).
    added: HashSet<String>,
    /// Deletes queued since the last commit.
    deletes: usize,
}

/// One collection's lexical index. All methods take `&self`.
pub struct LexicalIndex {
    dir: PathBuf,
    index: Index,
    /// The index's directory, to drop the entries of deleted files from
    /// its mmap cache (tantivy prunes them only when asked).
    directory: MmapDirectory,
    fields: Fields,
    writer: Mutex<Writer>,
    reader: IndexReader,
    /// Every change to this collection up to here is in the writer.
    applied_seq: AtomicU64,
    /// Changes in the writer that are not committed (not yet searchable).
    dirty: AtomicBool,
    /// Between `clear` and the rebuild's commit: searches must not commit
    /// (they keep reading the last committed index).
    rebuilding: AtomicBool,
    /// A change could not be applied: commits no longer claim to cover
    /// anything, so the next open rebuilds (or replays the whole log).
    failed: AtomicBool,
    /// The database's instance id (hex), written into every commit.
    instance: String,
}

impl LexicalIndex {
    /// Opens the index in `dir` (created when missing) for the database
    /// `instance_id`. Returns it with the sequence number its last commit
    /// covers (0 for a new one); an index another database committed is an
    /// error.
    pub fn open(dir: &Path, instance_id: &[u8; 16]) -> Result<(LexicalIndex, Seq), LexicalError> {
        let instance = hex::encode(instance_id);
        let err = |e: &dyn std::fmt::Display| LexicalError {
            path: dir.to_owned(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(|e| err(&e))?;
        let index = Index::open_or_create(directory.clone(), schema).map_err(|e| err(&e))?;
        let committed = match index.load_metas().map_err(|e| err(&e))?.payload {
            None => 0,
            Some(p) => match p.split_once(' ') {
                Some((owner, seq)) if owner == instance => seq
                    .parse::<Seq>()
                    .map_err(|_| err(&format!("commit payload {p:?} has no sequence number")))?,
                Some((owner, _)) => {
                    return Err(err(&format!("committed by another database ({owner})")))
                }
                None => return Err(err(&format!("commit payload {p:?} is not ours"))),
            },
        };
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(|e| err(&e))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| err(&e))?;
        Ok((
            LexicalIndex {
                dir: dir.to_owned(),
                index,
                directory,
                fields,
                writer: Mutex::new(Writer {
                    inner: writer,
                    added: HashSet::new(),
                    deletes: 0,
                }),
                reader,
                applied_seq: AtomicU64::new(committed),
                dirty: AtomicBool::new(false),
                rebuilding: AtomicBool::new(false),
                failed: AtomicBool::new(false),
                instance,
            },
            committed,
        ))
    }

    fn error(&self, e: impl std::fmt::Display) -> LexicalError {
        LexicalError {
            path: self.dir.clone(),
            reason: e.to_string(),
        }
    }

    /// Replaces a document's units (none: it only leaves the index).
    pub fn upsert(&self, id: &str, seq: Seq, units: &[TextUnit]) -> Result<(), LexicalError> {
        let full = {
            let mut writer = self.writer.lock();
            self.delete(&mut writer, id);
            if !units.is_empty() {
                writer.added.insert(id.to_owned());
            }
            for unit in units {
                let mut doc = TantivyDocument::new();
                doc.add_text(self.fields.doc_id, id);
                doc.add_u64(self.fields.segment, u64::from(unit.segment));
                doc.add_u64(self.fields.seq, seq);
                doc.add_text(self.fields.text, &unit.text);
                if let Err(e) = writer.inner.add_document(doc) {
                    self.failed.store(true, Ordering::Release);
                    return Err(self.error(e));
                }
            }
            self.applied(seq);
            Self::full(&writer)
        };
        self.commit_if(full);
        Ok(())
    }

    pub fn remove(&self, id: &str, seq: Seq) {
        let full = {
            let mut writer = self.writer.lock();
            self.delete(&mut writer, id);
            self.applied(seq);
            Self::full(&writer)
        };
        self.commit_if(full);
    }

    /// Queues the deletion of `id`'s units, unless it has none: neither
    /// added since the last commit nor in the committed index (a queued
    /// delete costs memory until the next commit, and an index without
    /// segments never frees it: a collection of vector-only documents
    /// would grow with every write).
    fn delete(&self, writer: &mut Writer, id: &str) {
        let term = Term::from_field_text(self.fields.doc_id, id);
        // A lookup error: delete to be safe.
        let indexed =
            writer.added.remove(id) || !matches!(self.reader.searcher().doc_freq(&term), Ok(0));
        if indexed {
            writer.inner.delete_term(term);
            writer.deletes += 1;
        }
    }

    /// Enough is queued in the writer that it should commit.
    fn full(writer: &Writer) -> bool {
        writer.deletes >= MAX_PENDING_DELETES || writer.added.len() >= MAX_PENDING_ADDS
    }

    /// Commits (as a search would) when `full`; a failure is only logged:
    /// the change itself is applied, and the next commit retries.
    fn commit_if(&self, full: bool) {
        if full {
            if let Err(e) = self.refresh() {
                tracing::warn!(error = %e, "lexical index commit failed");
            }
        }
    }

    fn applied(&self, seq: Seq) {
        self.applied_seq.fetch_max(seq, Ordering::AcqRel);
        self.dirty.store(true, Ordering::Release);
    }

    /// Drops everything before a rebuild from the store: uncommitted
    /// changes are rolled back first (tantivy's delete-all does not reach
    /// documents still in its indexing pipeline). Until the rebuild's
    /// `commit`, searches read the last committed index.
    pub fn clear(&self) -> Result<(), LexicalError> {
        let mut writer = self.writer.lock();
        self.rebuilding.store(true, Ordering::Release);
        writer.inner.rollback().map_err(|e| self.error(e))?;
        writer.added.clear();
        writer.deletes = 0;
        writer
            .inner
            .delete_all_documents()
            .map_err(|e| self.error(e))?;
        self.applied_seq.store(0, Ordering::Release);
        self.failed.store(false, Ordering::Release);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes the applied changes durable and searchable; the commit covers
    /// every change up to `seq` (at least what was applied). Ends a rebuild.
    pub fn commit(&self, seq: Seq) -> Result<(), LexicalError> {
        let mut writer = self.writer.lock();
        let covered = match self.failed.load(Ordering::Acquire) {
            true => 0,
            false => self.applied_seq.fetch_max(seq, Ordering::AcqRel).max(seq),
        };
        let mut prepared = writer.inner.prepare_commit().map_err(|e| self.error(e))?;
        prepared.set_payload(&format!("{} {covered}", self.instance));
        prepared.commit().map_err(|e| self.error(e))?;
        self.reader.reload().map_err(|e| self.error(e))?;
        // The committed index (what `delete` consults) now has them.
        writer.added.clear();
        writer.deletes = 0;
        // tantivy's mmap cache keeps an entry for every file it ever
        // opened (dead ones too) until asked for its statistics: one per
        // segment file of every commit and merge.
        self.directory.get_cache_info();
        // Only now: a search that saw `dirty` waits on the writer lock until
        // the new commit is readable.
        self.dirty.store(false, Ordering::Release);
        self.rebuilding.store(false, Ordering::Release);
        Ok(())
    }

    /// Commits pending changes so the next search sees them (not during a
    /// rebuild: that would publish a half-built index).
    fn refresh(&self) -> Result<(), LexicalError> {
        if self.dirty.load(Ordering::Acquire) && !self.rebuilding.load(Ordering::Acquire) {
            self.commit(0)?;
        }
        Ok(())
    }

    /// The `limit` best text units for `query` by BM25, best first. Any of
    /// the query's words may match (rarer words weigh more); a word the
    /// tokenizer splits — an identifier such as `QX-48213` or `e-mail` —
    /// matches only as that phrase, not as its common parts.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<LexicalHit>, LexicalError> {
        self.refresh()?;
        let mut analyzer = self
            .index
            .tokenizer_for_field(self.fields.text)
            .map_err(|e| self.error(e))?;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut seen: Vec<Vec<String>> = Vec::new();
        for word in query.split_whitespace() {
            let mut stream = analyzer.token_stream(word);
            let mut tokens: Vec<String> = Vec::new();
            while stream.advance() {
                tokens.push(stream.token().text.clone());
            }
            if tokens.is_empty() || seen.contains(&tokens) {
                continue;
            }
            let terms: Vec<Term> = tokens
                .iter()
                .map(|t| Term::from_field_text(self.fields.text, t))
                .collect();
            let clause: Box<dyn Query> = match terms.len() {
                1 => Box::new(TermQuery::new(
                    terms[0].clone(),
                    IndexRecordOption::WithFreqs,
                )),
                _ => Box::new(PhraseQuery::new(terms)),
            };
            clauses.push((Occur::Should, clause));
            seen.push(tokens);
        }
        if clauses.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&BooleanQuery::new(clauses), &TopDocs::with_limit(limit))
            .map_err(|e| self.error(e))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(|e| self.error(e))?;
            let id = doc.get_first(self.fields.doc_id).and_then(|v| v.as_str());
            let segment = doc.get_first(self.fields.segment).and_then(|v| v.as_u64());
            let seq = doc.get_first(self.fields.seq).and_then(|v| v.as_u64());
            let (Some(id), Some(segment), Some(seq)) = (id, segment, seq) else {
                return Err(self.error("a stored unit lacks its id, segment or seq"));
            };
            hits.push(LexicalHit {
                doc: id.to_owned(),
                segment: segment as u32,
                seq,
                score,
            });
        }
        Ok(hits)
    }

    /// Byte ranges of `text` where a word of `query` occurs (as the index
    /// would match it: same tokenizer, lower-cased), in order. For
    /// highlighting a hit's chunk.
    pub fn highlights(&self, text: &str, query: &str) -> Vec<(usize, usize)> {
        match self.index.tokenizer_for_field(self.fields.text) {
            Ok(mut analyzer) => matching_words(&mut analyzer, text, query),
            Err(_) => Vec::new(),
        }
    }

    /// Text units in the index (committed).
    pub fn units(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// [`LexicalIndex::highlights`] with tantivy's default tokenizer (the one
/// our indexes use), for stores without a lexical index of ours.
pub fn highlights(text: &str, query: &str) -> Vec<(usize, usize)> {
    let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .build();
    matching_words(&mut analyzer, text, query)
}

fn matching_words(analyzer: &mut TextAnalyzer, text: &str, query: &str) -> Vec<(usize, usize)> {
    let mut wanted: Vec<String> = Vec::new();
    {
        let mut stream = analyzer.token_stream(query);
        while stream.advance() {
            wanted.push(stream.token().text.clone());
        }
    }
    let mut ranges = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let token = stream.token();
        if wanted.contains(&token.text) {
            ranges.push((token.offset_from, token.offset_to));
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn units_follow_chunks_whole_text_and_named_fields() {
        let meta = json!({"title": "Annual report", "tags": ["finance", "2024"], "n": 3, "a": {"b": "deep"}});
        let meta = meta.as_object().unwrap();
        let fields = vec![
            "title".to_owned(),
            "tags".to_owned(),
            "n".to_owned(),
            "a.b".to_owned(),
        ];
        let units = text_units(Some("hello world"), &[], meta, &fields);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].segment, 0);
        assert_eq!(
            units[0].text,
            "hello world\nAnnual report\nfinance\n2024\ndeep"
        );
        let spans = [
            Span::Page { page: 1 },
            Span::Bytes { start: 0, end: 5 },
            Span::Bytes { start: 6, end: 11 },
        ];
        let units = text_units(Some("hello world"), &spans, meta, &[]);
        assert_eq!(
            units,
            vec![
                TextUnit {
                    segment: 2,
                    text: "hello".into()
                },
                TextUnit {
                    segment: 3,
                    text: "world".into()
                },
            ]
        );
        assert!(text_units(None, &[], meta, &[]).is_empty());
        assert!(text_units(Some("  "), &[], meta, &[]).is_empty());
    }

    #[test]
    fn queues_deletes_only_for_indexed_ids_and_commits_when_many_are_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (lex, _) = LexicalIndex::open(dir.path(), &[1; 16]).unwrap();
        let unit = |t: &str| {
            vec![TextUnit {
                segment: 0,
                text: t.into(),
            }]
        };
        // Ids that never had units queue nothing (tantivy would keep each
        // queued delete until a commit, or forever in an empty index).
        for i in 0..100 {
            lex.upsert(&format!("v{i}"), i + 1, &[]).unwrap();
            lex.remove(&format!("v{i}"), i + 101);
        }
        assert_eq!(lex.writer.lock().deletes, 0);
        // Added and not committed: replaced or removed all the same.
        lex.upsert("a", 201, &unit("uncommitted apple")).unwrap();
        lex.remove("a", 202);
        lex.upsert("b", 203, &unit("uncommitted banana")).unwrap();
        lex.upsert("b", 204, &unit("cherry")).unwrap();
        assert!(lex.search("apple", 10).unwrap().is_empty());
        assert!(lex.search("banana", 10).unwrap().is_empty());
        assert_eq!(lex.search("cherry", 10).unwrap()[0].seq, 204);
        // Committed: found through the reader.
        lex.upsert("b", 205, &[]).unwrap();
        assert_eq!(lex.writer.lock().deletes, 1);
        assert!(lex.search("cherry", 10).unwrap().is_empty());
        // Many queued deletes commit on their own (no search needed).
        let n = MAX_PENDING_DELETES as u64;
        for i in 0..n {
            lex.upsert(&format!("d{i}"), 1000 + i, &unit("date"))
                .unwrap();
        }
        lex.commit(0).unwrap();
        for i in 0..n {
            lex.remove(&format!("d{i}"), 1000 + n + i);
        }
        assert_eq!(lex.writer.lock().deletes, 0, "committed by itself");
        assert_eq!(lex.units(), 0);
        assert!(!lex.dirty.load(Ordering::Acquire));
    }

    #[test]
    fn finds_rare_words_forgets_replaced_and_removed_documents_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let unit = |t: &str| {
            vec![TextUnit {
                segment: 0,
                text: t.into(),
            }]
        };
        {
            let (lex, seq) = LexicalIndex::open(dir.path(), &[1; 16]).unwrap();
            assert_eq!(seq, 0);
            lex.upsert("a", 1, &unit("red apple pie")).unwrap();
            lex.upsert("b", 2, &unit("green apple QX-48213")).unwrap();
            lex.upsert("c", 3, &unit("blue sky")).unwrap();
            let hits = lex.search("qx-48213", 10).unwrap();
            assert_eq!(hits[0].doc, "b");
            assert_eq!(hits.len(), 1);
            // A split word is a phrase: its parts elsewhere do not match.
            lex.upsert("d", 6, &unit("qx 1 48213 qx")).unwrap();
            let hits = lex.search("QX-48213", 10).unwrap();
            assert_eq!(hits.len(), 1);
            assert_eq!(lex.search("qx", 10).unwrap().len(), 2);
            lex.remove("d", 7);
            let hits = lex.search("apple", 10).unwrap();
            assert_eq!(hits.len(), 2);
            // Replaced: the old words no longer match; removed: nothing does.
            lex.upsert("a", 4, &unit("plain toast")).unwrap();
            assert!(lex.search("pie", 10).unwrap().is_empty());
            assert_eq!(lex.search("toast", 10).unwrap()[0].seq, 4);
            lex.remove("c", 5);
            assert!(lex.search("sky", 10).unwrap().is_empty());
            assert!(lex.search("", 10).unwrap().is_empty());
            assert!(lex.search("!!", 10).unwrap().is_empty());
            lex.commit(9).unwrap();
        }
        // Another database's index is refused.
        assert!(LexicalIndex::open(dir.path(), &[2; 16]).is_err());
        let (lex, seq) = LexicalIndex::open(dir.path(), &[1; 16]).unwrap();
        assert_eq!(seq, 9);
        assert_eq!(lex.units(), 2);
        assert_eq!(lex.search("toast", 10).unwrap()[0].doc, "a");
        // A rebuild: pending changes are dropped, searches keep reading the
        // last commit until the rebuild's commit, whose payload is what the
        // rebuild covers (not the higher seq applied before).
        lex.upsert("p", 50, &unit("pending pear")).unwrap();
        lex.clear().unwrap();
        lex.upsert("q", 3, &unit("rebuilt quince")).unwrap();
        assert_eq!(
            lex.search("toast", 10).unwrap()[0].doc,
            "a",
            "old commit still read"
        );
        assert!(
            lex.search("quince", 10).unwrap().is_empty(),
            "half-built not published"
        );
        lex.commit(12).unwrap();
        assert!(lex.search("toast", 10).unwrap().is_empty());
        assert!(lex.search("pear", 10).unwrap().is_empty());
        assert_eq!(lex.search("quince", 10).unwrap()[0].doc, "q");
        drop(lex);
        let (lex, seq) = LexicalIndex::open(dir.path(), &[1; 16]).unwrap();
        assert_eq!(seq, 12);
        let text = "Plain TOAST, plain bread";
        let marks = lex.highlights(text, "toast plain");
        let marked: Vec<&str> = marks.iter().map(|&(a, b)| &text[a..b]).collect();
        assert_eq!(marked, ["Plain", "TOAST", "plain"]);
    }
}
