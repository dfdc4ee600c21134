//! `trainer demo`: the RHO-1 pipeline on the corpus shipped in `data/`, end
//! to end, as the ordinary commands would run it:
//!
//! 1. `scorer tokenizer` on the clean training split
//! 2. `scorer pack` the clean training and held-out splits
//! 3. `trainer train --objective clm` the reference model on clean text
//! 4. `scorer score` the noisy corpus with the reference model
//! 5. `trainer train` a CLM baseline and an SLM model on the noisy shards
//!    (same size, steps, batch, seed)
//! 6. evaluate all three on the held-out clean split; write a report
//!
//! Every stage is skipped when its output is complete, and resumed when a
//! run was interrupted; a stage made with other settings is refused, naming
//! them ([`crate::tools::demo_stages`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::args::{cli_name, Objective, TrainArgs};
use crate::tools::demo_stages::{with, Made, Stages};
use crate::tools::plot::{svg, Chart, Series};
use serde_json::json;
use shared::select::Method;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Working directory for every artefact (sets, runs, report).
    #[arg(long, default_value = "runs/demo")]
    pub work: PathBuf,
    /// Directory holding clean_train, clean_heldout and noisy_web (.jsonl.zst).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Tokenizer vocabulary size.
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Model size of all three models.
    #[arg(long, value_enum, default_value = "tiny")]
    pub model_size: shared::model::config::ModelSize,
    /// Steps of the reference model on clean text.
    #[arg(long, default_value_t = 400)]
    pub ref_steps: u64,
    /// Steps of the CLM and SLM models on the noisy corpus.
    #[arg(long, default_value_t = 400)]
    pub steps: u64,
    /// Windows per step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// SLM selection ratio k.
    #[arg(long, default_value_t = shared::select::DEFAULT_RATIO)]
    pub select_ratio: f64,
    /// SLM selection rule.
    #[arg(long, value_enum, default_value = "topk-batch")]
    pub select: Method,
    /// SLM noise filter (`trainer train --noise-quantile`) [default: off].
    #[arg(long)]
    pub noise_quantile: Option<f64>,
    /// Seed of the target runs (the reference always uses seed 0).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate on the held-out split every N steps.
    #[arg(long, default_value_t = 50)]
    pub eval_every: u64,
}

fn scorer_bin() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name(format!("scorer{}", std::env::consts::EXE_SUFFIX));
    if !p.is_file() {
        bail!(
            "the scorer binary is not next to {} : build both with `cargo build --release`",
            me.display()
        );
    }
    Ok(p)
}

fn scorer(args: &[&str]) -> Result<()> {
    let bin = scorer_bin()?;
    shared::say!("$ scorer {}", args.join(" "));
    let status = Command::new(&bin)
        .args(args)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("scorer {} failed ({status})", args.first().unwrap_or(&""));
    }
    Ok(())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// A training run of the demo: where, on what, how long, and what defines it.
struct TrainStage {
    out: PathBuf,
    data: PathBuf,
    objective: Objective,
    steps: u64,
    seed: u64,
    made: Made,
}

/// Trains unless the run already reached its last step; resumes a partial
/// run. False when a signal stopped it (its checkpoint saved): the demo ends
/// there, and a rerun continues.
fn train_stage(a: &DemoArgs, stages: &mut Stages, t: &TrainStage, eval: &Path) -> Result<bool> {
    let (out, steps) = (&t.out, t.steps);
    stages.claim(out, &t.made)?;
    if let Ok(st) = crate::state::load_state(&out.join("final")) {
        if st.step == steps {
            shared::say!(
                "= {} is complete ({steps} steps), reusing it",
                out.display()
            );
            return Ok(true);
        }
    }
    let resume = out.join(crate::train::METRICS_FILE).exists();
    let argv = train_argv(a, out, &t.data, t.objective, steps, t.seed, eval, resume);
    shared::say!("$ trainer train {}", argv.join(" "));
    let args = parse_train_args(&argv)?;
    crate::train::run(&args.resolve()?)?;
    Ok(!shared::util::interrupt::stopped())
}

