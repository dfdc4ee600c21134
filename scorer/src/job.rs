//! A scoring (or pack-only) job: plan, resume, score shard by shard, finalize.
//!
//! Shard `s` holds windows `[s * shard_windows, (s + 1) * shard_windows)` of
//! the packed corpus. Part `i` of `n` writes the shards with `s % n == i`, so
//! the parts are disjoint and their union is the single-process result. A
//! shard file appears atomically; a rerun skips the complete ones. The part
//! that finds every shard present writes `manifest.json`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use shared::checkpoint::Checkpoint;
use shared::corpus::{expand_inputs, Corpus};
use shared::manifest::{
    load_job, shard_file_name, InputFile, JobSpec, LossSummary, Manifest, ModelInfo, ShardEntry,
    TokenizerInfo, DOCUMENTS_FILE, FORMAT_NAME, JOB_FILE, MANIFEST_FILE, VOCAB_FILE,
};
use shared::model::Llama;
use shared::pack::{Pipeline, Window};
use shared::progress::Progress;
use shared::shards::{write_shard, LossStats, ShardReader, FORMAT_VERSION};
use shared::tokenizer::Tokenizer;

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
}

pub fn train_tokenizer(
    corpus: &[PathBuf],
    vocab_size: usize,
    out: &Path,
    text_field: &str,
) -> Result<()> {
    let files = expand_inputs(corpus)?;
    let failure = Mutex::new(None);
    let texts = Corpus::new(files, text_field).map_while(|doc| match doc {
        Ok(d) => Some(d.text),
        Err(e) => {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            None
        }
    });
    let started = Instant::now();
    shared::tokenizer::train_bpe(texts, vocab_size, out)?;
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let _ = std::fs::remove_file(out);
        return Err(e.into());
    }
    let tok = Tokenizer::load(out, None)?;
    eprintln!(
        "wrote {} ({} ids, end-of-text {:?} = {}) in {:.1}s",
        out.display(),
        tok.vocab_size(),
        tok.eos_token(),
        tok.eos_id(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// An advisory lock on this part of the job (`flock`): a second process on
/// the same part is refused, other parts run freely, and the kernel releases
/// the lock when the holder dies, so a killed job never leaves it stuck.
struct PartLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl PartLock {
    fn acquire(dir: &Path, part: usize, parts: usize) -> Result<Self> {
        let path = dir.join(format!(".lock-part-{part}-of-{parts}"));
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(PartLock { path, _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another scorer is already writing part {part} of {parts} in {} (lock {}): wait for it to finish, or stop it",
                dir.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}

impl Drop for PartLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Re-reads every shard of a finished set: size, footer, content hash.
pub fn verify(dir: &Path) -> Result<()> {
    let m = Manifest::load(dir)?;
    let mut bad = Vec::new();
    for e in &m.shards {
        let path = dir.join(&e.file);
        let problem = match std::fs::metadata(&path) {
            Err(_) => Some("missing".to_string()),
            Ok(md) if md.len() != e.bytes => {
                Some(format!("{} bytes, the manifest says {}", md.len(), e.bytes))
            }
            Ok(_) => match shared::hash::hash_file(&path) {
                Ok(h) if h != e.sha256 => {
                    Some(format!("content hash {h}, the manifest says {}", e.sha256))
                }
                Ok(_) => decode_all(&path).err().map(|err| err.to_string()),
                Err(err) => Some(err.to_string()),
            },
        };
        match problem {
            Some(p) => {
                eprintln!("BAD  {}: {p}", path.display());
                bad.push(e.file.clone());
            }
            None => eprintln!("ok   {} ({} windows)", path.display(), e.windows),
        }
    }
    if !bad.is_empty() {
        bail!(
            "{}: {} of {} shard(s) failed verification: {}",
            dir.display(),
            bad.len(),
            m.shards.len(),
            bad.join(", ")
        );
    }
    eprintln!(
        "{}: all {} shard(s) verified",
        dir.display(),
        m.shards.len()
    );
    Ok(())
}

/// Opens a shard and decodes every row group (positions, windows, finite ref_loss).
fn decode_all(path: &Path) -> shared::Result<()> {
    let r = ShardReader::open(path)?;
    for g in 0..r.num_row_groups() {
        r.read_row_group(g)?;
    }
    Ok(())
}

/// Removes temporary files left by killed processes (their PID is gone).
fn remove_stale_temps(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !shared::atomic::is_temp_name(&name) {
            continue;
        }
        let pid = name
            .rsplit("tmp-")
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid
            .is_some_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    Ok(())
}

pub fn run(s: &Settings) -> Result<()> {
    let started = Instant::now();
    let files = expand_inputs(&s.corpus)?;
    let tokenizer = Tokenizer::load(&s.tokenizer, s.eos_token.as_deref())?;
    let model = match &s.model {
        Some(dir) => {
            let ckpt = Checkpoint::load(dir, shared::device::default_dtype(&s.device), &s.device)?;
            if tokenizer.vocab_size() > ckpt.config.vocab_size {
                bail!(
                    "tokenizer {} has {} ids but model {} has a vocabulary of {}: they do not belong together",
                    s.tokenizer.display(),
                    tokenizer.vocab_size(),
                    dir.display(),
                    ckpt.config.vocab_size
                );
            }
            let info = ModelInfo {
                fingerprint: Checkpoint::fingerprint(dir)?,
                path: dir.display().to_string(),
                vocab_size: ckpt.config.vocab_size,
                num_params: ckpt.config.num_params(),
            };
            Some((ckpt.infer_model(&s.device)?, info))
        }
        None => None,
    };
    eprintln!("hashing {} input file(s)", files.len());
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
        text_field: s.text_field.clone(),
        tokenizer: TokenizerInfo {
            fingerprint: tokenizer.fingerprint().to_string(),
            vocab_size: tokenizer.vocab_size(),
            eos_token: tokenizer.eos_token().to_string(),
            eos_token_id: tokenizer.eos_id(),
        },
        reference_model: model.as_ref().map(|m| m.1.clone()),
        inputs,
    };
    let job_id = spec.fingerprint();

    // Pass 1: tokenize and pack everything to learn the window count (and the
    // document table); cheap next to scoring, it makes the ETA exact, and a
    // bad record fails here, before anything is written.
    eprintln!(
        "tokenizing {} file(s) with seq_len {}",
        files.len(),
        s.seq_len
    );
    let mut count = Pipeline::new(
        Corpus::new(files.clone(), &s.text_field),
        &tokenizer,
        s.seq_len,
    );
    let mut num_windows = 0u64;
    for w in count.by_ref() {
        w?;
        num_windows += 1;
    }
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
    std::fs::create_dir_all(&s.out).with_context(|| format!("creating {}", s.out.display()))?;
    let _lock = PartLock::acquire(&s.out, s.part, s.parts)?;
    remove_stale_temps(&s.out)?;
    match load_job(&s.out)? {
        Some(old) => {
            let diff = spec.differences(&old);
            if !diff.is_empty() {
                bail!(
                    "{} holds a different job; refusing to mix them:\n  {}\nUse another --out directory, or delete this one.",
                    s.out.display(),
                    diff.join("\n  ")
                );
            }
        }
        None => {
            let json = serde_json::to_string_pretty(&spec)?;
            shared::atomic::write_file(&s.out.join(JOB_FILE), json.as_bytes())?;
        }
    }

    let num_shards = num_windows.div_ceil(s.shard_windows as u64) as usize;
    let mine: Vec<usize> = (0..num_shards)
        .filter(|sh| sh % s.parts == s.part)
        .collect();
    let mut pending = Vec::new();
    for &sh in &mine {
        let path = s.out.join(shard_file_name(sh));
        if path.exists() {
            let reader = ShardReader::open(&path).with_context(|| {
                format!(
                    "{} exists but cannot be read; delete it and rerun",
                    path.display()
                )
            })?;
            if reader.info().job != job_id {
                bail!(
                    "{} was written by another job; delete it and rerun",
                    path.display()
                );
            }
        } else {
            pending.push(sh);
        }
    }
    let windows_of = |sh: usize| -> u64 {
        let start = sh as u64 * s.shard_windows as u64;
        (num_windows - start).min(s.shard_windows as u64)
    };
    let pending_windows: u64 = pending.iter().map(|&sh| windows_of(sh)).sum();
    eprintln!(
        "{num_windows} windows, {num_shards} shard(s); part {}/{}: {} shard(s), {} done, {} to {}",
        s.part,
        s.parts,
        mine.len(),
        mine.len() - pending.len(),
        pending.len(),
        if model.is_some() { "score" } else { "write" }
    );

    // Pass 2: windows again, in order; each pending shard is scored and written.
    if !pending.is_empty() {
        let label = if model.is_some() {
            "scoring"
        } else {
            "packing"
        };
        let mut progress = Progress::new(label, "tok", pending_windows * s.seq_len as u64);
        let pipeline = Pipeline::new(
            Corpus::new(files.clone(), &s.text_field),
            &tokenizer,
            s.seq_len,
        );
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
            if buf.len() as u64 == windows_of(want) {
                write_one(
                    s,
                    &job_id,
                    want,
                    &buf,
                    model.as_ref().map(|m| &m.0),
                    &mut progress,
                )?;
                shared::fault::point("between-shards");
                buf.clear();
                next.next();
            }
        }
        if next.peek().is_some() {
            bail!("the corpus changed while it was read (fewer windows on the second pass)");
        }
        progress.finish();
        let secs = pass.elapsed().as_secs_f64();
        eprintln!(
            "{label} pass: {} tokens in {secs:.3}s ({:.0} tok/s, tokenizing and writing included)",
            pending_windows * s.seq_len as u64,
            (pending_windows * s.seq_len as u64) as f64 / secs
        );
    }

    // Side tables: every part writes identical bytes, so races are harmless.
    if !s.out.join(VOCAB_FILE).exists() {
        shared::tables::write_vocab(&s.out.join(VOCAB_FILE), &tokenizer)?;
    }
    let tok_copy = s.out.join(shared::checkpoint::TOKENIZER_FILE);
    if !tok_copy.exists() {
        let bytes = std::fs::read(&s.tokenizer)
            .with_context(|| format!("reading {}", s.tokenizer.display()))?;
        shared::atomic::write_file(&tok_copy, &bytes)?;
    }
    if !s.out.join(DOCUMENTS_FILE).exists() {
        shared::tables::write_documents(&s.out.join(DOCUMENTS_FILE), &count.docs, &files)?;
    }
    let missing: Vec<usize> = (0..num_shards)
        .filter(|&sh| !s.out.join(shard_file_name(sh)).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "part {}/{} done in {:.1}s; {} shard(s) of other parts still missing: the last part to finish writes {MANIFEST_FILE}",
            s.part,
            s.parts,
            started.elapsed().as_secs_f64(),
            missing.len()
        );
        return Ok(());
    }
    let manifest = finalize(s, &spec, &job_id, num_shards, num_windows, &count)?;
    eprintln!(
        "wrote {} ({} windows, {} tokens, {} shard(s)) in {:.1}s",
        s.out.display(),
        manifest.num_windows,
        manifest.num_tokens,
        manifest.shards.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(r) = &manifest.ref_loss {
        eprintln!(
            "ref_loss: mean {:.4}, std {:.4}, min {:.4}, max {:.4} over {} tokens",
            r.mean, r.std, r.min, r.max, r.count
        );
    }
    Ok(())
}

fn write_one(
    s: &Settings,
    job_id: &str,
    shard: usize,
    windows: &[Window],
    model: Option<&Llama>,
    progress: &mut Progress,
) -> Result<()> {
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
        s.seq_len,
        s.row_group_windows,
        windows,
        losses.as_deref(),
    )?;
    Ok(())
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
    shared::fault::point("forward");
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

fn finalize(
    s: &Settings,
    spec: &JobSpec,
    job_id: &str,
    num_shards: usize,
    num_windows: u64,
    count: &Pipeline,
) -> Result<Manifest> {
    let mut shards = Vec::with_capacity(num_shards);
    let mut stats = LossStats::default();
    for sh in 0..num_shards {
        let file = shard_file_name(sh);
        let path = s.out.join(&file);
        let reader = ShardReader::open(&path)?;
        let info = reader.info();
        if info.job != job_id {
            bail!(
                "{} was written by another job; delete it and rerun",
                path.display()
            );
        }
        stats.merge(&info.ref_loss);
        shards.push(ShardEntry {
            file,
            first_seq_id: info.first_seq_id,
            windows: info.windows,
            rows: info.rows,
            bytes: std::fs::metadata(&path)?.len(),
            sha256: shared::hash::hash_file(&path)?,
        });
    }
    let manifest = Manifest {
        format: FORMAT_NAME.to_string(),
        job: spec.clone(),
        job_fingerprint: job_id.to_string(),
        num_windows,
        num_tokens: num_windows * s.seq_len as u64,
        num_documents: count.docs.len() as u64,
        skipped_empty_documents: count.corpus().skipped_empty() + count.skipped_untokenized,
        dropped_tail_tokens: count.dropped_tail() as u64,
        shards,
        ref_loss: spec.scored.then(|| LossSummary::from(&stats)),
        created_by: format!("scorer {}", env!("CARGO_PKG_VERSION")),
    };
    let json = serde_json::to_string_pretty(&manifest)?;
    shared::atomic::write_file(&s.out.join(MANIFEST_FILE), json.as_bytes())?;
    Ok(manifest)
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
        "ref_loss": m.ref_loss,
    })
}
