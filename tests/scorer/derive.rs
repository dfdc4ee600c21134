//! Sets made from sets: `combine` (several references) and `align` (another tokenizer).

use super::*;

/// `scorer combine` over sets of the same windows: itself is the
/// identity, each op checked row by row, a set of other windows refused
/// naming what differs, and the result opens as a score set.
#[test]
fn combine_takes_min_mean_max_of_references_row_by_row() {
    let dir = scratch("combine");
    let tok = tokenizer(&dir);
    let corpus = data("clean_heldout.jsonl.zst");
    let (a, b) = (dir.join("a"), dir.join("b"));
    run_ok(
        SCORER,
        &score_args(&fixture("llama-gqa"), &tok, &corpus, &a),
    );
    run_ok(
        SCORER,
        &score_args(&fixture("llama-mha"), &tok, &corpus, &b),
    );
    let losses = |d: &Path| ScoreSet::open(d).unwrap().read_all().unwrap();
    let (la, lb) = (losses(&a), losses(&b));
    let (ra, rb) = (la.ref_loss.clone().unwrap(), lb.ref_loss.clone().unwrap());

    let combine = |name: &str, sets: &[&Path], extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec!["combine", "--sets"];
        args.extend(sets.iter().map(|p| s(p)));
        args.extend(extra);
        args.extend(["--out", s(&out)]);
        run_ok(SCORER, &args);
        out
    };
    let same = combine("self", &[&a, &a], &["--op", "mean"]);
    let ls = losses(&same);
    assert_eq!(ls.tokens, la.tokens);
    assert_eq!(ls.doc_ids, la.doc_ids);
    let rs = ls.ref_loss.unwrap();
    assert!(rs
        .iter()
        .zip(&ra)
        .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));

    for (name, op, want) in [
        (
            "min",
            "min",
            (|x: f32, y: f32| x.min(y)) as fn(f32, f32) -> f32,
        ),
        ("max", "max", |x: f32, y: f32| x.max(y)),
        ("mean", "mean", |x: f32, y: f32| {
            ((x as f64 + y as f64) / 2.0) as f32
        }),
    ] {
        let out = combine(name, &[&a, &b], &["--op", op]);
        let got = losses(&out).ref_loss.unwrap();
        for (i, g) in got.iter().enumerate() {
            if ra[i].is_nan() {
                assert!(g.is_nan());
            } else {
                assert!((g - want(ra[i], rb[i])).abs() < 1e-6, "{op} row {i}");
            }
        }
    }
    let weighted = combine("weighted", &[&a, &b], &["--op", "mean", "--weights", "3,1"]);
    let got = losses(&weighted).ref_loss.unwrap();
    let i = 5;
    assert!((got[i] - (0.75 * ra[i] + 0.25 * rb[i])).abs() < 1e-6);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(weighted.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["derived_from"]["op"], "mean");
    assert_eq!(m["derived_from"]["sources"].as_array().unwrap().len(), 2);

    // Other windows: refused, naming the field; nothing written.
    let other = dir.join("seq32");
    let gqa = fixture("llama-gqa");
    let mut args = score_args(&gqa, &tok, &corpus, &other);
    let at = args.iter().position(|x| *x == "64").unwrap();
    args[at] = "32";
    run_ok(SCORER, &args);
    let bad = dir.join("bad");
    let res = run(
        SCORER,
        &[
            "combine",
            "--sets",
            s(&a),
            s(&other),
            "--op",
            "min",
            "--out",
            s(&bad),
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success() && err.contains("seq_len: 64 vs 32"),
        "{err}"
    );
    assert!(!bad.exists());
}

/// Per document: (sum of the finite ref_loss values, whether any of its
/// tokens sits at position 0 of a window).
fn doc_sums(set: &Path) -> std::collections::HashMap<u64, (f64, bool)> {
    let w = ScoreSet::open(set).unwrap().read_all().unwrap();
    let r = w.ref_loss.unwrap();
    let mut m = std::collections::HashMap::new();
    for (i, (d, x)) in w.doc_ids.iter().zip(&r).enumerate() {
        let e = m.entry(*d).or_insert((0f64, false));
        if i % w.seq_len == 0 {
            e.1 = true;
        } else {
            e.0 += *x as f64;
        }
    }
    m
}

