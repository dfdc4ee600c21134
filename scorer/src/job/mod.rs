//! A scoring (or pack-only) job: plan, claim the output directory, score
//! shard by shard, finalize.
//!
//! Shard `s` holds windows `[s * shard_windows, (s + 1) * shard_windows)` of
//! the packed corpus. Part `i` of `n` writes the shards with `s % n == i`, so
//! the parts are disjoint and their union is the single-process result. A
//! shard file appears atomically; a rerun skips the complete ones. The part
//! that finds every shard present writes `manifest.json`.

pub mod args; // the command lines of `pack` and `score`
pub mod remote; // --out in a bucket: stage, upload shard by shard, manifest by conditional put

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use shared::model::checkpoint::Checkpoint;
use shared::model::Llama;
use shared::scores::compat;
use shared::scores::format::FORMAT_VERSION;
use shared::scores::format::{
    shard_file_name, DOCUMENTS_FILE, FORMAT_NAME, JOB_FILE, MANIFEST_FILE, VOCAB_FILE,
};
use shared::scores::manifest::{
    load_job, InputFile, JobSpec, LossSummary, Manifest, ModelInfo, ShardEntry, TokenizerInfo,
};
use shared::scores::shards::{write_shard, LossDtype, LossStats, Rounding, ShardInfo, ShardReader};
use shared::text::corpus::{expand_inputs, Corpus};
use shared::text::pack::{DocInfo, Pipeline, Window};
use shared::text::tokenizer::Tokenizer;
use shared::util::progress::Progress;

use crate::part::{remove_stale_temps, PartLock};
use remote::RemoteOut;

#[derive(Clone)]
pub struct Settings {
    pub corpus: Vec<PathBuf>,
    pub tokenizer: PathBuf,
    pub eos_token: Option<String>,
    pub model: Option<PathBuf>,
    pub out: PathBuf,
    pub seq_len: usize,
    pub batch_size: usize,
    pub shard_windows: usize,
    pub row_group_windows: usize,
    pub part: usize,
    pub parts: usize,
    pub text_field: String,
    pub device: Device,
    /// Compute dtype of the reference model's forward pass.
    pub dtype: candle_core::DType,
    /// How ref_loss is stored.
    pub loss_dtype: LossDtype,
    /// With `out` in a bucket: the local staging directory.
    pub stage: Option<PathBuf>,
}

/// Runs the job `s` describes (or this part of it); with `--out` in a
/// bucket, in a local staging directory whose shards go up one by one.
pub fn run(s: &Settings) -> Result<()> {
    match RemoteOut::of(&s.out, s.stage.as_deref())? {
        None => run_in(s, None),
        Some(remote) => {
            // A missing bucket or refused credentials: said before any work.
            remote.store.list()?;
            shared::say!(
                "writing {} through the staging directory {}",
                remote.store.url(),
                remote.stage.display()
            );
            let staged = Settings {
                out: remote.stage.clone(),
                ..s.clone()
            };
            run_in(&staged, Some(&remote))?;
            if remote.store.size(MANIFEST_FILE)?.is_some() {
                // The set is complete in the bucket: the staging copy of its
                // side tables has served.
                let _ = std::fs::remove_dir_all(&remote.stage);
            }
            Ok(())
        }
    }
}

