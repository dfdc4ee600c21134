//! `trainer bench`: our side of the speed figures, measured in one process
//! with CLM and SLM steps interleaved so that drift hits both: step times,
//! the SLM/CLM ratio, the time spent reading reference losses as a share of
//! a step, a scoring forward pass (per-token losses, no backward), and
//! achieved GFLOP/s against this machine's measured GEMM rate. Any device
//! and compute dtype (`--device cuda:0 --dtype bf16`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use shared::model::checkpoint::init_varmap;
use shared::model::config::LlamaConfig;
use shared::model::Mode;
use shared::util::rng::Rng;

use crate::args::Objective;
use crate::data::TrainData;
use crate::optim::{AdamW, AdamWConfig};
use crate::step::{train_step, StepInput};
use shared::model::checkpoint::model_over;
use shared::select::{Method, Params};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// A scored set with windows of the length to measure.
    #[arg(long)]
    pub data: PathBuf,
    /// Model size (tiny: hidden 128; small: 256; medium: 512) or a config.json.
    #[arg(long, default_value = "tiny")]
    pub model_size: String,
    /// Windows per step.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Measured steps of each kind (after 2 warm-up steps each).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Print the figures as one JSON object (for bench/run.py) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// cpu, or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn gemm_gflops(dev: &Device, dtype: DType) -> Result<f64> {
    // 1024^3 on the CPU (the figure README quotes); larger on a GPU, where
    // 1024^3 takes microseconds.
    let n = if dev.is_cpu() { 1024 } else { 8192 };
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?.to_dtype(dtype)?;
    let mut t = Vec::new();
    for _ in 0..5 {
        dev.synchronize()?;
        let s = Instant::now();
        let c = a.matmul(&b)?;
        let _ = c.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        t.push(s.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / median(&mut t) / 1e9)
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let dev = shared::util::device::parse_device(&a.device)?;
    let dtype = shared::util::device::parse_dtype(&a.dtype)?;
    shared::util::device::check_dtype(&dev, dtype)?;
    let mut data = TrainData::open(std::slice::from_ref(&a.data), 1)?;
    let vocab = data.sets()[0].manifest().job.tokenizer.vocab_size;
    let cfg = if a.model_size.ends_with(".json") {
        LlamaConfig::load(a.model_size.as_ref())?
    } else {
        LlamaConfig::preset(&a.model_size, vocab)?
    };
    let vm = init_varmap(&cfg, 0, 0.02, &dev)?;
    let mut model = model_over(&vm, &cfg, dtype, &dev, Mode::Train)?;
    let scorer = model_over(&vm, &cfg, dtype, &dev, Mode::Infer)?; // the scorer's path
    let mut opt = AdamW::new(
        &vm,
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        },
    )?;
    let sel = Params {
        method: Method::TopkBatch,
        ratio: 0.6,
        threshold: 0.0,
        temperature: 1.0,
        noise: None,
    };
    let t = data.seq_len();
    let tokens = (a.batch_size * t) as f64;
    let (mut clm, mut slm, mut read, mut score) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cursor = 0u64;
    for i in 0..(a.steps + 2) * 2 {
        let r0 = Instant::now();
        let batch = data.batch(cursor, a.batch_size)?;
        let r = r0.elapsed().as_secs_f64();
        cursor += a.batch_size as u64;
        let objective = if i % 2 == 0 {
            Objective::Clm
        } else {
            Objective::Slm
        };
        let input = StepInput {
            objective,
            select: &sel,
            lr: 1e-4,
            grad_clip: 1.0,
            trace: false,
            split: crate::dist::layout::Split::single(a.batch_size, 1),
            comm: &crate::dist::Solo,
            zero: None,
        };
        if objective == Objective::Clm {
            // A scoring pass over the same windows: forward and per-token losses only.
            let ids = Tensor::from_slice(&batch.tokens, (batch.rows, batch.seq_len), &dev)?;
            dev.synchronize()?;
            let f0 = Instant::now();
            let _ = scorer.token_losses(&ids)?.to_vec2::<f32>()?;
            if i >= 4 {
                score.push(f0.elapsed().as_secs_f64());
            }
        }
        dev.synchronize()?;
        let s0 = Instant::now();
        if dtype != DType::F32 {
            model = model_over(&vm, &cfg, dtype, &dev, Mode::Train)?; // fresh half copies, as train does
        }
        train_step(
            &model,
            &mut opt,
            std::slice::from_ref(&batch),
            &input,
            &mut Rng::new(i as u64),
            &dev,
        )?;
        dev.synchronize()?;
        let s = s0.elapsed().as_secs_f64();
        if i >= 4 {
            read.push(r);
            if objective == Objective::Clm {
                clm.push(s)
            } else {
                slm.push(s)
            }
        }
    }
    let (clm, slm) = (Spread::of(&mut clm), Spread::of(&mut slm));
    let (r, f) = (median(&mut read), median(&mut score));
    let (flops, score_flops) = step_flops(&cfg, t, tokens);
    let gemm = gemm_gflops(&dev, dtype)?;
    let fig = Figures {
        tokens,
        clm,
        slm,
        read: r,
        amplification: data.amplification(),
        score: f,
        flops,
        score_flops,
        gemm,
    };
    if a.json {
        shared::out!("{}", fig.json(a, &cfg));
    } else {
        fig.print(a, &cfg, t);
    }
    Ok(())
}

