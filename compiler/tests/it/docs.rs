//! The examples in docs/ are run: policy blocks must load, error blocks must fail
//! with the quoted message, suite blocks must pass, console blocks must print
//! exactly what the page shows.

use std::path::Path;
use std::process::Command;

use capfence_compiler::Policy;
use capfence_compiler::suite::Suite;

use super::{fintech, root};

/// Fenced blocks of a Markdown file: (info string, body, line of the fence).
fn blocks(path: &Path) -> Vec<(String, String, usize)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new(), i + 1)),
            (Some(_), Some("")) => out.extend(open.take()),
            (Some((_, body, _)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

#[test]
fn policy_language_examples_load_or_fail_as_documented() {
    let (mut ok, mut failing) = (0, 0);
    let pages = ["docs/policy-language.md", "docs/approvals.md"];
    let all = pages.iter().flat_map(|page| {
        blocks(&root().join(page))
            .into_iter()
            .map(move |(info, body, line)| (info, body, format!("{page}:{line}")))
    });
    for (info, body, name) in all {
        match info.as_str() {
            "yaml policy" => {
                Policy::parse(&body, &name).unwrap_or_else(|e| panic!("{e}"));
                ok += 1;
            }
            "yaml policy-error" => {
                let expected = body
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# error: "))
                    .unwrap();
                let err = Policy::parse(&body, &name).expect_err(&name).to_string();
                assert!(
                    err.contains(expected),
                    "{name}: `{err}` does not contain `{expected}`"
                );
                failing += 1;
            }
            _ => {}
        }
    }
    assert!(
        ok >= 6 && failing >= 6,
        "{ok} policies, {failing} error examples"
    );
}

fn run_console_blocks(doc: &str) -> usize {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_capfence-compile"))
        .parent()
        .unwrap()
        .to_owned();
    let path_var = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut count = 0;
    for (info, body, line) in blocks(&root().join(doc)) {
        if info != "console" {
            continue;
        }
        let mut commands: Vec<(String, String)> = Vec::new();
        for l in body.lines() {
            match l.strip_prefix("$ ") {
                Some(cmd) => commands.push((cmd.to_owned(), String::new())),
                None => {
                    let (_, expected) = commands.last_mut().unwrap();
                    expected.push_str(l);
                    expected.push('\n');
                }
            }
        }
        for (cmd, expected) in commands {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("{cmd} 2>&1"))
                .current_dir(root())
                .env("PATH", &path_var)
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                expected,
                "{doc}:{line}: `{cmd}`"
            );
            count += 1;
        }
    }
    count
}

#[test]
fn cli_reference_examples_print_what_the_page_shows() {
    assert!(run_console_blocks("docs/cli.md") >= 4);
}

#[test]
fn suite_examples_pass() {
    let path = root().join("docs/cli.md");
    let mut count = 0;
    for (info, body, line) in blocks(&path) {
        if info == "yaml suite" {
            let suite = Suite::parse(&body, &format!("docs/cli.md:{line}")).unwrap();
            let report = suite.run(&fintech());
            assert_eq!(report.failed(), 0, "{}", report.render_human());
            count += 1;
        }
    }
    assert!(count >= 1);
}
