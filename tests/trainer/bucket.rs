//! Training straight from a bucket (a real S3-protocol server, moto): the
//! same steps, losses and held-out losses as from the directory the set
//! was copied from; a run directory in a bucket is refused.

use super::*;
use util::s3::S3Server;

fn train_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--eval-data",
        data,
        "--out",
        out,
        "--objective",
        "slm",
        "--model-size",
        "debug",
        "--batch-size",
        "4",
        "--max-steps",
        "6",
        "--warmup-steps",
        "1",
        "--eval-every",
        "3",
    ]
}

#[test]
fn training_from_a_bucket_equals_training_from_the_directory() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("rho1-train");
    let set = fixture("scoreset-v1");
    let url = "s3://rho1-train/sets/v1";
    s3.run_ok(bin("scorer").as_str(), &["sync", s(&set), url]);
    let dir = scratch("bucket_training");
    let (local, remote) = (dir.join("local"), dir.join("remote"));
    s3.run_ok(TRAINER, &train_args(s(&set), s(&local)));
    let out = s3.run_ok(TRAINER, &train_args(url, s(&remote)));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("1 set(s) in a bucket"), "{said}");
    let (a, b) = (steps(&local), steps(&remote));
    assert_eq!(a.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.step, x.loss_all, x.loss_selected),
            (y.step, y.loss_all, y.loss_selected)
        );
    }
    assert_eq!(eval_losses(&local), eval_losses(&remote));
    assert!(!eval_losses(&local).is_empty());

    let refused = s3.run(TRAINER, &train_args(s(&set), "s3://rho1-train/run"));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("s3://rho1-train/run"), "{err}");
}
