//! `capfence-compile` as a user runs it.

use std::process::Output;

use super::compile_with as run;

fn lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn eval_prints_one_decision_per_line_and_survives_bad_lines() {
    let input = concat!(
        r#"{"actor":"a","resource":"payments","action":"transfer","environment":"production","risk":"low","payload":{"amount":500.0000000000000001}}"#,
        "\nnot json\n\n",
        r#"{"capability":"payments.delete"}"#,
        "\n",
    );
    let out = run(&["eval", "policies/fintech_policy.yaml"], input);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with(
            r#"{"decision":"require_approval","rule":"require_approval[0]","reason":"#
        ),
        "{first}"
    );
    let got = lines(&out);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1]["decision"], "deny");
    assert!(got[1]["rule"].is_null());
    assert!(
        got[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid event JSON")
    );
    assert_eq!(
        got[2]["reason"],
        "no rule matches this event (default deny)"
    );
}

#[test]
fn test_command_passes_the_shipped_suite_and_fails_a_wrong_one() {
    let out = run(
        &[
            "test",
            "policies/fintech_policy.yaml",
            "policies/fintech_policy.tests.yaml",
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));

    let dir = std::env::temp_dir().join(format!("capfence-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let suite = dir.join("wrong.tests.yaml");
    std::fs::write(&suite, "cases:\n  - name: reads are denied?\n    event: { capability: payments.read }\n    expect: deny\n").unwrap();
    let suite = suite.to_string_lossy().into_owned();
    let out = run(&["test", "policies/fintech_policy.yaml", &suite], "");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL ")
            && stdout.contains("reads are denied?")
            && stdout.ends_with("FAILED: 0 passed, 1 failed\n"),
        "{stdout}"
    );

    let out = run(
        &[
            "test",
            "policies/fintech_policy.yaml",
            &suite,
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 1);
    assert_eq!(report["cases"][0]["expected"]["decision"], "deny");
    assert_eq!(report["cases"][0]["actual"]["decision"], "allow");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_and_load_errors_exit_2_with_a_location() {
    let out = run(&["eval", "no/such/policy.yaml"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &["eval", "compiler/tests/fixtures/load/unknown_key.yaml"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: compiler/tests/fixtures/load/unknown_key.yaml:3:5: unknown key `enviroment` in rule allow[0]; did you mean `environment`?\n"
    );
}

#[test]
fn eval_decides_every_line_even_broken_bytes() {
    let event =
        r#"{"actor":"a","capability":"payments.read","environment":"production","risk":"low"}"#;
    let mut input = Vec::new();
    input.extend(event.as_bytes());
    input.extend(b"\n\xc3\x28\n");
    input.extend(vec![b'['; capfence_compiler::lines::MAX_LINE_BYTES + 10]);
    input.push(b'\n');
    input.extend(event.as_bytes());
    let out = super::compile_with_bytes(&["eval", "policies/fintech_policy.yaml"], &input);
    assert_eq!(out.status.code(), Some(0));
    let got = lines(&out);
    assert_eq!(got.len(), 4);
    assert_eq!(got[0]["decision"], "allow");
    assert!(
        got[1]["reason"]
            .as_str()
            .unwrap()
            .contains("line 2 is not UTF-8")
    );
    assert!(
        got[2]["reason"]
            .as_str()
            .unwrap()
            .contains("line 3 is longer")
    );
    assert_eq!(got[3]["decision"], "allow");
}

#[test]
fn lint_refuses_a_policy_whose_deny_tier_is_erased_by_a_quoted_duplicate() {
    let dir = std::env::temp_dir().join(format!("capfence-dup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        "deny:\n  - capability: payments.transfer\n    amount_gt: 10000\nallow:\n  - capability: payments.transfer\n\"deny\": []\n",
    )
    .unwrap();
    let path = path.to_string_lossy().into_owned();
    let out = run(&["lint", &path], "");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("duplicate key `deny` (first at line 1)"),
        "{text}"
    );
    let out = run(
        &["eval", &path],
        r#"{"capability":"payments.transfer","payload":{"amount":50000}}"#,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a policy that does not load decides nothing"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_suite_case_whose_event_does_not_read_is_a_suite_error() {
    let dir = std::env::temp_dir().join(format!("capfence-typo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let suite = dir.join("typo.tests.yaml");
    // `enviroment` makes the event unreadable; it used to "pass" as a deny.
    std::fs::write(
        &suite,
        "cases:\n  - name: staging transfer is denied\n    event: { capability: payments.transfer, enviroment: staging, payload: { amount: 100 } }\n    expect: deny\n",
    )
    .unwrap();
    let suite = suite.to_string_lossy().into_owned();
    let out = run(&["test", "policies/fintech_policy.yaml", &suite], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":3:12: the event of case `staging transfer is denied` does not read"),
        "{err}"
    );
    assert!(err.contains("malformed: true"), "{err}");

    // Said explicitly, the case passes only if the event is malformed.
    let marked = dir.join("marked.tests.yaml");
    std::fs::write(
        &marked,
        "cases:\n  - name: unreadable\n    event: { capability: payments.transfer, enviroment: staging }\n    malformed: true\n    expect: deny\n  - name: well formed but marked\n    event: { capability: payments.delete }\n    malformed: true\n    expect: deny\n",
    )
    .unwrap();
    let marked = marked.to_string_lossy().into_owned();
    let out = run(
        &[
            "test",
            "policies/fintech_policy.yaml",
            &marked,
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the second case is default deny, not malformed"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], 1, "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell], "");
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for sub in ["lint", "diff", "explain", "build", "test", "eval"] {
            assert!(text.contains(sub), "{shell} completions lack `{sub}`");
        }
    }
    assert_eq!(run(&["completions", "tcsh"], "").status.code(), Some(2));
}

#[test]
fn eval_history_is_read_strictly_and_window_names_cannot_be_smuggled() {
    let dir = std::env::temp_dir().join(format!("capfence-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let untimed = dir.join("untimed.jsonl");
    std::fs::write(
        &untimed,
        "\n{\"actor\":\"a\",\"capability\":\"payments.transfer\",\"payload\":{\"amount\":1,\"destination\":\"d\"}}\n",
    )
    .unwrap();
    let policy = "policies/treasury_velocity.yaml";
    let out = run(
        &["eval", policy, "--history", untimed.to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("untimed.jsonl:2: the call has no `time`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let badtime = dir.join("badtime.jsonl");
    std::fs::write(
        &badtime,
        "{\"time\":\"yesterday\",\"capability\":\"payments.transfer\"}\n",
    )
    .unwrap();
    let out = run(
        &["eval", policy, "--history", badtime.to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("badtime.jsonl:1: `time` is not an RFC 3339")
    );
    // Three calls of 499 to one destination: the third is held, whatever
    // total it claims under the window's reserved name.
    let line = |extra: &str| {
        format!(
            "{{\"time\":\"2026-11-27T09:00:00Z\",\"actor\":\"a\",\"capability\":\"payments.transfer\",\"payload\":{{\"amount\":\"499\",\"destination\":\"d\"{extra}}}}}\n"
        )
    };
    let smuggled = ",\"@sum(amount)/86400s/actor,destination/payments.transfer\":0";
    let input = format!("{}{}{}", line(""), line(""), line(smuggled));
    let out = run(&["eval", policy], &input);
    let text = String::from_utf8_lossy(&out.stdout);
    let decisions: Vec<&str> = text
        .lines()
        .map(|l| {
            if l.contains("\"allow\"") {
                "allow"
            } else {
                "held"
            }
        })
        .collect();
    assert_eq!(decisions, ["allow", "allow", "held"], "{text}");
    // `eval` reads a `time` on any line; the runtime's event JSON refuses one.
    assert!(capfence_compiler::Event::from_json("{\"time\":\"2026-11-27T09:00:00Z\"}").is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Both binaries print human output only through the escaping macros:
/// every module under `src/bin` that prints imports them (a module that
/// forgot would print agent text raw with std's).
#[test]
fn every_printing_module_of_the_binaries_escapes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [root.join("src/bin"), root.join("../runtime/src/bin")] {
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
    }
    assert!(files.len() >= 6, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let prints = ["println!", "eprintln!", "print!"]
            .iter()
            .any(|m| text.contains(m));
        if prints {
            assert!(
                text.contains("println_escaped as println")
                    && text.contains("eprintln_escaped as eprintln")
                    && text.contains("print_escaped as print"),
                "{} prints without importing the escaping macros",
                file.display()
            );
        }
    }
}

/// `eval` decides `new:` from the calls it has allowed so far: the first
/// payment to an account is held, a history that paid it makes it known,
/// and a value smuggled under the aggregate's reserved name decides nothing.
#[test]
fn eval_knows_the_accounts_its_history_paid() {
    let dir = std::env::temp_dir().join(format!("capfence-new-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = "policies/new_payee.yaml";
    let line = |destination: &str, extra: &str| {
        format!(
            "{{\"time\":\"2026-11-27T09:00:00Z\",\"actor\":\"a\",\"capability\":\"payments.transfer\",\"payload\":{{\"amount\":\"100\",\"destination\":\"{destination}\"{extra}}}}}\n"
        )
    };
    let smuggled = ",\"@known(destination)/cooling 0s/all/actor/payments.transfer\":5";
    let input = format!("{}{}", line("acct-1", ""), line("acct-2", smuggled));
    let out = run(&["eval", policy], &input);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("\"require_approval\"").count(), 2, "{text}");
    assert!(text.contains("destination new per actor"), "{text}");
    let history = dir.join("paid.jsonl");
    std::fs::write(&history, line("acct-1", "")).unwrap();
    let out = run(
        &["eval", policy, "--history", history.to_str().unwrap()],
        &line("acct-1", ""),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"allow\""), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
