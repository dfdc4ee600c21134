//! libFuzzer over `targets::config` (see ../targets.rs); a panic is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| {
    // Panics the readers catch and turn into errors stay quiet; any other
    // panic still reaches libFuzzer's hook and is a finding.
    shared::util::guard::install_panic_hook();
    targets::config(data);
});
