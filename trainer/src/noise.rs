//! Fitting the noise filter (`--noise-quantile Q`, defined in
//! `shared::select::noise`) to the training data: the cap is the Q-quantile
//! of every predicted token's noise score over the whole training data,
//! gathered by the start-up pass that checks the data
//! ([`crate::data::check_sets`]).

use anyhow::Result;
use shared::select::noise::{Histogram, NoiseFilter};

use crate::data::{check_sets, TrainData};

/// The filter at `quantile` of the scores the start-up pass gathered.
pub fn from_scores(scores: &Histogram, span: usize, quantile: f64) -> NoiseFilter {
    NoiseFilter {
        span,
        cap: scores.quantile(quantile),
    }
}

/// The filter for `data` by a pass of its own (for tools that do not
/// train, such as `trainer selection`).
pub fn fit(data: &TrainData, span: usize, quantile: f64) -> Result<NoiseFilter> {
    let scores = check_sets(data.sets(), usize::MAX, true, Some(span))?
        .expect("a noise span gathers scores");
    Ok(from_scores(&scores, span, quantile))
}
