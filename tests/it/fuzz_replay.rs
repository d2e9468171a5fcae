//! The fuzz corpora replayed on stable, plus a short deterministic mutation
//! run per target: every corpus file once, then mutations of files drawn
//! from the corpus. The targets' bodies are the very ones `cargo fuzz` runs
//! (fuzz/targets.rs); long runs are in docs/reliability.md.

#[path = "../../fuzz/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::path::Path;

/// Mutated inputs per target (`FUZZ_MUTATIONS` overrides).
fn mutations() -> usize {
    std::env::var("FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{target}: empty corpus");
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// xorshift64*: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte-level edits in the spirit of libFuzzer's: flip, insert, delete,
/// duplicate a span, splice in bytes that matter to the parsers.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    const INTERESTING: &[&[u8]] = &[
        b"\"",
        b"'",
        b":",
        b"- ",
        b"\n",
        b"\n  ",
        b"[",
        b"]",
        b"{",
        b"}",
        b",",
        b"\\",
        b"\xff",
        b"\xe2\x80\x8b",
        b"1e400",
        b"-0",
        b"&a ",
        b"*a",
        b"!!",
        b"---\n",
        b"null",
        b"#",
        b"\t",
        b"(",
        b")",
        b" not in ",
        b" and ",
        b"deny",
        b"\"deny\": []\n",
    ];
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, token.iter().copied());
            }
            2 => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(32)).min(out.len());
                let span = out[at..end].to_vec();
                out.splice(at..at, span);
            }
            _ => out.insert(at, rng.next() as u8),
        }
    }
    out
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    let inputs = corpus(target);
    for input in &inputs {
        run(input);
    }
    for _ in 0..mutations() {
        let input = &inputs[rng.below(inputs.len())];
        run(&mutate(input, &mut rng));
    }
}

#[test]
fn policy_corpus() {
    replay("policy", targets::policy);
}

#[test]
fn when_corpus() {
    replay("when", targets::when);
}

#[test]
fn event_corpus() {
    let table = capfence::policy!("policies/fintech_policy.yaml");
    replay("event", |data| targets::event(data, &table));
}

#[test]
fn suite_corpus() {
    replay("suite", targets::suite);
}

#[test]
fn audit_corpus() {
    replay("audit", targets::audit);
}
