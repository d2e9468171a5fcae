//! The commands: each calls the library and renders what it returns;
//! exit 0 ok, 1 a finding, 2 usage or I/O error.

#[allow(unused_imports)]
use capfence_compiler::{
    eprintln_escaped as eprintln, print_escaped as print, println_escaped as println,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use capfence_compiler::Policy;
use capfence_compiler::eval::Decision;
use capfence_compiler::lines::{Line, Lines};
use capfence_compiler::suite::Suite;
use capfence_compiler::window::History;

use super::args::{Format, LintFormat};

pub fn load(path: &PathBuf) -> Result<Policy, ExitCode> {
    Policy::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Reads `--history`: earlier authorized calls.
pub fn history(path: Option<&std::path::Path>) -> Result<History, ExitCode> {
    let Some(path) = path else {
        return Ok(History::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        ExitCode::from(2)
    })?;
    History::parse(&text, &path.display().to_string()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

pub fn eval(path: &PathBuf, history_file: Option<&std::path::Path>) -> ExitCode {
    let policy = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut history = match history(history_file) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let windows = policy.windows();
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for line in Lines::new(stdin) {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("error: cannot read stdin: {e}");
                return ExitCode::from(2);
            }
        };
        let deny = Decision::unreadable;
        let decision = match line {
            Line::Text(text) => history.decide_line(&policy, &windows, &text),
            Line::Unreadable(why) => deny(why),
        };
        if writeln!(stdout, "{}", decision.to_json())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

pub fn test(policy: &PathBuf, tests: &PathBuf, format: Format, coverage: bool) -> ExitCode {
    let policy = match load(policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let suite = match Suite::load(tests) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = suite.run(&policy);
    let listed = coverage.then(|| suite.coverage(&policy, &report));
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.join(", ")
        }
    };
    match format {
        Format::Human => {
            print!("{}", report.render_human());
            if let Some((by_example, by_property)) = &listed {
                println!(
                    "coverage: rules no example case decided: {}",
                    list(by_example)
                );
                println!("coverage: rules no property touches: {}", list(by_property));
            }
        }
        Format::Json => {
            let mut json = report.to_json();
            if let (Some((by_example, by_property)), Some(obj)) = (&listed, json.as_object_mut()) {
                obj.insert(
                    "coverage".to_owned(),
                    serde_json::json!({"undecided_by_examples": by_example, "untouched_by_properties": by_property}),
                );
            }
            println!("{json}");
        }
    }
    if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn build(path: &PathBuf, output: &PathBuf) -> ExitCode {
    let policy = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let text = capfence_compiler::codegen::render_file(&policy);
    let written = if output.as_os_str() == "-" {
        std::io::stdout().write_all(text.as_bytes())
    } else {
        std::fs::write(output, text)
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", output.display());
            ExitCode::from(2)
        }
    }
}

pub fn lint(
    paths: &[PathBuf],
    format: LintFormat,
    deny_warnings: bool,
    src: Option<&std::path::Path>,
) -> ExitCode {
    use capfence_compiler::analysis::gates;
    use capfence_compiler::diagnostic::{self, Diagnostic};
    use capfence_compiler::load::LoadErrorKind;
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut unreadable = false;
    let found = match src.map(gates::scan).transpose() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("error: cannot read sources: {e}");
            return ExitCode::from(2);
        }
    };
    for path in paths {
        match Policy::load(path) {
            Ok(policy) => {
                diagnostics.extend(capfence_compiler::analysis::lint(&policy));
                if let Some(found) = &found {
                    diagnostics.extend(gates::check(&policy, found));
                }
            }
            Err(e) => {
                unreadable |= e.kind == LoadErrorKind::Io;
                diagnostics.push(Diagnostic::from(&e));
            }
        }
    }
    let text = match format {
        LintFormat::Human => {
            diagnostic::render_human(&diagnostics, &|file| std::fs::read_to_string(file).ok())
        }
        LintFormat::Json => format!("{}\n", diagnostic::render_json(&diagnostics)),
        LintFormat::Sarif => format!("{:#}\n", diagnostic::render_sarif(&diagnostics)),
    };
    print!("{text}");
    let (errors, warnings) = diagnostic::counts(&diagnostics);
    if unreadable {
        ExitCode::from(2)
    } else if errors > 0 || (deny_warnings && warnings > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn diff(old: &PathBuf, new: &PathBuf, format: Format) -> ExitCode {
    let (old, new) = match (load(old), load(new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let report = match capfence_compiler::analysis::DiffReport::new(&old, &new) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: the policies cannot be compared: {e}");
            return ExitCode::from(2);
        }
    };
    match format {
        Format::Human => print!("{}", report.render_human()),
        Format::Json => println!("{}", report.to_json()),
    }
    let equivalent = report.equivalent();
    if equivalent {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn explain(path: &PathBuf, history_file: Option<&std::path::Path>) -> ExitCode {
    let policy = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let history = match history(history_file) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let mut input = String::new();
    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input) {
        eprintln!("error: cannot read stdin: {e}");
        return ExitCode::from(2);
    }
    match capfence_compiler::window::timed_event(input.trim()) {
        Ok((time, event)) => {
            let windows = policy.windows();
            let event = if windows.is_empty() {
                event
            } else {
                history.augment(
                    &event,
                    &windows,
                    time.unwrap_or_else(capfence_compiler::time::now_micros),
                )
            };
            print!(
                "{}",
                capfence_compiler::explain::explain(&policy, &event).render()
            );
            if let Some(totals) = capfence_compiler::window::totals_text(&windows, &event) {
                println!("window totals: {totals}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