/// Step 5's runs: the CLM baseline and SLM on the noisy shards, named by
/// seed (and SLM by its rule), so that other seeds and rules add runs.
fn target_stages(a: &DemoArgs, runs: &Path, noisy_set: &Path) -> [TrainStage; 2] {
    let tag = format!("seed{}", a.seed);
    let noise = a
        .noise_quantile
        .map(|q| format!("-nq{q}"))
        .unwrap_or_default();
    let slm_name = format!("slm-{:?}-k{}{noise}-{tag}", a.select, a.select_ratio).to_lowercase();
    let made_clm = with(
        &made_reference(a),
        &[
            ("steps", json!(a.steps)),
            ("seed", json!(a.seed)),
            ("eval_every", json!(a.eval_every)),
        ],
    );
    let made_slm = with(
        &made_clm,
        &[
            ("select", json!(cli_name(&a.select))),
            ("select_ratio", json!(a.select_ratio)),
            ("noise_quantile", json!(a.noise_quantile)),
        ],
    );
    let stage = |name: String, objective, made| TrainStage {
        out: runs.join(name),
        data: noisy_set.to_path_buf(),
        objective,
        steps: a.steps,
        seed: a.seed,
        made,
    };
    [
        stage(format!("clm-{tag}"), Objective::Clm, made_clm),
        stage(slm_name, Objective::Slm, made_slm),
    ]
}

