//! `trainer report --run DIR...`: final held-out losses of runs, grouped over
//! seeds (mean and spread), and SVG plots of their metrics.
//! Runs named `<label>-seed<N>` form one group per label.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use shared::metrics::{EvalRecord, Metrics, StepRecord};

use crate::tools::plot::{svg, Chart, Series};

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Run directories (each with metrics.jsonl).
    #[arg(long, required = true, num_args = 1..)]
    pub run: Vec<PathBuf>,
    /// Directory for the table (report.md) and its plots: report-1.svg
    /// (held-out loss), report-2.svg (training losses), report-3.svg (selection).
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
}

/// A run's metrics.jsonl.
pub fn read_metrics(run: &Path) -> Result<Metrics> {
    Ok(Metrics::read(&run.join(crate::train::METRICS_FILE))?)
}

/// A curve over a run's step lines (x, y), skipping steps where `y` is None.
fn step_curve(m: &Metrics, y: fn(&StepRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    m.steps()
        .filter_map(|r| Some((r.step as f64, y(r)?)))
        .collect()
}

/// The held-out loss over a run's evaluations, against `x`.
fn eval_curve(m: &Metrics, x: fn(&EvalRecord) -> f64) -> Vec<(f64, f64)> {
    m.evals().map(|r| (x(r), r.eval_loss)).collect()
}

fn group_label(run: &Path) -> String {
    let name = run
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind("-seed") {
        Some(i) if name[i + 5..].chars().all(|c| c.is_ascii_digit()) && i + 5 < name.len() => {
            name[..i].to_string()
        }
        _ => name,
    }
}

/// Mean and sample standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = if xs.len() > 1 {
        xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, v.sqrt())
}

pub fn run(a: &ReportArgs) -> Result<()> {
    let mut groups: BTreeMap<String, Vec<(f64, f64, f64)>> = BTreeMap::new(); // label -> (loss, step, tokens_trained)
    let mut all = Vec::new();
    for r in &a.run {
        let m = read_metrics(r)?;
        let Some(last) = m.evals().last() else {
            bail!(
                "{}: no evaluation in metrics.jsonl (train with --eval-data)",
                r.display()
            )
        };
        let (step, loss) = (last.step as f64, last.eval_loss);
        let trained = m.steps().last().map_or(0.0, |s| s.tokens_trained);
        groups
            .entry(group_label(r))
            .or_default()
            .push((loss, step, trained));
        all.push((r.clone(), m));
    }
    let mut md = String::from("| run | seeds | steps | tokens backpropagated | held-out CE (mean) | spread (sd) |\n|---|---:|---:|---:|---:|---:|\n");
    for (label, v) in &groups {
        let (m, sd) = mean_std(&v.iter().map(|x| x.0).collect::<Vec<_>>());
        let (steps, tok) = (
            v[0].1,
            mean_std(&v.iter().map(|x| x.2).collect::<Vec<_>>()).0,
        );
        md.push_str(&format!(
            "| {label} | {} | {steps:.0} | {tok:.0} | {m:.4} | {} |\n",
            v.len(),
            if v.len() > 1 {
                format!("{sd:.4}")
            } else {
                "-".into()
            }
        ));
    }
    let name = |r: &PathBuf| {
        r.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let chart =
        |title: &str, x: &str, y: &str, points: &dyn Fn(&Metrics) -> Vec<(f64, f64)>| Chart {
            title: title.into(),
            x_label: x.into(),
            y_label: y.into(),
            series: all
                .iter()
                .map(|(r, m)| Series {
                    name: name(r),
                    points: points(m),
                })
                .collect(),
        };
    let plots = [
        svg(&[
            chart("held-out loss", "step", "eval_loss", &|m| {
                eval_curve(m, |e| e.step as f64)
            }),
            chart(
                "held-out loss vs tokens backpropagated",
                "tokens_trained",
                "eval_loss",
                &|m| eval_curve(m, |e| e.tokens_trained),
            ),
        ]),
        svg(&[
            chart("loss on kept tokens", "step", "loss_selected", &|m| {
                step_curve(m, |s| Some(s.loss_selected))
            }),
            chart("loss on all tokens", "step", "loss_all", &|m| {
                step_curve(m, |s| Some(s.loss_all))
            }),
        ]),
        svg(&[
            chart("kept fraction", "step", "selected_frac", &|m| {
                step_curve(m, |s| Some(s.selected_frac))
            }),
            chart("mean excess of kept tokens", "step", "excess_kept", &|m| {
                step_curve(m, |s| s.excess_kept)
            }),
            chart(
                "mean excess of dropped tokens",
                "step",
                "excess_dropped",
                &|m| step_curve(m, |s| s.excess_dropped),
            ),
        ]),
    ];
    shared::util::location::local_output(&a.out)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for (i, p) in plots.iter().enumerate() {
        shared::util::atomic::write_file(
            &a.out.join(format!("report-{}.svg", i + 1)),
            p.as_bytes(),
        )?;
    }
    md.push_str(
        "\n![held-out](report-1.svg)\n\n![losses](report-2.svg)\n\n![selection](report-3.svg)\n",
    );
    shared::util::atomic::write_file(&a.out.join("report.md"), md.as_bytes())?;
    shared::out!("{md}");
    shared::say!("wrote {}", a.out.join("report.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_seeds_and_computes_spread() {
        assert_eq!(group_label(Path::new("runs/slm-k0.6-seed12")), "slm-k0.6");
        assert_eq!(group_label(Path::new("runs/clm")), "clm");
        let (m, sd) = mean_std(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (sd - 1.0).abs() < 1e-12);
    }
}
