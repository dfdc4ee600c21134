//! `trainer selection`: what the selection rule keeps, by document label, on
//! the first batches of a run's data order (offline; no training). Documents
//! whose `original_id` is `noise:<kind>:<n>` (see scripts/inject_noise.py) are
//! labelled `<kind>`, the others `original`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use clap::Args;
use shared::model::checkpoint::{init_varmap, model_over, Checkpoint};
use shared::model::config::LlamaConfig;
use shared::model::Mode;

use crate::data::TrainData;
use shared::select::noise::predicted;
use shared::select::{select, Method, Params, Tokens};

#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// Scored set (written by `scorer score`).
    #[arg(long)]
    pub data: PathBuf,
    /// Checkpoint giving the live loss; default: a fresh model of --model-size
    /// and --seed (what the first step of an SLM run sees).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Size of the fresh model.
    #[arg(long, default_value = "tiny", value_parser = shared::model::config::MODEL_SIZES)]
    pub model_size: String,
    /// Seed of the data order, the fresh model and random selection (as in `trainer train`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Token selection rule (as `trainer train --select`).
    #[arg(long, value_enum, default_value = "topk-batch")]
    pub select: Method,
    /// Fraction k of predicted tokens kept, in (0, 1].
    #[arg(long, default_value_t = shared::select::DEFAULT_RATIO)]
    pub select_ratio: f64,
    /// The noise filter of `trainer train --noise-quantile`, fitted to --data.
    #[arg(long)]
    pub noise_quantile: Option<f64>,
    /// Span of the noise filter's mean, in tokens.
    #[arg(long, default_value_t = shared::select::noise::DEFAULT_SPAN)]
    pub noise_span: usize,
    /// Windows per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Batches to analyse.
    #[arg(long, default_value_t = 50)]
    pub batches: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &SelectionArgs) -> Result<()> {
    shared::util::ratio::check_ratio("--select-ratio", a.select_ratio)
        .map_err(anyhow::Error::msg)?;
    let dev = candle_core::Device::Cpu;
    let mut data = TrainData::open(std::slice::from_ref(&a.data), a.seed)?;
    let set = &data.sets()[0];
    let docs_path = set.side_file(shared::scores::format::DOCUMENTS_FILE)?;
    let labels: HashMap<u64, String> = shared::scores::tables::read_document_ids(&docs_path)?
        .into_iter()
        .map(|(id, orig)| {
            let label = orig
                .as_deref()
                .and_then(|o| o.strip_prefix("noise:"))
                .and_then(|r| r.split(':').next())
                .unwrap_or("original")
                .to_string();
            (id, label)
        })
        .collect();
    let vocab = set.manifest().job.tokenizer.vocab_size;
    let model = match &a.model {
        Some(dir) => Checkpoint::load(dir, DType::F32, &dev)?.infer_model(&dev)?,
        None => {
            let cfg = LlamaConfig::preset(&a.model_size, vocab)?;
            model_over(
                &init_varmap(&cfg, a.seed, 0.02, &dev)?,
                &cfg,
                DType::F32,
                &dev,
                Mode::Infer,
            )?
        }
    };
    let noise = match a.noise_quantile {
        Some(q) if q > 0.0 && q < 1.0 => Some(crate::noise::fit(&data, a.noise_span, q)?),
        Some(q) => anyhow::bail!("--noise-quantile must be in (0, 1), got {q}"),
        None => None,
    };
    let params = Params {
        method: a.select,
        ratio: a.select_ratio,
        threshold: 0.0,
        temperature: 1.0,
        noise,
    };
    // label -> (tokens, kept)
    let mut tally: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for step in 0..a.batches {
        let b = data.batch((step * a.batch_size) as u64, a.batch_size)?;
        let t = b.seq_len;
        let ids = Tensor::from_slice(&b.tokens, (b.rows, t), &dev)?;
        let ce = model.token_losses(&ids)?.flatten_all()?.to_vec1::<f32>()?;
        let rl = b.ref_loss.as_ref().context("the set has no ref_loss")?;
        let (refs, docs) = predicted(rl, &b.doc_ids, t);
        let mut rng = shared::select::step_rng(a.seed, step as u64);
        let tokens = Tokens {
            ce: &ce,
            ref_loss: &refs,
            doc_ids: Some(&docs),
            rows: b.rows,
            cols: t - 1,
        };
        let w = select(&params, &tokens, &mut rng).weights;
        for (d, wi) in docs.iter().zip(&w) {
            let e = tally
                .entry(labels.get(d).cloned().unwrap_or_else(|| "original".into()))
                .or_default();
            e.0 += 1;
            e.1 += *wi as f64;
        }
    }
    let rows: Vec<serde_json::Value> = tally
        .iter()
        .map(|(label, (n, kept))| serde_json::json!({"label": label, "tokens": n, "kept": kept, "dropped_frac": 1.0 - kept / *n as f64}))
        .collect();
    if a.json {
        shared::out!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        if let Some(f) = noise {
            shared::out!(
                "noise filter: span {}, cap {:.3} nats (quantile {} of --data)",
                f.span,
                f.cap,
                a.noise_quantile.unwrap_or_default()
            );
        }
        shared::out!(
            "--select {} k={} on {} batches of {} windows ({})",
            crate::args::cli_name(&a.select),
            a.select_ratio,
            a.batches,
            a.batch_size,
            a.model
                .as_ref()
                .map(|m| m.display().to_string())
                .unwrap_or_else(|| format!("fresh {} model, seed {}", a.model_size, a.seed))
        );
        shared::out!("{:<12} {:>10} {:>10}", "label", "tokens", "dropped");
        for (label, (n, kept)) in &tally {
            shared::out!(
                "{label:<12} {n:>10} {:>9.1}%",
                100.0 * (1.0 - kept / *n as f64)
            );
        }
    }
    Ok(())
}