/// FLOPs of a training step and of a scoring pass over `tokens` tokens in
/// windows of `t`. Training: 6 per matmul parameter per token (forward and
/// backward; an untied input embedding is a lookup, not a matmul) plus
/// attention scores and mixing (12 * layers * T * hidden per token).
/// Scoring: 2 per matmul parameter per token plus attention (4 * layers * T
/// * hidden).
fn step_flops(cfg: &LlamaConfig, t: usize, tokens: f64) -> (f64, f64) {
    let lookup = if cfg.tie_word_embeddings {
        0
    } else {
        cfg.vocab_size * cfg.hidden_size
    };
    let matmul_params = (cfg.num_params() - lookup) as f64;
    let attention = cfg.num_hidden_layers as f64 * t as f64 * cfg.hidden_size as f64;
    (
        tokens * (6.0 * matmul_params + 12.0 * attention),
        tokens * (2.0 * matmul_params + 4.0 * attention),
    )
}

/// Median, min and max of step times (s).
struct Spread {
    median: f64,
    lo: f64,
    hi: f64,
}

impl Spread {
    fn of(v: &mut [f64]) -> Spread {
        let lo = v.iter().cloned().fold(f64::MAX, f64::min);
        let hi = v.iter().cloned().fold(0.0, f64::max);
        Spread {
            median: median(v),
            lo,
            hi,
        }
    }
}

/// What one bench run measured.
struct Figures {
    tokens: f64,
    clm: Spread,
    slm: Spread,
    read: f64,
    /// Rows the reader decoded per row it handed out.
    amplification: f64,
    score: f64,
    flops: f64,
    score_flops: f64,
    gemm: f64,
}

impl Figures {
    fn json(&self, a: &BenchArgs, cfg: &LlamaConfig) -> serde_json::Value {
        let kind =
            |k: &Spread| serde_json::json!({"median_s": k.median, "min_s": k.lo, "max_s": k.hi});
        serde_json::json!({
            "tokens_per_step": self.tokens,
            "params": cfg.num_params(),
            "train_flops_per_step": self.flops,
            "clm": kind(&self.clm),
            "slm": kind(&self.slm),
            "read_s": self.read,
            "read_amplification": self.amplification,
            "score_s": self.score,
            "score_flops_per_step": self.score_flops,
            "gemm_gflops": self.gemm,
            "gemm_backend": shared::kernels::gemm::backend(),
            "device": a.device,
            "dtype": a.dtype,
            "threads": candle_core::utils::get_num_threads(),
        })
    }

    fn print(&self, a: &BenchArgs, cfg: &LlamaConfig, t: usize) {
        let (c, s, r, f, gemm) = (&self.clm, &self.slm, self.read, self.score, self.gemm);
        shared::out!(
        "model {} ({:.2}M params) on {} in {}, batch {} x {t}, {} measured steps of each, {} threads, GEMM: {}",
        a.model_size,
        cfg.num_params() as f64 / 1e6,
        a.device,
        a.dtype,
        a.batch_size,
        a.steps,
        candle_core::utils::get_num_threads(),
        shared::kernels::gemm::backend()
    );
        shared::out!(
            "CLM step      {:8.1} ms  (min {:.1}, max {:.1})  {:8.0} tok/s",
            c.median * 1e3,
            c.lo * 1e3,
            c.hi * 1e3,
            self.tokens / c.median
        );
        shared::out!(
            "SLM step      {:8.1} ms  (min {:.1}, max {:.1})  {:8.0} tok/s",
            s.median * 1e3,
            s.lo * 1e3,
            s.hi * 1e3,
            self.tokens / s.median
        );
        shared::out!("SLM / CLM     {:8.3}", s.median / c.median);
        shared::out!(
            "scoring       {:8.1} ms                       {:8.0} tok/s  ({:.1} GFLOP/s)",
            f * 1e3,
            self.tokens / f,
            self.score_flops / f / 1e9
        );
        shared::out!(
            "reading a batch (tokens + ref_loss) {:.3} ms = {:.2}% of an SLM step; rows decoded / rows used {:.2}",
            r * 1e3,
            100.0 * r / s.median,
            self.amplification
        );
        shared::out!(
            "achieved {:.1} GFLOP/s = {:.0}% of measured {} GEMM ({gemm:.1} GFLOP/s)",
            self.flops / c.median / 1e9,
            100.0 * self.flops / c.median / 1e9 / gemm,
            a.dtype
        );
    }
}