fn run_in(s: &Settings, remote: Option<&RemoteOut>) -> Result<()> {
    let started = Instant::now();
    // Our own directory (a rerun, another part of the job) or a new one.
    let ours = [JOB_FILE, MANIFEST_FILE, ".lock-part-", ".job.json.tmp-"];
    shared::util::outdir::check_ours(&s.out, &ours, "a score set")?;
    shared::util::outdir::check_outside(&s.out, &s.corpus, "corpus")?;
    shared::util::outdir::check_writable(&s.out)?;
    let job = Job::plan(s, remote)?; // inputs, tokenizer, model, pass 1 over the corpus
    shared::util::location::local_output(&s.out)?;
    std::fs::create_dir_all(&s.out).with_context(|| format!("creating {}", s.out.display()))?;
    let _lock = PartLock::acquire(&s.out, s.part, s.parts)?;
    remove_stale_temps(&s.out)?;
    job.claim_out_dir()?;
    let pending = job.pending_shards()?;
    shared::util::interrupt::watch().context("catching SIGTERM and SIGINT")?;
    if !pending.is_empty() && !job.write_shards(&pending)? {
        return Ok(()); // stopped by a signal after a whole shard
    }
    job.write_side_tables()?;
    let missing = match remote {
        Some(r) => job.num_shards() - r.done()?.len().min(job.num_shards()),
        None => (0..job.num_shards())
            .filter(|&sh| !s.out.join(shard_file_name(sh)).exists())
            .count(),
    };
    if missing > 0 {
        shared::say!(
            "part {}/{} done in {:.1}s; {missing} shard(s) of other parts still missing: the last part to finish writes {MANIFEST_FILE}",
            s.part,
            s.parts,
            started.elapsed().as_secs_f64(),
        );
        return Ok(());
    }
    let manifest = job.finalize()?;
    let written = match remote {
        Some(r) => r.store.url().to_string(),
        None => s.out.display().to_string(),
    };
    shared::say!(
        "wrote {written} ({} windows, {} tokens, {} shard(s)) in {:.1}s",
        manifest.num_windows,
        manifest.num_tokens,
        manifest.shards.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(r) = &manifest.ref_loss {
        shared::say!(
            "ref_loss: mean {:.4}, std {:.4}, min {:.4}, max {:.4} over {} tokens",
            r.mean,
            r.std,
            r.min,
            r.max,
            r.count
        );
    }
    Ok(())
}

/// What the first pass over the corpus learned: the window count and the
/// document table, before anything is written.
struct Packed {
    num_windows: u64,
    docs: Vec<DocInfo>,
    skipped_documents: u64,
    dropped_tail_tokens: u64,
}

/// A planned job: its inputs, checked, and its identity.
struct Job<'a> {
    s: &'a Settings,
    remote: Option<&'a RemoteOut>,
    files: Vec<PathBuf>,
    tokenizer: Tokenizer,
    model: Option<Llama>,
    spec: JobSpec,
    job_id: String,
    packed: Packed,
}

impl<'a> Job<'a> {
    /// Loads the tokenizer and model, describes the inputs, and packs the
    /// whole corpus once to learn the window count: cheap next to scoring,
    /// it makes the ETA exact, and a bad record fails here.
    fn plan(s: &'a Settings, remote: Option<&'a RemoteOut>) -> Result<Self> {
        let inputs = expand_inputs(&s.corpus)?;
        shared::say!("{}", inputs.describe());
        let files = inputs.files;
        let tokenizer = Tokenizer::load(&s.tokenizer, s.eos_token.as_deref())?;
        let (model, model_info) = match &s.model {
            Some(dir) => {
                let (m, info) = load_reference(s, dir, &tokenizer)?;
                (Some(m), Some(info))
            }
            None => (None, None),
        };
        shared::say!("hashing {} input file(s)", files.len());
        let inputs = files
            .iter()
            .map(|f| InputFile::describe(f))
            .collect::<shared::Result<Vec<_>>>()?;
        let spec = JobSpec {
            format_version: FORMAT_VERSION,
            scored: model.is_some(),
            seq_len: s.seq_len,
            shard_windows: s.shard_windows,
            row_group_windows: s.row_group_windows,
            loss_dtype: s.loss_dtype,
            text_field: s.text_field.clone(),
            tokenizer: TokenizerInfo::of(&tokenizer),
            reference_model: model_info,
            inputs,
        };
        let job_id = spec.fingerprint();
        let packed = count_windows(s, &files, &tokenizer)?;
        Ok(Job {
            s,
            remote,
            files,
            tokenizer,
            model,
            spec,
            job_id,
            packed,
        })
    }

    fn num_shards(&self) -> usize {
        self.packed
            .num_windows
            .div_ceil(self.s.shard_windows as u64) as usize
    }

    fn windows_of(&self, shard: usize) -> u64 {
        let start = shard as u64 * self.s.shard_windows as u64;
        (self.packed.num_windows - start).min(self.s.shard_windows as u64)
    }

    /// Records the job in `job.json`, or refuses a directory that holds another.
    fn claim_out_dir(&self) -> Result<()> {
        let s = self.s;
        match load_job(&s.out)? {
            Some(old) => {
                let diff = self.spec.differences(&old);
                if !diff.is_empty() {
                    bail!(
                        "{} holds a different job; refusing to mix them:\n  {}\nUse another --out directory, or delete this one.",
                        s.out.display(),
                        diff.join("\n  ")
                    );
                }
            }
            None => {
                let json = serde_json::to_string_pretty(&self.spec)?;
                shared::util::atomic::write_file(&s.out.join(JOB_FILE), json.as_bytes())?;
            }
        }
        if let Some(r) = self.remote {
            r.claim(&self.spec)?;
        }
        Ok(())
    }