/// The `trainer train` flags of a demo stage, as a user would type them:
/// the demo echoes this line and runs exactly what it parses to.
#[allow(clippy::too_many_arguments)]
fn train_argv(
    a: &DemoArgs,
    out: &Path,
    data: &Path,
    objective: Objective,
    steps: u64,
    seed: u64,
    eval: &Path,
    resume: bool,
) -> Vec<String> {
    let mut v: Vec<String> = [
        ("--data", p(data).to_string()),
        ("--eval-data", p(eval).to_string()),
        ("--out", p(out).to_string()),
        ("--objective", cli_name(&objective)),
        ("--select", cli_name(&a.select)),
        ("--select-ratio", a.select_ratio.to_string()),
        ("--model-size", cli_name(&a.model_size)),
        ("--batch-size", a.batch_size.to_string()),
        ("--max-steps", steps.to_string()),
        ("--seed", seed.to_string()),
        ("--eval-every", a.eval_every.to_string()),
        ("--checkpoint-every", "100".to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect();
    if let (Some(q), Objective::Slm) = (a.noise_quantile, objective) {
        v.extend(["--noise-quantile".to_string(), q.to_string()]);
    }
    if resume {
        v.push("--resume".to_string());
    }
    v
}

fn parse_train_args(argv: &[String]) -> Result<TrainArgs> {
    #[derive(clap::Parser)]
    struct Train {
        #[command(flatten)]
        args: TrainArgs,
    }
    let cmd = std::iter::once("train".to_string()).chain(argv.iter().cloned());
    Ok(<Train as clap::Parser>::try_parse_from(cmd)
        .context("the demo built a `trainer train` line that does not parse")?
        .args)
}

/// (step, tokens_trained, eval_loss) of every evaluation.
fn eval_curve(run: &Path) -> Result<Vec<(f64, f64, f64)>> {
    Ok(crate::tools::report::read_metrics(run)?
        .evals()
        .map(|e| (e.step as f64, e.tokens_trained, e.eval_loss))
        .collect())
}

/// First step (interpolated between evaluations) at which `curve` reaches `target`.
pub fn steps_to_reach(curve: &[(f64, f64, f64)], target: f64) -> Option<f64> {
    curve.windows(2).find_map(|w| {
        let ((s0, _, l0), (s1, _, l1)) = (w[0], w[1]);
        (l1 <= target).then(|| {
            if l0 <= target {
                s0
            } else {
                s0 + (s1 - s0) * (l0 - target) / (l0 - l1)
            }
        })
    })
}

/// What defines the tokenizer: its size and the data it learns from.
fn made_tokenizer(a: &DemoArgs) -> Made {
    with(
        &Made::new(),
        &[
            ("vocab_size", json!(a.vocab_size)),
            ("data_dir", json!(a.data_dir)),
        ],
    )
}

/// What defines the reference model (and the noisy set it scores).
fn made_reference(a: &DemoArgs) -> Made {
    with(
        &made_tokenizer(a),
        &[
            ("seq_len", json!(a.seq_len)),
            ("model_size", json!(a.model_size)),
            ("ref_steps", json!(a.ref_steps)),
            ("batch_size", json!(a.batch_size)),
        ],
    )
}

/// Steps 1-2: the tokenizer (trained on the clean split) and the packed clean
/// splits, each skipped when a previous run left it complete.
fn pack_clean(
    a: &DemoArgs,
    stages: &mut Stages,
    tok: &Path,
    splits: &[(&PathBuf, &PathBuf)],
    th: &[&str],
) -> Result<()> {
    let seq = a.seq_len.to_string();
    let clean = splits[0].0;
    let made_tok = made_tokenizer(a);
    stages.claim(tok, &made_tok)?;
    if tok.is_file() {
        shared::say!("= {} exists, reusing it", tok.display());
    } else {
        scorer(&[
            "tokenizer",
            "--corpus",
            p(clean),
            "--vocab-size",
            &a.vocab_size.to_string(),
            "--out",
            p(tok),
        ])?;
    }
    for &(src, out) in splits {
        stages.claim(out, &with(&made_tok, &[("seq_len", json!(a.seq_len))]))?;
        if out.join("manifest.json").is_file() {
            shared::say!("= {} is complete, reusing it", out.display());
        } else {
            let mut args = vec![
                "pack",
                "--tokenizer",
                p(tok),
                "--corpus",
                p(src),
                "--out",
                p(out),
                "--seq-len",
                &seq,
            ];
            args.extend(th);
            scorer(&args)?;
        }
    }
    Ok(())
}

/// Step 4: the noisy corpus scored by the reference model.
fn score_noisy(
    a: &DemoArgs,
    stages: &mut Stages,
    model: &Path,
    noisy_src: &Path,
    noisy_set: &Path,
    th: &[&str],
) -> Result<()> {
    stages.claim(noisy_set, &made_reference(a))?;
    if noisy_set.join("manifest.json").is_file() {
        shared::say!("= {} is complete, reusing it", noisy_set.display());
        return Ok(());
    }
    let seq = a.seq_len.to_string();
    let mut args = vec![
        "score",
        "--model",
        p(model),
        "--corpus",
        p(noisy_src),
        "--out",
        p(noisy_set),
        "--seq-len",
        &seq,
        "--batch-size",
        "16",
    ];
    args.extend(th);
    scorer(&args)
}

/// Step 6: report.md and the held-out loss chart of the three runs.
fn report(a: &DemoArgs, reference: &Path, clm: &Path, slm: &Path) -> Result<(String, String)> {
    let (rc, cc, sc) = (eval_curve(reference)?, eval_curve(clm)?, eval_curve(slm)?);
    let last = |c: &[(f64, f64, f64)]| c.last().copied().unwrap_or((0.0, 0.0, f64::NAN));
    let (r_last, c_last, s_last) = (last(&rc), last(&cc), last(&sc));
    let reach = steps_to_reach(&sc, c_last.2);
    let mut md = String::new();
    md.push_str("# RHO-1 demo: selective vs plain language modeling\n\n");
    md.push_str(&format!(
        "Model `{}` for all runs; windows of {} tokens, batch {}, vocabulary {}. Reference: {} steps on the clean training split. \
         Targets: {} steps on the noisy corpus, seed {}. SLM: `{}`, k = {}.\n\n",
        a.model_size.name(), a.seq_len, a.batch_size, a.vocab_size, a.ref_steps, a.steps, a.seed, cli_name(&a.select), a.select_ratio
    ));
    md.push_str("| model | steps | tokens backpropagated | held-out clean CE | perplexity |\n|---|---:|---:|---:|---:|\n");
    for (name, l) in [
        ("reference (clean)", r_last),
        ("CLM (noisy)", c_last),
        ("SLM (noisy)", s_last),
    ] {
        md.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {:.4} | {:.2} |\n",
            l.0,
            l.1,
            l.2,
            l.2.exp()
        ));
    }
    md.push_str(&format!(
        "\nSLM - CLM at equal steps: {:+.4}. ",
        s_last.2 - c_last.2
    ));
    match reach {
        Some(st) => md.push_str(&format!(
            "SLM reaches CLM's final held-out loss ({:.4}) at step {:.0}, {:.0}% of CLM's steps.\n",
            c_last.2,
            st,
            100.0 * st / c_last.0.max(1.0)
        )),
        None => md.push_str("SLM does not reach CLM's final held-out loss within the run.\n"),
    }
    md.push_str("\n![held-out loss](heldout_loss.svg)\n\nOne run, one seed: see FIDELITY.md (scripts/fidelity.sh) for the spread over seeds before reading a difference as a result.\n");
    let series = |f: fn(&(f64, f64, f64)) -> (f64, f64)| {
        vec![
            Series {
                name: "CLM".into(),
                points: cc.iter().map(f).collect(),
            },
            Series {
                name: format!("SLM k={}", a.select_ratio),
                points: sc.iter().map(f).collect(),
            },
        ]
    };
    let chart = svg(&[
        Chart {
            title: "held-out clean CE vs steps".into(),
            x_label: "step".into(),
            y_label: "CE (nats)".into(),
            series: series(|p| (p.0, p.2)),
        },
        Chart {
            title: "held-out clean CE vs tokens backpropagated".into(),
            x_label: "tokens".into(),
            y_label: "CE (nats)".into(),
            series: series(|p| (p.1, p.2)),
        },
    ]);
    Ok((md, chart))
}

