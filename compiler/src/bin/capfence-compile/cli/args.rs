//! The command line's arguments: what clap parses, nothing run here.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// CapFence policy compiler.
#[derive(Parser)]
#[command(name = "capfence-compile", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
pub enum LintFormat {
    /// For people.
    Human,
    /// One JSON document.
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// One JSON document.
    Json,
}