    /// This part's shards that are not written yet; a present shard must
    /// belong to this job.
    fn pending_shards(&self) -> Result<Vec<usize>> {
        let s = self.s;
        let mine: Vec<usize> = (0..self.num_shards())
            .filter(|sh| sh % s.parts == s.part)
            .collect();
        let uploaded = match self.remote {
            Some(r) => r.done()?,
            None => Default::default(),
        };
        let mut pending = Vec::new();
        for &sh in &mine {
            let path = s.out.join(shard_file_name(sh));
            if uploaded.contains_key(&shard_file_name(sh)) {
                continue;
            }
            if !path.exists() {
                pending.push(sh);
                continue;
            }
            let reader = ShardReader::open(&path).with_context(|| {
                format!(
                    "{} exists but cannot be read; delete it and rerun",
                    path.display()
                )
            })?;
            if reader.info().job != self.job_id {
                bail!(
                    "{} was written by another job; delete it and rerun",
                    path.display()
                );
            }
            if let Some(r) = self.remote {
                r.upload_shard(&path, reader.info())?; // written, killed before its upload
            }
        }
        shared::say!(
            "{} windows, {} shard(s); part {}/{}: {} shard(s), {} done, {} to {}",
            self.packed.num_windows,
            self.num_shards(),
            s.part,
            s.parts,
            mine.len(),
            mine.len() - pending.len(),
            pending.len(),
            if self.model.is_some() {
                "score"
            } else {
                "write"
            }
        );
        Ok(pending)
    }

    /// Pass 2: the windows again, in order; each pending shard is scored
    /// (if there is a model) and written. False when SIGTERM or SIGINT
    /// stopped it after a whole shard (a rerun writes the rest).
    fn write_shards(&self, pending: &[usize]) -> Result<bool> {
        let s = self.s;
        let label = if self.model.is_some() {
            "scoring"
        } else {
            "packing"
        };
        let tokens: u64 =
            pending.iter().map(|&sh| self.windows_of(sh)).sum::<u64>() * s.seq_len as u64;
        let mut progress = Progress::new(label, "tok", tokens);
        let corpus = Corpus::new(self.files.clone(), &s.text_field);
        let pipeline = Pipeline::new(corpus, &self.tokenizer, s.seq_len);
        let pass = Instant::now();
        let mut buf: Vec<Window> = Vec::new();
        let mut next = pending.iter().copied().peekable();
        for w in pipeline {
            let w = w?;
            let sh = (w.seq_id / s.shard_windows as u64) as usize;
            let Some(&want) = next.peek() else { break };
            if sh < want {
                continue;
            }
            buf.push(w);
            if buf.len() as u64 == self.windows_of(want) {
                self.write_one(want, &buf, &mut progress)?;
                shared::util::fault::point("between-shards");
                buf.clear();
                next.next();
                if let (Some(signal), Some(_)) = (shared::util::interrupt::requested(), next.peek())
                {
                    progress.finish();
                    shared::say!(
                        "{signal}: stopped after {} (whole); rerun the same command to write the other {} shard(s)",
                        shard_file_name(want),
                        next.count()
                    );
                    shared::util::interrupt::mark_stopped();
                    return Ok(false);
                }
            }
        }
        if next.peek().is_some() {
            bail!("the corpus changed while it was read (fewer windows on the second pass)");
        }
        progress.finish();
        let secs = pass.elapsed().as_secs_f64();
        shared::say!(
            "{label} pass: {tokens} tokens in {secs:.3}s ({:.0} tok/s, tokenizing and writing included)",
            tokens as f64 / secs
        );
        Ok(true)
    }

    /// Scores one shard's windows (if there is a model) and writes the shard.
    fn write_one(&self, shard: usize, windows: &[Window], progress: &mut Progress) -> Result<()> {
        let (s, job_id, model) = (self.s, &self.job_id, self.model.as_ref());
        let losses = match model {
            Some(m) => {
                let mut all = Vec::with_capacity(windows.len());
                for batch in windows.chunks(s.batch_size) {
                    all.extend(score_batch(m, batch, s.seq_len, &s.device)?);
                    progress.inc((batch.len() * s.seq_len) as u64);
                }
                Some(all)
            }
            None => {
                progress.inc((windows.len() * s.seq_len) as u64);
                None
            }
        };
        let path = s.out.join(shard_file_name(shard));
        write_shard(
            &path,
            job_id,
            shard,
            &self.spec.shard_layout(),
            windows,
            losses.as_deref(),
        )?;
        if let Some(r) = self.remote {
            r.upload_shard(&path, ShardReader::open(&path)?.info())?;
        }
        Ok(())
    }