/// `scorer align`: onto its own tokenizer it gives the set back exactly;
/// onto another it keeps each document's total reference loss and follows
/// the contract (the target's own windows, NaN only at position 0); a
/// corpus other than the scored one is refused, naming the file.
#[test]
fn align_moves_reference_losses_onto_another_tokenizer() {
    let dir = scratch("align");
    let tok = tokenizer(&dir);
    // Short documents, so that many lie inside one window: one per
    // non-empty line of the SmolLM2 fixture's text.
    let lines = std::fs::read_to_string(fixture("smollm2/text.txt")).unwrap();
    let corpus = dir.join("lines.jsonl");
    let jsonl: String = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::json!({ "text": l }).to_string() + "\n")
        .collect();
    std::fs::write(&corpus, jsonl).unwrap();
    let src = dir.join("src");
    run_ok(
        SCORER,
        &score_args(&fixture("llama-gqa"), &tok, &corpus, &src),
    );
    let align = |scores: &Path, tokenizer: &Path, corpus: &Path, out: &Path| {
        run(
            SCORER,
            &[
                "align",
                "--scores",
                s(scores),
                "--tokenizer",
                s(tokenizer),
                "--corpus",
                s(corpus),
                "--out",
                s(out),
            ],
        )
    };

    let same = dir.join("same");
    assert!(align(&src, &tok, &corpus, &same).status.success());
    let (a, b) = (
        ScoreSet::open(&src).unwrap().read_all().unwrap(),
        ScoreSet::open(&same).unwrap().read_all().unwrap(),
    );
    assert_eq!(
        (&a.tokens, &a.doc_ids, &a.seq_ids),
        (&b.tokens, &b.doc_ids, &b.seq_ids)
    );
    let (ra, rb) = (a.ref_loss.unwrap(), b.ref_loss.unwrap());
    assert!(
        ra.iter().zip(&rb).all(|(x, y)| x.to_bits() == y.to_bits()),
        "not the identity"
    );

    // Another tokenizer: 300 ids, trained on other text.
    let tok2 = dir.join("tok300.json");
    run_ok(
        SCORER,
        &[
            "tokenizer",
            "--corpus",
            s(&data("noisy_web.jsonl.zst")),
            "--vocab-size",
            "300",
            "--out",
            s(&tok2),
        ],
    );
    let other = dir.join("other");
    let res = align(&src, &tok2, &corpus, &other);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let packed = dir.join("packed");
    run_ok(
        SCORER,
        &[
            "pack",
            "--tokenizer",
            s(&tok2),
            "--corpus",
            s(&corpus),
            "--out",
            s(&packed),
            "--seq-len",
            "64",
            "--shard-tokens",
            "4096",
            "--row-group-tokens",
            "1024",
        ],
    );
    let (o, p) = (
        ScoreSet::open(&other).unwrap().read_all().unwrap(),
        ScoreSet::open(&packed).unwrap().read_all().unwrap(),
    );
    assert!(
        o.tokens.len() > ra.len(),
        "300 ids make more tokens than 1024"
    );
    assert_eq!(
        o.tokens[..],
        p.tokens[..o.tokens.len()],
        "the target's own windows"
    );
    assert_eq!(o.doc_ids[..], p.doc_ids[..o.doc_ids.len()]);
    for (i, x) in o.ref_loss.as_ref().unwrap().iter().enumerate() {
        assert_eq!(x.is_nan(), i % 64 == 0, "token {i}: {x}");
    }
    // Per document: the totals agree wherever neither set lost a value at a
    // window's first position, and the document is whole in both.
    let (sa, so) = (doc_sums(&src), doc_sums(&other));
    let last = |m: &std::collections::HashMap<u64, (f64, bool)>| *m.keys().max().unwrap();
    let (mut compared, mut zero) = (0, 0);
    for (d, (x, cut_a)) in &sa {
        let Some((y, cut_o)) = so.get(d) else {
            continue;
        };
        if *cut_a || *cut_o || *d == last(&sa) || *d == last(&so) || *d == 0 {
            continue;
        }
        assert!((x - y).abs() < 1e-3, "document {d}: {x} vs {y}");
        compared += 1;
    }
    for x in o.ref_loss.unwrap().iter() {
        zero += (*x == 0.0) as usize;
    }
    eprintln!(
        "align: {compared} documents compared, {zero} target tokens without a reference token"
    );
    assert!(compared >= 3, "only {compared} documents compared");
    // --split bytes: the same totals, and every target token has a share.
    let bytes = dir.join("bytes");
    let res = run(
        SCORER,
        &[
            "align",
            "--scores",
            s(&src),
            "--tokenizer",
            s(&tok2),
            "--corpus",
            s(&corpus),
            "--split",
            "bytes",
            "--out",
            s(&bytes),
        ],
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let sb = doc_sums(&bytes);
    for (d, (x, _)) in &so {
        if sa.get(d).is_some_and(|(_, cut)| !cut)
            && !so[d].1
            && *d != last(&sa)
            && *d != last(&so)
            && *d != 0
        {
            assert!((x - sb[d].0).abs() < 1e-3, "bytes, document {d}");
        }
    }
    let rb = ScoreSet::open(&bytes)
        .unwrap()
        .read_all()
        .unwrap()
        .ref_loss
        .unwrap();
    // zeros only where the share came from a reference token without a loss
    // (position 0 of a reference window), at most two target tokens each
    let zeros = rb.iter().filter(|&&x| x == 0.0).count();
    assert!(
        zeros <= 2 * ra.len() / 64,
        "{zeros} target tokens without a share"
    );
    assert!(zero > 0, "some target tokens end no reference token");
    assert!(zeros < zero, "bytes {zeros} vs end {zero} tokens at 0");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(other.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["derived_from"]["op"], "align");
    assert_eq!(m["tokenizer"]["vocab_size"], 300);
    assert_eq!(m["derived_from"]["source"]["tokenizer"]["vocab_size"], 1024);

    // The aligned set combines with one scored directly on the target's
    // windows, over the windows both hold.
    let direct = dir.join("direct");
    run_ok(
        SCORER,
        &score_args(&fixture("llama-mha"), &tok2, &corpus, &direct),
    );
    let both = dir.join("both");
    run_ok(
        SCORER,
        &[
            "combine",
            "--sets",
            s(&direct),
            s(&other),
            "--op",
            "min",
            "--out",
            s(&both),
        ],
    );
    let (dw, bw) = (
        ScoreSet::open(&direct).unwrap().read_all().unwrap(),
        ScoreSet::open(&both).unwrap().read_all().unwrap(),
    );
    let n = dw.tokens.len().min(o.tokens.len());
    assert_eq!(bw.tokens.len(), n, "the windows both hold");
    let (rd, ro, rbo) = (
        dw.ref_loss.unwrap(),
        ScoreSet::open(&other)
            .unwrap()
            .read_all()
            .unwrap()
            .ref_loss
            .unwrap(),
        bw.ref_loss.unwrap(),
    );
    for i in (1..n).filter(|i| i % 64 != 0) {
        assert_eq!(rbo[i], rd[i].min(ro[i]), "token {i}");
    }

    // A real 49k-id tokenizer (SmolLM2's GGUF) as the reference's.
    if let Some(gguf) = smollm2_gguf() {
        let text = &corpus;
        let smol = dir.join("smol");
        run_ok(
            SCORER,
            &[
                "score",
                "--model",
                s(&gguf),
                "--corpus",
                s(text),
                "--out",
                s(&smol),
                "--seq-len",
                "64",
            ],
        );
        let onto = dir.join("smol-onto-1024");
        let res = align(&smol, &tok, text, &onto);
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let (x, y) = (doc_sums(&smol), doc_sums(&onto));
        let mut compared = 0;
        for (d, (a, cut_a)) in &x {
            let Some((b, cut_b)) = y.get(d) else { continue };
            if *cut_a || *cut_b || *d == last(&x) || *d == last(&y) || *d == 0 {
                continue;
            }
            assert!((a - b).abs() < 1e-3, "SmolLM2 document {d}: {a} vs {b}");
            compared += 1;
        }
        assert!(compared >= 3, "only {compared} SmolLM2 documents compared");
    }

    // Not the scored corpus: refused, nothing written.
    let bad = dir.join("bad");
    let res = align(&src, &tok2, &data("noisy_web.jsonl.zst"), &bad);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success()
            && err.contains("noisy_web.jsonl.zst")
            && err.contains("not the corpus"),
        "{err}"
    );
    assert!(!bad.exists());
}