pub fn run(a: &DemoArgs, threads: Option<usize>) -> Result<()> {
    let started = std::time::Instant::now();
    let w = &a.work;
    shared::util::location::local_output(w)?;
    std::fs::create_dir_all(w)?;
    let clean = a.data_dir.join("clean_train.jsonl.zst");
    let heldout_src = a.data_dir.join("clean_heldout.jsonl.zst");
    let noisy_src = a.data_dir.join("noisy_web.jsonl.zst");
    for f in [&clean, &heldout_src, &noisy_src] {
        if !f.is_file() {
            bail!(
                "{} is missing (run from the repository root, or pass --data-dir)",
                f.display()
            );
        }
    }
    let threads: Vec<String> = threads
        .map(|t| vec!["--threads".into(), t.to_string()])
        .unwrap_or_default();
    let th: Vec<&str> = threads.iter().map(|s| s.as_str()).collect();

    // 1-2. tokenizer and packed clean splits
    let tok = w.join("tokenizer.json");
    let sets = w.join("sets");
    let (clean_set, heldout_set, noisy_set) = (
        sets.join("clean-train"),
        sets.join("clean-heldout"),
        sets.join("noisy-scored"),
    );
    let mut stages = Stages::open(w)?;
    pack_clean(
        a,
        &mut stages,
        &tok,
        &[(&clean, &clean_set), (&heldout_src, &heldout_set)],
        &th,
    )?;
    // 3. reference model
    let runs = w.join("runs");
    let reference = TrainStage {
        out: runs.join("reference"),
        data: clean_set.clone(),
        objective: Objective::Clm,
        steps: a.ref_steps,
        seed: 0,
        made: made_reference(a),
    };
    if !train_stage(a, &mut stages, &reference, &heldout_set)? {
        return Ok(());
    }
    // 4. score the noisy corpus (a rerun of the same command resumes or skips)
    let reference_final = reference.out.join("final");
    score_noisy(
        a,
        &mut stages,
        &reference_final,
        &noisy_src,
        &noisy_set,
        &th,
    )?;
    // 5. CLM baseline and SLM on the noisy shards
    let [clm, slm] = target_stages(a, &runs, &noisy_set);
    for stage in [&clm, &slm] {
        if !train_stage(a, &mut stages, stage, &heldout_set)? {
            return Ok(());
        }
    }

    // 6. report
    let (md, chart) = report(a, &reference.out, &clm.out, &slm.out)?;
    shared::util::atomic::write_file(&w.join("heldout_loss.svg"), chart.as_bytes())?;
    shared::util::atomic::write_file(&w.join("report.md"), md.as_bytes())?;
    shared::out!("\n{md}");
    shared::say!(
        "report: {} (and heldout_loss.svg), {:.1} min in all",
        w.join("report.md").display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_to_reach_interpolates_between_evaluations() {
        let c = vec![(0.0, 0.0, 8.0), (50.0, 0.0, 6.0), (100.0, 0.0, 5.0)];
        assert_eq!(steps_to_reach(&c, 6.0), Some(50.0));
        assert_eq!(steps_to_reach(&c, 5.5), Some(75.0));
        assert_eq!(steps_to_reach(&c, 4.0), None);
    }

    #[test]
    fn echoed_train_line_parses_to_what_runs() {
        #[derive(clap::Parser)]
        struct Demo {
            #[command(flatten)]
            args: DemoArgs,
        }
        let a = <Demo as clap::Parser>::try_parse_from(["demo", "--seed", "3"])
            .unwrap()
            .args;
        let (out, data, eval) = (Path::new("r/slm"), Path::new("s/noisy"), Path::new("s/h"));
        for (objective, resume) in [(Objective::Clm, false), (Objective::Slm, true)] {
            let argv = train_argv(&a, out, data, objective, 40, 3, eval, resume);
            let line = argv.join(" ");
            assert!(!line.contains("Clm") && !line.contains("Slm"), "{line}");
            let t = parse_train_args(&argv).unwrap();
            assert_eq!(t.select.objective, Some(objective));
            assert_eq!(t.select.method, Some(a.select));
            assert_eq!(t.select.ratio, Some(a.select_ratio));
            assert_eq!((t.run.max_steps, t.data.seed), (Some(40), Some(3)));
            assert_eq!(t.data.sets, vec![data.to_path_buf()]);
            assert_eq!(t.run.resume, resume);
            assert_eq!(t.model.size, Some(a.model_size));
        }
    }
}
