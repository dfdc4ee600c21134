//! `scorer view`: a self-contained HTML page (no network, no scripts) that
//! shows documents token by token, coloured by reference loss, by excess loss
//! against a second score set of the same windows, or by kept/dropped at a
//! ratio; with a legend and per-document statistics. Token text is decoded
//! by the set's tokenizer, whitespace and LaTeX shown as written; a
//! character that the tokenizer split over several tokens (accents, curly
//! quotes, CJK, emoji in a byte-level BPE) is shown whole, in one span
//! coloured by the mean of its tokens' values, the parts in its hover text.
//! The colours are a diverging blue-white-red (ColorBrewer RdBu), which
//! reads for the common colour-vision deficiencies.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use shared::scores::scoreset::ScoreSet;
use shared::select::{kept, top_k};
use shared::text::tokenizer::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorBy {
    /// Reference loss: low (blue) through white to high (red), 5th to 95th percentile.
    Loss,
    /// Excess loss, --against minus reference: negative (blue), zero (white), positive (red).
    Excess,
    /// Kept (blue) or dropped (grey) at --ratio, lowest reference loss kept
    /// (or highest excess with --against).
    Kept,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Background colour for a value in [0, 1] on a diverging blue (0), white
/// (0.5), red (1) ramp: ColorBrewer's RdBu ends and middle.
fn ramp(x: f64) -> String {
    const BLUE: [f64; 3] = [33.0, 102.0, 172.0];
    const WHITE: [f64; 3] = [247.0, 247.0, 247.0];
    const RED: [f64; 3] = [178.0, 24.0, 43.0];
    let x = x.clamp(0.0, 1.0);
    let (a, b, t) = if x < 0.5 {
        (BLUE, WHITE, x * 2.0)
    } else {
        (WHITE, RED, (x - 0.5) * 2.0)
    };
    let c = |i: usize| a[i] + (b[i] - a[i]) * t;
    format!("rgba({:.0},{:.0},{:.0},0.6)", c(0), c(1), c(2))
}

const KEPT: &str = "background:rgba(33,102,172,0.45)";
const DROPPED: &str = "background:rgba(150,150,150,0.35)";
const PARTLY_KEPT: &str = "background:repeating-linear-gradient(45deg,rgba(33,102,172,0.45) 0 4px,rgba(150,150,150,0.35) 4px 8px)";
const NOT_PREDICTED: &str = "border:1px dashed #999";

/// Runs of consecutive tokens whose bytes form valid UTF-8 only together,
/// as (index range, text): a token that ends inside a multi-byte character
/// is grouped with the tokens that complete it. Bytes that never become
/// valid end their group and show as U+FFFD, as any decoder would.
fn utf8_groups(tokens: &[Vec<u8>]) -> Vec<(std::ops::Range<usize>, String)> {
    const MAX_GROUP: usize = 16;
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, Vec::new());
    for (i, b) in tokens.iter().enumerate() {
        acc.extend_from_slice(b);
        let text = match std::str::from_utf8(&acc) {
            Ok(t) => Some(t.to_string()),
            // incomplete only at the end: the next token may complete it
            Err(e) if e.error_len().is_none() && i + 1 - start < MAX_GROUP => None,
            Err(_) => Some(String::from_utf8_lossy(&acc).into_owned()),
        };
        if let Some(t) = text {
            out.push((start..i + 1, t));
            start = i + 1;
            acc.clear();
        }
    }
    if !acc.is_empty() {
        out.push((
            start..tokens.len(),
            String::from_utf8_lossy(&acc).into_owned(),
        ));
    }
    out
}

/// `scorer view`: a self-contained HTML page showing documents token by
/// token, coloured by score.
#[derive(clap::Args)]
pub struct ViewArgs {
    /// Scored set.
    #[arg(long)]
    pub set: PathBuf,
    /// The same windows scored by another model (for excess loss).
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// What the colour shows.
    #[arg(long, value_enum, default_value = "loss")]
    pub color: ColorBy,
    /// Ratio for kept/dropped.
    #[arg(long, default_value_t = shared::select::DEFAULT_RATIO)]
    pub ratio: f64,
    /// Document ids to show (default: the first --limit documents).
    #[arg(long, num_args = 1..)]
    pub docs: Vec<u64>,
    /// Documents shown when --docs is not given.
    #[arg(long, default_value_t = 5)]
    pub limit: usize,
    /// The HTML file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// The rows kept at `ratio` of the predicted ones (NaN values are not
/// predicted): the lowest values, or the highest when `higher_kept`; the
/// trainer's exact top-k (`shared::select`), ties broken by row order.
fn keep_mask(value: &[f32], ratio: f64, higher_kept: bool) -> Vec<bool> {
    let rows: Vec<usize> = (0..value.len()).filter(|&i| !value[i].is_nan()).collect();
    let scores: Vec<f32> = rows
        .iter()
        .map(|&i| if higher_kept { value[i] } else { -value[i] })
        .collect();
    let mut keep = vec![false; value.len()];
    for j in top_k(&scores, kept(scores.len(), ratio)) {
        keep[rows[j]] = true;
    }
    keep
}

/// What every document of the page is drawn from.
struct Page<'a> {
    /// Per row: the value shown (NaN where nothing is predicted).
    value: &'a [f32],
    keep: &'a [bool],
    tokens: &'a [u32],
    tok: &'a Tokenizer,
    color: ColorBy,
    ratio: f64,
    /// The colour ramp's ends.
    lo: f64,
    hi: f64,
}