    /// The vocabulary and document tables and the tokenizer: every part
    /// writes identical bytes, so races between parts are harmless.
    fn write_side_tables(&self) -> Result<()> {
        let s = self.s;
        if !s.out.join(VOCAB_FILE).exists() {
            shared::scores::tables::write_vocab(&s.out.join(VOCAB_FILE), &self.tokenizer)?;
        }
        let tok_copy = s.out.join(shared::model::checkpoint::TOKENIZER_FILE);
        if !tok_copy.exists() {
            let bytes = if shared::util::gguf::is_gguf(&s.tokenizer) {
                self.tokenizer.to_json()?.into_bytes() // built from the GGUF metadata
            } else {
                std::fs::read(&s.tokenizer)
                    .with_context(|| format!("reading {}", s.tokenizer.display()))?
            };
            shared::util::atomic::write_file(&tok_copy, &bytes)?;
        }
        let docs = s.out.join(DOCUMENTS_FILE);
        if !docs.exists() {
            shared::scores::tables::write_documents(&docs, &self.packed.docs, &self.files)?;
        }
        if let Some(r) = self.remote {
            r.upload_side(&[
                VOCAB_FILE,
                shared::model::checkpoint::TOKENIZER_FILE,
                DOCUMENTS_FILE,
            ])?;
        }
        Ok(())
    }

    /// Every shard present: checks each, and writes `manifest.json`.
    fn finalize(&self) -> Result<Manifest> {
        let s = self.s;
        let mut shards = Vec::with_capacity(self.num_shards());
        let mut infos = Vec::with_capacity(self.num_shards());
        if let Some(r) = self.remote {
            let mut done = r.done()?;
            for sh in 0..self.num_shards() {
                let file = shard_file_name(sh);
                let entry = done
                    .remove(&file)
                    .with_context(|| format!("{} is missing", r.store.url_of(&file)))?;
                shards.push(entry);
            }
            infos = r.shard_infos(&shards)?;
        } else {
            for sh in 0..self.num_shards() {
                let path = s.out.join(shard_file_name(sh));
                let reader = ShardReader::open(&path)?;
                shards.push(ShardEntry::describe(&path, reader.info())?);
                infos.push(reader.info().clone());
            }
        }
        let manifest = self.manifest(shards, &infos)?;
        let json = serde_json::to_string_pretty(&manifest)?;
        match self.remote {
            Some(r) => r.publish(&json)?,
            None => shared::util::atomic::write_file(&s.out.join(MANIFEST_FILE), json.as_bytes())?,
        }
        Ok(manifest)
    }

    /// The manifest of a job whose shards are `shards` (their footers: `infos`).
    fn manifest(&self, shards: Vec<ShardEntry>, infos: &[ShardInfo]) -> Result<Manifest> {
        let (s, spec, job_id, p) = (self.s, &self.spec, &self.job_id, &self.packed);
        let num_windows = p.num_windows;
        let mut stats = LossStats::default();
        let mut rounding: Option<Rounding> = None;
        for (entry, info) in shards.iter().zip(infos) {
            if info.job != *job_id {
                bail!(
                    "{} was written by another job; delete it and rerun",
                    entry.file
                );
            }
            stats.merge(&info.ref_loss);
            if let Some(r) = &info.rounding {
                rounding.get_or_insert_with(Rounding::default).merge(r);
            }
        }
        Ok(Manifest {
            format: FORMAT_NAME.to_string(),
            job: spec.clone(),
            job_fingerprint: job_id.to_string(),
            num_windows,
            num_tokens: num_windows * s.seq_len as u64,
            num_documents: p.docs.len() as u64,
            skipped_empty_documents: p.skipped_documents,
            dropped_tail_tokens: p.dropped_tail_tokens,
            shards,
            ref_loss: spec.scored.then(|| LossSummary::from(&stats)),
            ref_loss_rounding: rounding,
            created_by: format!("scorer {}", env!("CARGO_PKG_VERSION")),
            derived_from: None,
        })
    }
}

