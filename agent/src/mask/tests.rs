use super::*;
use proptest::prelude::*;

#[test]
fn every_secret_is_replaced_and_nothing_else() {
    let m = Masker::new(["hunter22", "pass-hunter22-word", "ab", "line-one\nline-two"]);
    assert_eq!(
        m.mask("TF_HTTP_PASSWORD=pass-hunter22-word x=hunter22".into()),
        "TF_HTTP_PASSWORD=(sensitive) x=(sensitive)"
    );
    assert_eq!(m.mask("ab stays: too short".into()), "ab stays: too short");
    assert_eq!(m.mask("a line-two b".into()), "a (sensitive) b");
    assert_eq!(m.mask("nothing here".into()), "nothing here");
    assert_eq!(
        m.mask("hunter22hunter22".into()),
        "(sensitive)(sensitive)",
        "repeated"
    );
}

#[test]
fn encoded_forms_are_masked() {
    let secret = "p@ss word/with&more";
    let m = Masker::new([secret]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}"));
    let masked = m.mask(format!("Authorization: Basic {b64}"));
    assert!(!masked.contains(&b64[8..20]), "{masked}");
    assert!(masked.contains(MASK), "{masked}");
    for s in [
        "p%40ss%20word%2Fwith%26more",
        "p%40ss+word%2Fwith%26more",
        "p@ss word/with\\u0026more",
    ] {
        assert_eq!(m.mask(format!("x={s};")), "x=(sensitive);", "{s}");
    }
}

#[test]
fn a_secret_split_across_lines_is_masked_in_both_and_the_first_waits() {
    let m = Masker::new(["s3cr3t-t0ken-value"]);
    let mut lines = vec!["token: s3cr3t-".to_string()];
    assert_eq!(
        m.mask_stream(&mut lines, false),
        1,
        "held: its end begins the secret"
    );
    let mut lines = vec!["token: s3cr3t-".to_string(), "t0ken-value done".to_string()];
    assert_eq!(m.mask_stream(&mut lines, false), 0);
    assert_eq!(lines, ["token: (sensitive)", "(sensitive) done"]);
    let mut lines = vec!["token: s3cr3t-".to_string()];
    assert_eq!(m.mask_stream(&mut lines, true), 0, "nothing follows");
    let mut plain = vec!["no secret here".to_string(), "nor here".to_string()];
    assert_eq!(m.mask_stream(&mut plain, false), 0);
    assert_eq!(plain, ["no secret here", "nor here"]);
}

#[test]
fn the_registry_masks_running_tasks_only() {
    let r = Registry::default();
    r.add("t1", &Masker::new(["agent-log-secret"]));
    assert_eq!(r.mask("x agent-log-secret".into()), "x (sensitive)");
    r.remove("t1");
    assert_eq!(r.mask("x agent-log-secret".into()), "x agent-log-secret");
}

/// Whether any base64 run in `text`, decoded at any alignment, contains `secret`.
fn decodes_to(text: &str, secret: &[u8]) -> bool {
    let runs = text.split(|c: char| !(c.is_ascii_alphanumeric() || "+/-_".contains(c)));
    for run in runs.filter(|r| r.len() >= 4) {
        for skip in 0..4.min(run.len()) {
            let r = &run[skip..];
            let r = &r[..r.len() / 4 * 4];
            for e in [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::URL_SAFE,
            ] {
                if let Ok(d) = e.decode(r) {
                    if d.windows(secret.len()).any(|w| w == secret) {
                        return true;
                    }
                }
            }
        }
    }
    false
}

/// Feeds `lines` through `mask_stream` as the reporter does: in chunks, held lines carried
/// in front of the next chunk, the rest flushed at the end.
fn stream(m: &Masker, lines: Vec<String>, chunk: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut carry: Vec<String> = Vec::new();
    let mut it = lines.into_iter().peekable();
    while it.peek().is_some() {
        carry.extend(it.by_ref().take(chunk));
        let held = m.mask_stream(&mut carry, false);
        let keep = carry.split_off(carry.len() - held);
        out.append(&mut carry);
        carry = keep;
    }
    m.mask_stream(&mut carry, true);
    out.append(&mut carry);
    out
}

fn secret() -> impl Strategy<Value = String> {
    "[a-h0-9+/=&]{8,24}"
}

/// How a secret is written into the log.
fn encode(s: &str, how: u8, pad: &[u8]) -> String {
    let e = base64::engine::general_purpose::STANDARD;
    match how % 4 {
        0 => s.to_string(),
        1 => {
            let mut b = pad.to_vec();
            b.extend_from_slice(s.as_bytes());
            b.extend_from_slice(pad);
            e.encode(b)
        }
        2 => percent(s, false, true),
        _ => serde_json::to_string(s).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_secret_survives_any_split_encoding_or_overlap(
        secrets in proptest::collection::vec(secret(), 1..4),
        filler in "[ .,;:!?()]{0,40}",
        how in proptest::collection::vec(any::<u8>(), 4),
        pad in proptest::collection::vec(any::<u8>(), 0..3),
        cuts in proptest::collection::vec(0usize..400, 0..8),
        chunk in 1usize..4,
        overlap in any::<bool>(),
    ) {
        let mut text = filler.clone();
        for (i, s) in secrets.iter().enumerate() {
            text.push_str(&encode(s, how[i % how.len()], &pad));
            text.push_str(&filler);
        }
        if overlap && secrets.len() > 1 {
            // Two secrets sharing characters: the end of one is the start of the other.
            let (a, b) = (&secrets[0], &secrets[1]);
            text.push_str(&format!("{a}{}", &b[b.len().min(3)..]));
        }
        let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % (text.len() + 1)).collect();
        bounds.sort();
        bounds.dedup();
        let (mut lines, mut at) = (Vec::new(), 0);
        for b in bounds.into_iter().chain([text.len()]) {
            lines.push(text[at..b].to_string());
            at = b;
        }
        let m = Masker::new(&secrets);
        let out = stream(&m, lines, chunk).concat();
        for s in &secrets {
            prop_assert!(!out.contains(s.as_str()), "{s} in {out}");
            prop_assert!(!out.contains(&percent(s, false, true)), "{s} in {out}");
            prop_assert!(!decodes_to(&out, s.as_bytes()), "{s} decodable from {out}");
        }
    }

    #[test]
    fn text_without_secrets_is_untouched(
        text in "[ .,;:!?()a-z]{0,200}",
        cuts in proptest::collection::vec(0usize..200, 0..6),
        chunk in 1usize..4,
    ) {
        let m = Masker::new(["0123456789ABCDEF", "ZZZZ-9999-YYYY"]);
        let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % (text.len() + 1)).collect();
        bounds.sort();
        bounds.dedup();
        let (mut lines, mut at) = (Vec::new(), 0);
        for b in bounds.into_iter().chain([text.len()]) {
            lines.push(text[at..b].to_string());
            at = b;
        }
        let out = stream(&m, lines.clone(), chunk);
        prop_assert_eq!(out, lines);
    }
}