impl Page<'_> {
    /// One document: its summary table and its text, each character coloured.
    fn document(&self, html: &mut String, d: u64, rows: &[usize]) {
        let vals: Vec<f64> = rows
            .iter()
            .map(|&i| self.value[i] as f64)
            .filter(|x| !x.is_nan())
            .collect();
        let kept = rows.iter().filter(|&&i| self.keep[i]).count();
        let mean = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
        let _ = write!(
            html,
        "<div class=\"doc\"><h2>document {d}</h2><table><tr><th>tokens</th><th>mean</th><th>kept at k={}</th></tr><tr><td>{}</td><td>{mean:.3}</td><td>{:.1}%</td></tr></table><div class=\"text\">",
        self.ratio,
        rows.len(),
        100.0 * kept as f64 / vals.len().max(1) as f64
    );
        let bytes: Vec<Vec<u8>> = rows
            .iter()
            .map(|&i| self.tok.token_bytes(self.tokens[i]))
            .collect();
        for (range, text) in utf8_groups(&bytes) {
            let group = &rows[range];
            let vals: Vec<f64> = group
                .iter()
                .map(|&i| self.value[i] as f64)
                .filter(|x| !x.is_nan())
                .collect();
            let kept = group.iter().filter(|&&i| self.keep[i]).count();
            let style = if vals.is_empty() {
                NOT_PREDICTED.to_string()
            } else {
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                match self.color {
                    ColorBy::Kept if kept == group.len() => KEPT.into(),
                    ColorBy::Kept if kept == 0 => DROPPED.into(),
                    ColorBy::Kept => PARTLY_KEPT.into(),
                    _ => format!(
                        "background:{}",
                        ramp((mean - self.lo) / (self.hi - self.lo).max(1e-9))
                    ),
                }
            };
            let title: Vec<String> = group
                .iter()
                .map(|&i| format!("id {} value {:.3}", self.tokens[i], self.value[i]))
                .collect();
            let title = if group.len() > 1 {
                format!("{} tokens: {}", group.len(), title.join("; "))
            } else {
                title.concat()
            };
            let _ = write!(
                html,
                "<span class=\"t\" style=\"{style}\" title=\"{}\">{}</span>",
                esc(&title),
                esc(&text)
            );
        }
        html.push_str("</div></div>");
    }
}

/// The set's own tokenizer.json, checked against the manifest's fingerprint.
fn set_tokenizer(set: &ScoreSet) -> Result<Tokenizer> {
    let tok = Tokenizer::load(
        &set.side_file(shared::model::checkpoint::TOKENIZER_FILE)?,
        Some(&set.manifest().job.tokenizer.eos_token),
    )?;
    if tok.fingerprint() != set.manifest().job.tokenizer.fingerprint {
        bail!(
            "{}: tokenizer.json does not match the manifest's fingerprint",
            set.dir().display()
        );
    }
    Ok(tok)
}

pub fn run(a: &ViewArgs) -> Result<()> {
    shared::util::ratio::check_ratio("--ratio", a.ratio).map_err(anyhow::Error::msg)?;
    let set = ScoreSet::open(&a.set)?;
    if !set.scored() {
        bail!("{}: a pack-only set has no losses to show", a.set.display());
    }
    let tok = set_tokenizer(&set)?;
    let other = a.against.as_deref().map(ScoreSet::open).transpose()?;
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
    let keep = keep_mask(&value, a.ratio, higher_kept);
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
        a.docs.clone()
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
    // Excess is centred on zero (white); loss spans its 5th..95th percentiles.
    let (lo, hi) = match a.color {
        ColorBy::Excess => {
            let m = lo.abs().max(hi.abs()).max(1e-9);
            (-m, m)
        }
        _ => (lo, hi),
    };
    match a.color {
        ColorBy::Kept => {
            let _ = write!(html, "<span style=\"{KEPT}\">kept</span><span style=\"{DROPPED}\">dropped</span><span style=\"{PARTLY_KEPT}\">a character split over kept and dropped tokens</span><span style=\"{NOT_PREDICTED}\">not predicted (window start)</span>");
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
    let page = Page {
        value: &value,
        keep: &keep,
        tokens: &all.tokens,
        tok: &tok,
        color: a.color,
        ratio: a.ratio,
        lo,
        hi,
    };
    for d in &chosen {
        let Some(rows) = by_doc.get(d) else {
            bail!("document {d} is not in {}", set.dir().display())
        };
        page.document(&mut html, *d, rows);
    }
    html.push_str("</body></html>\n");
    shared::util::atomic::write_file(&a.out, html.as_bytes())?;
    shared::say!("wrote {} ({} documents)", a.out.display(), chosen.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_are_grouped_whole() {
        let text = "What\u{2019}s caf\u{e9} \u{6570}\u{5b66} \u{1f642}";
        // one byte per token: the worst case of a byte-level BPE
        let tokens: Vec<Vec<u8>> = text.bytes().map(|b| vec![b]).collect();
        let groups = utf8_groups(&tokens);
        let joined: String = groups.iter().map(|g| g.1.as_str()).collect();
        assert_eq!(joined, text);
        let quote = groups.iter().find(|g| g.1 == "\u{2019}").unwrap();
        assert_eq!(quote.0.len(), 3);
        assert!(groups.iter().any(|g| g.1 == "\u{1f642}" && g.0.len() == 4));
        assert_eq!(
            groups.iter().map(|g| g.0.len()).sum::<usize>(),
            tokens.len()
        );
        // bytes that never form a character end their group
        let bad = utf8_groups(&[vec![0xe2], vec![b'a']]);
        assert_eq!(bad, vec![(0..2, "\u{fffd}a".to_string())]);
    }

    #[test]
    fn ramp_is_blue_white_red() {
        assert_eq!(ramp(0.0), "rgba(33,102,172,0.6)");
        assert_eq!(ramp(0.5), "rgba(247,247,247,0.6)");
        assert_eq!(ramp(1.0), "rgba(178,24,43,0.6)");
    }
}
