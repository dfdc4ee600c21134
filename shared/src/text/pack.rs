//! Packing: tokenized documents, each followed by the end-of-text token, are
//! concatenated in corpus order and cut into windows of `seq_len` tokens. A
//! window is therefore a pure function of the input files (and their order),
//! the tokenizer and `seq_len`. The tokens after the last full window are
//! dropped and counted.

use crate::error::Result;
use crate::text::corpus::{Corpus, Document};
use crate::text::tokenizer::Tokenizer;

/// One packed window: `seq_len` tokens and the document each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub seq_id: u64,
    pub tokens: Vec<u32>,
    pub doc_ids: Vec<u64>,
}

/// A document's row in `documents.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct DocInfo {
    pub doc_id: u64,
    pub file_index: usize,
    pub record: u64,
    pub original_id: Option<String>,
    /// Tokens of the document, its end-of-text token included.
    pub tokens: u64,
}

pub struct Packer {
    seq_len: usize,
    eos: u32,
    tokens: Vec<u32>,
    doc_ids: Vec<u64>,
    next_seq: u64,
}

impl Packer {
    pub fn new(seq_len: usize, eos: u32) -> Self {
        Packer {
            seq_len,
            eos,
            tokens: Vec::new(),
            doc_ids: Vec::new(),
            next_seq: 0,
        }
    }

    /// Appends a document and its end-of-text token; full windows go to `out`.
    pub fn push(&mut self, doc_id: u64, tokens: &[u32], out: &mut Vec<Window>) {
        self.tokens.extend_from_slice(tokens);
        self.tokens.push(self.eos);
        self.doc_ids.resize(self.tokens.len(), doc_id);
        let full = self.tokens.len() / self.seq_len;
        if full == 0 {
            return;
        }
        let cut = full * self.seq_len;
        for (toks, docs) in self.tokens[..cut]
            .chunks(self.seq_len)
            .zip(self.doc_ids[..cut].chunks(self.seq_len))
        {
            out.push(Window {
                seq_id: self.next_seq,
                tokens: toks.to_vec(),
                doc_ids: docs.to_vec(),
            });
            self.next_seq += 1;
        }
        self.tokens.drain(..cut);
        self.doc_ids.drain(..cut);
    }

    /// Tokens that would be dropped if the input ended now.
    pub fn pending(&self) -> usize {
        self.tokens.len()
    }
}

/// Corpus -> tokenizer -> packer, in chunks of documents tokenized in
/// parallel. Yields windows in order; `docs` collects the document table.
pub struct Pipeline<'a> {
    corpus: Corpus,
    tokenizer: &'a Tokenizer,
    packer: Packer,
    ready: std::collections::VecDeque<Window>,
    pub docs: Vec<DocInfo>,
    next_doc: u64,
    done: bool,
    /// Documents that tokenize to nothing (whitespace the tokenizer drops).
    pub skipped_untokenized: u64,
}

/// A chunk of documents tokenized together ends at this many documents or
/// this many bytes of text, whichever comes first: what the pipeline holds
/// (text, ids, windows: ~4x the text) stays the same for any corpus size.
const CHUNK_DOCS: usize = 256;
const CHUNK_BYTES: usize = 512 * 1024;

impl<'a> Pipeline<'a> {
    pub fn new(corpus: Corpus, tokenizer: &'a Tokenizer, seq_len: usize) -> Self {
        let eos = tokenizer.eos_id();
        Pipeline {
            corpus,
            tokenizer,
            packer: Packer::new(seq_len, eos),
            ready: Default::default(),
            docs: Vec::new(),
            next_doc: 0,
            done: false,
            skipped_untokenized: 0,
        }
    }

    pub fn corpus(&self) -> &Corpus {
        &self.corpus
    }

