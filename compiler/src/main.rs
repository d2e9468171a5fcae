//! `capfence-compile`: the policy compiler's command line. Parses arguments and
//! calls the library; nothing more.

// Human output never sends control or format characters to the terminal:
// these shadow the std macros for the whole binary; JSON output escapes its
// own way.
#[allow(unused_imports)]
use capfence_compiler::{
    eprintln_escaped as eprintln, print_escaped as print, println_escaped as println,
};
use std::io::Write;

use capfence_compiler::lines::{Line, Lines};
use std::path::PathBuf;
use std::process::ExitCode;

use capfence_compiler::Policy;
use capfence_compiler::eval::Decision;
use capfence_compiler::suite::Suite;
use capfence_compiler::window::History;
use clap::{Parser, Subcommand, ValueEnum};

/// CapFence policy compiler.
#[derive(Parser)]
#[command(name = "capfence-compile", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide events read as JSON lines on stdin; print one decision per line.
    Eval {
        /// The policy file.
        policy: PathBuf,
        /// Earlier authorized calls (JSON lines, each with a `time`) that
        /// velocity windows count; allowed events of the stream are added.
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Check policies exactly: unsatisfiable, shadowed and conflicting rules,
    /// unbounded amounts, default-deny gaps.
    Lint {
        /// The policy files.
        #[arg(required = true)]
        policies: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = LintFormat::Human)]
        format: LintFormat,
        /// Exit 1 on warnings too.
        #[arg(long)]
        deny_warnings: bool,
        /// Also check the `#[gate("…")]` attributes of the Rust sources under DIR.
        #[arg(long, value_name = "DIR")]
        src: Option<PathBuf>,
    },
    /// Every region where two policies decide differently, with an example event each.
    Diff {
        /// The policy before.
        old: PathBuf,
        /// The policy after.
        new: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Explain the decision on one event (JSON on stdin): the deciding rule, and
    /// for every other rule of its capability why it did not decide.
    Explain {
        /// The policy file.
        policy: PathBuf,
        /// Earlier authorized calls (JSON lines, each with a `time`) that
        /// velocity windows count.
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Emit the static Rust decision table of a policy.
    Build {
        /// The policy file.
        policy: PathBuf,
        /// Where to write the Rust file (`-` for stdout).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run a policy regression suite.
    Test {
        /// The policy file.
        policy: PathBuf,
        /// The suite file.
        tests: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Also list rules no example case decided and rules no property's region touches.
        #[arg(long)]
        coverage: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LintFormat {
    Human,
    Json,
    Sarif,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Eval { policy, history } => eval(&policy, history.as_deref()),
        Command::Lint {
            policies,
            format,
            deny_warnings,
            src,
        } => lint(&policies, format, deny_warnings, src.as_deref()),
        Command::Build { policy, output } => build(&policy, &output),
        Command::Diff { old, new, format } => diff(&old, &new, format),
        Command::Explain { policy, history } => explain(&policy, history.as_deref()),
        Command::Test {
            policy,
            tests,
            format,
            coverage,
        } => test(&policy, &tests, format, coverage),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                shell,
                &mut command,
                "capfence-compile",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

fn load(path: &PathBuf) -> Result<Policy, ExitCode> {
    Policy::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Reads `--history`: earlier authorized calls.
fn history(path: Option<&std::path::Path>) -> Result<History, ExitCode> {
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

fn eval(path: &PathBuf, history_file: Option<&std::path::Path>) -> ExitCode {
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

fn test(policy: &PathBuf, tests: &PathBuf, format: Format, coverage: bool) -> ExitCode {
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

fn build(path: &PathBuf, output: &PathBuf) -> ExitCode {
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

fn lint(
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

fn diff(old: &PathBuf, new: &PathBuf, format: Format) -> ExitCode {
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

fn explain(path: &PathBuf, history_file: Option<&std::path::Path>) -> ExitCode {
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
