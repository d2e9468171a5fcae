//! `capfence-compile`: the policy compiler's command line. Parses arguments
//! and dispatches to [`cli`]'s commands, which call the library.

// Human output never sends control or format characters to the terminal:
// these shadow the std macros (each module of `cli` imports them too); JSON
// output escapes its own way.
#[allow(unused_imports)]
use capfence_compiler::{
    eprintln_escaped as eprintln, print_escaped as print, println_escaped as println,
};
use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::args::{Cli, Command};
use cli::commands;

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
        Command::Eval { policy, history } => commands::eval(&policy, history.as_deref()),
        Command::Lint {
            policies,
            format,
            deny_warnings,
            src,
        } => commands::lint(&policies, format, deny_warnings, src.as_deref()),
        Command::Build { policy, output } => commands::build(&policy, &output),
        Command::Diff { old, new, format } => commands::diff(&old, &new, format),
        Command::Explain { policy, history } => commands::explain(&policy, history.as_deref()),
        Command::Test {
            policy,
            tests,
            format,
            coverage,
        } => commands::test(&policy, &tests, format, coverage),
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