    /// Tokens after the last full window (dropped at the end).
    pub fn dropped_tail(&self) -> usize {
        self.packer.pending()
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk: Vec<Document> = Vec::with_capacity(CHUNK_DOCS);
        let mut bytes = 0;
        while chunk.len() < CHUNK_DOCS && bytes < CHUNK_BYTES {
            match self.corpus.next() {
                Some(doc) => {
                    let doc = doc?;
                    bytes += doc.text.len();
                    chunk.push(doc);
                }
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        let texts: Vec<&str> = chunk.iter().map(|d| d.text.as_str()).collect();
        let encoded = self.tokenizer.encode_batch(&texts)?;
        let mut out = Vec::new();
        for (doc, ids) in chunk.into_iter().zip(encoded) {
            if ids.is_empty() {
                self.skipped_untokenized += 1;
                continue;
            }
            let doc_id = self.next_doc;
            self.next_doc += 1;
            self.packer.push(doc_id, &ids, &mut out);
            self.docs.push(DocInfo {
                doc_id,
                file_index: doc.file_index,
                record: doc.record,
                original_id: doc.original_id,
                tokens: ids.len() as u64 + 1,
            });
        }
        self.ready.extend(out);
        Ok(())
    }
}

impl Iterator for Pipeline<'_> {
    type Item = Result<Window>;

    fn next(&mut self) -> Option<Result<Window>> {
        while self.ready.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.ready.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_documents_with_eos_into_full_windows() {
        let mut p = Packer::new(4, 0);
        let mut out = Vec::new();
        p.push(0, &[1, 2], &mut out); // 1 2 0
        assert!(out.is_empty());
        p.push(1, &[3, 4, 5, 6, 7], &mut out); // 1 2 0 3 | 4 5 6 7 | 0
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].tokens, vec![1, 2, 0, 3]);
        assert_eq!(out[0].doc_ids, vec![0, 0, 0, 1]);
        assert_eq!(out[1].tokens, vec![4, 5, 6, 7]);
        assert_eq!(out[1].seq_id, 1);
        assert_eq!(p.pending(), 1);
    }

    /// A corpus past both chunk limits (more documents than CHUNK_DOCS, more
    /// text than CHUNK_BYTES) packs exactly as its documents do one by one.
    #[test]
    fn chunked_pipeline_matches_packing_each_document() {
        use crate::text::corpus::Corpus;
        use crate::text::tokenizer::{train_bpe, Tokenizer};
        use std::io::Write;

        let dir = std::env::temp_dir().join(format!("rho1-pack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut texts: Vec<String> = (0..300)
            .map(|i| format!("document {i}: the sum of {i} and {} is {}.", i * 7, i * 8))
            .collect();
        for k in 0..4 {
            texts.push(format!("long {k} ").repeat(60_000)); // 420 KB each
        }
        assert!(texts.len() > CHUNK_DOCS);
        assert!(texts.iter().map(String::len).sum::<usize>() > 2 * CHUNK_BYTES);
        let tok_path = dir.join("tokenizer.json");
        train_bpe(texts[..50].iter().cloned(), 300, &tok_path).unwrap();
        let tok = Tokenizer::load(&tok_path, None).unwrap();
        let corpus_path = dir.join("corpus.jsonl");
        let mut f = std::fs::File::create(&corpus_path).unwrap();
        for t in &texts {
            writeln!(f, "{}", serde_json::json!({ "text": t })).unwrap();
        }
        drop(f);

        let got: Vec<Window> = Pipeline::new(Corpus::new(vec![corpus_path], "text"), &tok, 64)
            .collect::<Result<_>>()
            .unwrap();
        let mut want = Vec::new();
        let mut packer = Packer::new(64, tok.eos_id());
        for (i, t) in texts.iter().enumerate() {
            let ids = tok.encode_batch(&[t.as_str()]).unwrap().remove(0);
            packer.push(i as u64, &ids, &mut want);
        }
        std::fs::remove_dir_all(&dir).ok();
        assert!(want.len() > 1000);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (g.seq_id, &g.tokens, &g.doc_ids),
                (w.seq_id, &w.tokens, &w.doc_ids)
            );
        }
    }
}
