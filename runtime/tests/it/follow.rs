//! `capfence audit log --json --follow` beside a writer: the follower sees
//! every record once, in order, as it commits; killed and restarted with
//! `--since` the last seq it delivered, it neither skips nor repeats one.
//! Run on SQLite here and on PostgreSQL by `postgres.rs`.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use capfence::ActionRuntime;

use super::{TempDir, runtime, transfer};

/// A running `audit log --json --follow`, its complete lines on a channel.
struct Follower {
    child: Child,
    lines: Receiver<String>,
}

impl Follower {
    fn start(place: &[&str], since: Option<u64>) -> Follower {
        let mut command = Command::new(env!("CARGO_BIN_EXE_capfence"));
        command
            .args(place)
            .args(["audit", "log", "--json", "--follow"]);
        if let Some(seq) = since {
            command.args(["--since", &seq.to_string()]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            // Only whole lines: a follower killed mid-line delivered nothing
            // of that record.
            while stdout.read_line(&mut line).is_ok_and(|n| n > 0) && line.ends_with('\n') {
                if send.send(std::mem::take(&mut line)).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    /// Lines until `done` holds for the last one's seq (or a minute passes).
    fn until(&self, done: impl Fn(u64) -> bool) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let seq = record["seq"].as_u64().unwrap();
                    out.push(record);
                    if done(seq) {
                        return out;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("the follower stalled after {out:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the follower exited"),
            }
        }
    }

    /// Kills it; the whole lines it wrote before dying.
    fn kill(mut self) -> Vec<serde_json::Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines
            .iter()
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    }
}

/// Four threads writing 20 decisions each, from `phase`.
fn write(rt: &ActionRuntime, phase: usize) -> std::thread::JoinHandle<()> {
    let rt = rt.clone();
    std::thread::spawn(move || {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let rt = rt.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        let amount = ["120", "700", "20000"][(t + i) % 3];
                        rt.execute(&transfer(amount, &format!("vendor-{phase}-{t}-{i}")));
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    })
}

/// Writes decisions from threads while a follower reads, kills the
/// follower after 30 records and starts another `--since` the last one it
/// delivered, then writes more; the two together must have delivered
/// records 1..=head once each, in order, exactly as `audit log --json`
/// prints them afterwards.
pub fn a_follower_sees_every_record_once(place: &[&str], rt: ActionRuntime) {
    let first = Follower::start(place, None);
    let writing = write(&rt, 1);
    let mut delivered = first.until(|seq| seq >= 30);
    delivered.extend(first.kill());
    let last = delivered.last().unwrap()["seq"].as_u64().unwrap();
    let second = Follower::start(place, Some(last));
    writing.join().unwrap();
    write(&rt, 2).join().unwrap();
    let head = rt.verify().unwrap().0;
    assert_eq!(head, 1 + 160, "the activation and every decision");
    let after_restart = second.until(|seq| seq >= head);
    assert!(
        after_restart.len() >= 80,
        "the second follower saw the second phase as it was written"
    );
    delivered.extend(after_restart);
    // Nothing after the head: wait a moment for a stray line, then stop.
    std::thread::sleep(Duration::from_millis(300));
    delivered.extend(second.kill());

    let seqs: Vec<u64> = delivered
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "every record once, in order"
    );
    let all = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .args(place)
        .args(["audit", "log", "--json"])
        .output()
        .unwrap();
    let printed: Vec<serde_json::Value> = String::from_utf8(all.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(delivered, printed, "the followed records are the ledger's");
}

#[test]
fn a_sqlite_follower_sees_every_record_once_across_a_restart() {
    let dir = TempDir::new("follow");
    let rt = runtime(dir.path());
    let state = dir.path().to_str().unwrap().to_owned();
    a_follower_sees_every_record_once(&["--state", &state], rt);
}

#[test]
fn since_and_redact_shape_the_stream() {
    let dir = TempDir::new("follow-redact");
    let rt = runtime(dir.path());
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
    assert!(!rt.execute(&transfer("20000", "attacker-9")).authorized);
    let state = dir.path().to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .args(["--state", state, "audit", "log", "--json", "--since", "2"])
        .args(["--redact", "destination"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let [denied] = lines.as_slice() else {
        panic!("only the record after seq 2: {lines:?}")
    };
    assert_eq!(
        (&denied["seq"], &denied["kind"], &denied["decision"]),
        (&3.into(), &"decision".into(), &"deny".into())
    );
    // sha256("attacker-9"), as `printf %s attacker-9 | sha256sum` gives it.
    use sha2::Digest as _;
    let expected = format!("sha256:{:x}", sha2::Sha256::digest(b"attacker-9"));
    assert_eq!(denied["payload"]["destination"], expected.as_str());
    assert_eq!(denied["payload"]["amount"].to_string(), "20000", "exact");
    assert_eq!(denied["redacted"], serde_json::json!(["destination"]));
    // --redact without --json is a usage error.
    let text = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .args(["--state", state, "audit", "log", "--redact", "destination"])
        .output()
        .unwrap();
    assert_eq!(text.status.code(), Some(2));
}

/// The stream script in docs/deploy.md, run as written (its output file
/// moved to a temporary directory): killed mid-stream with a partial last
/// line, then restarted, its file holds every record once, in order.
#[test]
fn the_deploy_guide_stream_script_resumes_without_gaps_or_repeats() {
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md")).unwrap();
    let section = &guide[guide.find("## Shipping the audit stream").unwrap()..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let script = &section[start..start + section[start..].find("```").unwrap()];
    let dir = TempDir::new("follow-script");
    let state = dir.path().join("state");
    let out = dir.path().join("audit.jsonl");
    let script = script.replace("/var/log/capfence/audit.jsonl", out.to_str().unwrap());
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_capfence"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = || {
        Command::new("sh")
            .args(["-c", &script])
            .env("PATH", &path)
            .env("CAPFENCE_STORE", &state)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let lines_in = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.lines().count() >= n || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let rt = runtime(&state);
    for i in 0..5 {
        rt.execute(&transfer("120", &format!("v-{i}")));
    }
    let mut first = run();
    lines_in(6);
    let _ = first.kill();
    let _ = first.wait();
    // Killed mid-line: half a record at the end of the file.
    let mut file = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
    std::io::Write::write_all(&mut file, b"{\"actor\":\"treasury-agent\",\"appr").unwrap();
    drop(file);
    for i in 5..9 {
        rt.execute(&transfer("120", &format!("v-{i}")));
    }
    let mut second = run();
    let text = lines_in(10);
    let _ = second.kill();
    let _ = second.wait();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            let record: serde_json::Value = serde_json::from_str(l).unwrap();
            if record["kind"] == "decision" {
                assert_eq!(record["redacted"], serde_json::json!(["destination"]));
            }
            record["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
}
