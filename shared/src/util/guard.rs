//! Panics inside third-party decoders and parsers, turned into errors.
//!
//! The parquet crate (60.1) has decoders that index out of bounds on
//! malformed pages instead of returning an error (found by `fuzz/`
//! shard_reader: a BYTE_STREAM_SPLIT page). A corrupt file must be a clear
//! error naming it, so the calls that decode untrusted pages run under
//! [`catch_decoder_panic`]. [`install_panic_hook`] keeps such caught panics
//! quiet; every other panic still reaches the previous hook.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Wraps the current panic hook so that panics inside [`catch_decoder_panic`]
/// print nothing (they become errors). Call once, early in `main`.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(|g| g.get()) {
                previous(info)
            }
        }));
    });
}

/// Runs `f`, which decodes untrusted Parquet pages; a panic inside it comes
/// back as `Err(message)`.
pub fn catch_decoder_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    catch_panic("the Parquet decoder", f)
}

/// Runs `f`, a third-party parser (`what`) given untrusted bytes; a panic
/// inside it comes back as `Err("what failed on malformed data (...)")`.
/// The tokenizers crate (0.22) panics on some malformed tokenizer.json files
/// (an `expect` in its decoder deserializer; found by `fuzz/` tokenizer).
pub fn catch_panic<T>(what: &str, f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("{what} failed on malformed data ({msg})")
    })
}
