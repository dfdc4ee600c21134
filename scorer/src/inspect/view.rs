//! `scorer view`: a self-contained HTML page (no network, no scripts) that
//! shows documents token by token, coloured by reference loss, by excess loss
//! against a second score set of the same windows, or by kept/dropped at a
//! ratio; with a legend and per-document statistics. Token text is decoded
//! by the set's tokenizer, whitespace and LaTeX shown as written.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use shared::scores::scoreset::ScoreSet;
use shared::text::tokenizer::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorBy {
    /// Reference loss: low (green) to high (red).
    Loss,
    /// Excess loss, --against minus reference: negative (blue) to positive (red).
    Excess,
    /// Kept (green) or dropped (grey) at --ratio, lowest reference loss kept
    /// (or highest excess with --against).
    Kept,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Background colour for a value in [0, 1] on a green-yellow-red ramp.
fn ramp(x: f64) -> String {
    let x = x.clamp(0.0, 1.0);
    let (r, g) = if x < 0.5 {
        (255.0 * x * 2.0, 200.0)
    } else {
        (255.0, 200.0 * (1.0 - x) * 2.0)
    };
    format!("rgba({:.0},{:.0},60,0.45)", r, g)
}

pub struct ViewArgs<'a> {
    pub set: &'a Path,
    pub against: Option<&'a Path>,
    pub color: ColorBy,
    pub ratio: f64,
    pub docs: &'a [u64],
    pub limit: usize,
    pub out: &'a Path,
}

pub fn run(a: &ViewArgs) -> Result<()> {
    let set = ScoreSet::open(a.set)?;
    if !set.scored() {
        bail!("{}: a pack-only set has no losses to show", a.set.display());
    }
    let tok = Tokenizer::load(
        &set.dir().join(shared::model::checkpoint::TOKENIZER_FILE),
        Some(&set.manifest().job.tokenizer.eos_token),
    )?;
    if tok.fingerprint() != set.manifest().job.tokenizer.fingerprint {
        bail!(
            "{}: tokenizer.json does not match the manifest's fingerprint",
            set.dir().display()
        );
    }
    let other = a.against.map(ScoreSet::open).transpose()?;
    if let Some(o) = &other {
        set.check_same_windows(o)?;
    }
    if a.color == ColorBy::Excess && other.is_none() {
        bail!("--color excess needs --against SET (the same windows scored by another model)");
    }
    let all = set.read_all()?;
    let live = other.as_ref().map(|o| o.read_all()).transpose()?;
    if let Some(l) = &live {
        if l.tokens != all.tokens {
            bail!("the two sets do not hold the same windows");
        }
    }
    let rl = all.ref_loss.as_ref().context("no ref_loss")?;
    // value shown per row: ref loss, or excess; NaN at pos 0
    let value: Vec<f32> = match &live {
        Some(l) => rl
            .iter()
            .zip(l.ref_loss.as_ref().context("no losses in --against")?)
            .map(|(r, x)| x - r)
            .collect(),
        None => rl.clone(),
    };
    // keep mask at --ratio over the whole set (exact count, ties by row order)
    let higher_kept = live.is_some();
    let mut order: Vec<usize> = (0..value.len()).filter(|&i| !value[i].is_nan()).collect();
    order.sort_by(|&i, &j| {
        let o = value[i].total_cmp(&value[j]);
        (if higher_kept { o.reverse() } else { o }).then(i.cmp(&j))
    });
    let k = ((a.ratio * order.len() as f64).ceil() as usize).min(order.len());
    let mut keep = vec![false; value.len()];
    for &i in &order[..k] {
        keep[i] = true;
    }
    let (lo, hi) = {
        let mut v: Vec<f32> = value.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f32::total_cmp);
        (v[v.len() / 20] as f64, v[v.len() * 19 / 20] as f64) // 5th and 95th percentiles
    };
    // rows of each document, in order
    let mut by_doc: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, d) in all.doc_ids.iter().enumerate() {
        by_doc.entry(*d).or_default().push(i);
    }
    let chosen: Vec<u64> = if a.docs.is_empty() {
        by_doc.keys().copied().take(a.limit).collect()
    } else {
        a.docs.to_vec()
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>scores: {}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:70em}} .doc{{border:1px solid #ccc;padding:1em;margin:1em 0}}\
         .text{{font-family:monospace;white-space:pre-wrap;line-height:1.6}} .t{{border-radius:2px}} .legend span{{padding:0 .6em}}\
         table{{border-collapse:collapse}} td,th{{padding:.2em .6em;text-align:right}}</style></head><body>",
        esc(&set.dir().display().to_string())
    );
    let what = match a.color {
        ColorBy::Loss => "reference loss (nats)".to_string(),
        ColorBy::Excess => "excess loss (against - reference, nats)".to_string(),
        ColorBy::Kept => format!(
            "kept at k = {} ({})",
            a.ratio,
            if higher_kept {
                "highest excess"
            } else {
                "lowest reference loss"
            }
        ),
    };
    let _ = write!(html, "<h1>Token scores</h1><p>Set <code>{}</code>; colour: {}. Hover a token for its values.</p><div class=\"legend\">", esc(&set.dir().display().to_string()), esc(&what));
    match a.color {
        ColorBy::Kept => {
            let _ = write!(html, "<span style=\"background:rgba(60,200,60,0.45)\">kept</span><span style=\"background:rgba(150,150,150,0.35)\">dropped</span><span style=\"border:1px dashed #999\">not predicted (window start)</span>");
        }
        _ => {
            for s in 0..=4 {
                let x = s as f64 / 4.0;
                let _ = write!(
                    html,
                    "<span style=\"background:{}\">{:.2}</span>",
                    ramp(x),
                    lo + x * (hi - lo)
                );
            }
        }
    }
    html.push_str("</div>");
    for d in &chosen {
        let Some(rows) = by_doc.get(d) else {
            bail!("document {d} is not in {}", set.dir().display())
        };
        let vals: Vec<f64> = rows
            .iter()
            .map(|&i| value[i] as f64)
            .filter(|x| !x.is_nan())
            .collect();
        let kept = rows.iter().filter(|&&i| keep[i]).count();
        let mean = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
        let _ = write!(
            html,
            "<div class=\"doc\"><h2>document {d}</h2><table><tr><th>tokens</th><th>mean</th><th>kept at k={}</th></tr><tr><td>{}</td><td>{mean:.3}</td><td>{:.1}%</td></tr></table><div class=\"text\">",
            a.ratio,
            rows.len(),
            100.0 * kept as f64 / vals.len().max(1) as f64
        );
        for &i in rows {
            let (_, piece) = tok.piece(all.tokens[i]);
            let v = value[i];
            let style = if v.is_nan() {
                "border:1px dashed #999".to_string()
            } else {
                match a.color {
                    ColorBy::Kept if keep[i] => "background:rgba(60,200,60,0.45)".into(),
                    ColorBy::Kept => "background:rgba(150,150,150,0.35)".into(),
                    _ => format!("background:{}", ramp((v as f64 - lo) / (hi - lo).max(1e-9))),
                }
            };
            let _ = write!(
                html,
                "<span class=\"t\" style=\"{style}\" title=\"id {} value {:.3}\">{}</span>",
                all.tokens[i],
                v,
                esc(&piece)
            );
        }
        html.push_str("</div></div>");
    }
    html.push_str("</body></html>\n");
    shared::util::atomic::write_file(a.out, html.as_bytes())?;
    eprintln!("wrote {} ({} documents)", a.out.display(), chosen.len());
    Ok(())
}
