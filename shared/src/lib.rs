//! The common core of the RHO-1 Selective Language Modeling pipeline.
//!
//! Data path: corpus files -> [`corpus`] -> [`tokenizer`] -> [`pack`] ->
//! score shards ([`shards`], [`manifest`], [`tables`]) written by `scorer`,
//! read by `trainer` through [`scoreset`]. The model ([`model`], [`config`],
//! [`checkpoint`]) and the per-token loss ([`loss`]) are shared by both, so a
//! reference loss and a live loss are computed by the same code.

pub mod atomic;
pub mod checkpoint;
pub mod config;
pub mod corpus;
pub mod device;
pub mod error;
pub mod fault;
pub mod fused;
pub mod guard;
pub mod hash;
pub mod loss;
pub mod manifest;
pub mod model;
pub mod pack;
pub mod progress;
pub mod rng;
pub mod scoreset;
pub mod shards;
pub mod tables;
pub mod tokenizer;

pub use error::{Error, Result};