/// The reference model, checked against the tokenizer, and its manifest entry.
fn load_reference(
    s: &Settings,
    dir: &std::path::Path,
    tokenizer: &Tokenizer,
) -> Result<(Llama, ModelInfo)> {
    shared::util::device::check_dtype(&s.device, s.dtype)?;
    let ckpt = Checkpoint::load(dir, s.dtype, &s.device)?;
    if tokenizer.vocab_size() > ckpt.config.vocab_size {
        bail!(
            "tokenizer {} has {} ids but model {} has a vocabulary of {}: they do not belong together",
            s.tokenizer.display(),
            tokenizer.vocab_size(),
            dir.display(),
            ckpt.config.vocab_size
        );
    }
    ckpt.config
        .check_window(s.seq_len - 1)
        .with_context(|| format!("--model {}", dir.display()))?;
    // Reference losses past the trained positions measure nothing the model
    // knows, and a score set is reused by every run: refused, not warned.
    if let Some(why) = compat::window_beyond_positions(&ckpt.config, dir, s.seq_len) {
        bail!(
            "{why}: choose --seq-len <= {}",
            ckpt.config.max_position_embeddings + 1
        );
    }
    let info = TokenizerInfo::of(tokenizer);
    let given = compat::DataTokenizer {
        label: format!("--tokenizer {}", s.tokenizer.display()),
        info: &info,
        tokenizer: Some(tokenizer),
    };
    if let compat::TokenizerCheck::SameVocabulary(note) = compat::check_tokenizer(dir, &given)? {
        shared::say!("{note}");
    }
    let info = ModelInfo {
        fingerprint: Checkpoint::fingerprint(dir)?,
        path: dir.display().to_string(),
        vocab_size: ckpt.config.vocab_size,
        num_params: ckpt.config.num_params(),
        dtype: shared::util::device::dtype_name(s.dtype).to_string(),
        device: shared::util::device::device_kind(&s.device).to_string(),
    };
    Ok((ckpt.infer_model(&s.device)?, info))
}

/// Pass 1: tokenizes and packs the whole corpus, keeping only the counts and
/// the document table.
fn count_windows(s: &Settings, files: &[PathBuf], tokenizer: &Tokenizer) -> Result<Packed> {
    shared::say!(
        "tokenizing {} file(s) with seq_len {}",
        files.len(),
        s.seq_len
    );
    let mut count = Pipeline::new(
        Corpus::new(files.to_vec(), &s.text_field),
        tokenizer,
        s.seq_len,
    );
    let mut num_windows = 0u64;
    let mut progress = Progress::counter("tokenizing", "windows");
    for w in count.by_ref() {
        w?;
        num_windows += 1;
        progress.inc(1);
    }
    progress.finish();
    if num_windows == 0 {
        let names: Vec<String> = files
            .iter()
            .take(3)
            .map(|f| f.display().to_string())
            .collect();
        bail!(
            "the corpus ({}{}) packs into no window of {} tokens: it has {} tokens",
            names.join(", "),
            if files.len() > 3 { ", ..." } else { "" },
            s.seq_len,
            count.dropped_tail()
        );
    }
    shared::say!(
        "packed {} document(s) into {num_windows} windows of {} tokens; skipped {} empty and {} untokenizable document(s); dropped the last {} token(s), short of a window",
        count.docs.len(),
        s.seq_len,
        count.corpus().skipped_empty(),
        count.skipped_untokenized,
        count.dropped_tail()
    );
    Ok(Packed {
        num_windows,
        skipped_documents: count.corpus().skipped_empty() + count.skipped_untokenized,
        dropped_tail_tokens: count.dropped_tail() as u64,
        docs: std::mem::take(&mut count.docs),
    })
}

/// Per-token losses of each window: `seq_len - 1` values (positions 1..).
pub fn score_batch(
    model: &Llama,
    windows: &[Window],
    seq_len: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let flat: Vec<u32> = windows
        .iter()
        .flat_map(|w| w.tokens.iter().copied())
        .collect();
    shared::util::fault::point("forward");
    let ids = Tensor::from_vec(flat, (windows.len(), seq_len), device)?; // (B, T)
    let losses = model.token_losses(&ids)?.to_vec2::<f32>()?; // (B, T-1)
    for (w, row) in windows.iter().zip(&losses) {
        if let Some(p) = row.iter().position(|x| !x.is_finite()) {
            bail!(
                "the model gave a non-finite loss ({}) for window {} position {}",
                row[p],
                w.seq_id,
                p + 1
            );
        }
    }
    Ok(losses)
}

pub fn summary(m: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "scored": m.job.scored,
        "seq_len": m.job.seq_len,
        "windows": m.num_windows,
        "tokens": m.num_tokens,
        "documents": m.num_documents,
        "shards": m.shards.len(),
        "tokenizer": m.job.tokenizer.fingerprint,
        "reference_model": m.job.reference_model.as_ref().map(|r| &r.path),
        "dtype": m.job.reference_model.as_ref().map(|r| &r.dtype),
        "device": m.job.reference_model.as_ref().map(|r| &r.device),
        "ref_loss": m.ref_loss,
    })
}
