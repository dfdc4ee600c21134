//! The one tokio runtime the object-store client runs on. Our readers and
//! writers are plain threads (the prefetcher's, rayon's); each request is a
//! `block_on` from that thread, so the number of requests in flight is the
//! number of threads asking, and nothing else in the project is async.

use std::future::Future;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-io")
            .enable_all()
            .build()
            .expect("starting the object-store runtime")
    })
}

/// Runs `f` to completion on the store's runtime, from a thread that is not
/// one of the runtime's own.
pub fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}
