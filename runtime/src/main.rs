//! `capfence`: the runtime's operator and sidecar command line. Parses
//! arguments and calls the library; nothing more.

// Human output never sends control or format characters to the terminal: an
// actor, reason or payload written by an agent could otherwise move the
// cursor and draw a fake line over a real one. These shadow the std macros
// for the whole binary; JSON output escapes its own way.
macro_rules! println {
    () => { ::std::println!() };
    ($($arg:tt)*) => {
        ::std::println!("{}", capfence_compiler::token::escape_lines(&format!($($arg)*)))
    };
}
#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => {
        ::std::print!("{}", capfence_compiler::token::escape_lines(&format!($($arg)*)))
    };
}
macro_rules! eprintln {
    ($($arg:tt)*) => {
        ::std::eprintln!("{}", capfence_compiler::token::escape_lines(&format!($($arg)*)))
    };
}

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use capfence::approvals::{grant_label, ticket_label};
use capfence::clock::{SystemClock, rfc3339};
use capfence::ledger::VerifyError;
use capfence::store::sqlite::{SqliteOptions, SqliteStore};
use capfence::{ActionRuntime, Event, GrantLimits, Ledger};
use capfence_compiler::lines::{Line, Lines};
use capfence_compiler::token::escape_for_terminal;
use clap::{Args, Parser, Subcommand};

/// CapFence runtime: decide agent tool calls, operate approvals, verify the audit chain.
#[derive(Parser)]
#[command(name = "capfence", version, about)]
struct Cli {
    /// State directory (holds ledger.db).
    #[arg(
        long,
        global = true,
        env = "CAPFENCE_STATE",
        default_value = ".capfence"
    )]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide events read as JSON lines on stdin, with approvals and audit; one verdict JSON line out each.
    Decide {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
    },
    /// Operate approvals: tickets and grants.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Re-compute the audit chain; exit 1 naming the first bad record.
    Verify {
        /// A head hash printed earlier by `capfence audit head`: it must still be in the chain.
        #[arg(long)]
        head: Option<String>,
    },
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// List tickets and grants.
    List,
    /// Approve a pending ticket.
    Approve(Decide),
    /// Reject a pending ticket.
    Reject(Decide),
    /// Grant an actor passage through require_approval for a while.
    Grant(GrantArgs),
    /// Revoke a grant.
    Revoke(Decide),
}

#[derive(Args)]
struct Decide {
    /// The ticket (`T-1`) or grant (`G-1`).
    id: String,
    /// The operator's name, recorded in the audit log.
    #[arg(long)]
    by: String,
}

#[derive(Args)]
struct GrantArgs {
    /// The actor (exact).
    #[arg(long)]
    actor: String,
    /// `resource.action`, or `resource.action.environment`.
    #[arg(long)]
    capability: String,
    /// The environment (unless the capability names it).
    #[arg(long)]
    environment: Option<String>,
    /// The operator's name.
    #[arg(long)]
    granted_by: String,
    /// How long: `30s`, `15m`, `2h`, `1d`.
    #[arg(long, value_parser = parse_duration)]
    duration: Duration,
    /// A cap, `FIELD=VALUE` (repeatable): the grant covers only decisions
    /// whose rule compares FIELD and whose event carries FIELD <= VALUE.
    /// Needs --policy, to check that a require_approval rule compares FIELD.
    #[arg(long = "max", value_name = "FIELD=VALUE")]
    max: Vec<String>,
    /// The policy the caps are checked against (required with --max).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// How many decisions it may satisfy.
    #[arg(long)]
    uses: Option<u32>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the last record's `SEQ HASH`.
    Head,
    /// Print every record.
    Log {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 15m, 2h, 1d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (s, m, h, d)")),
    };
    Ok(Duration::from_secs(secs))
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
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn ledger(state: &Path, must_exist: bool) -> Result<Ledger, String> {
    if must_exist && !state.join(capfence::store::sqlite::LEDGER_FILE).exists() {
        return Err(format!(
            "no CapFence state in {} (set --state or CAPFENCE_STATE)",
            state.display()
        ));
    }
    let store =
        SqliteStore::open_checked(state, SqliteOptions::default()).map_err(|e| e.to_string())?;
    Ok(Ledger::new(
        Arc::new(store),
        Arc::new(SystemClock),
        Duration::from_secs(3600),
    ))
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Decide { policy } => decide(&cli.state, &policy),
        Command::Approvals(cmd) => approvals(&cli.state, cmd),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "capfence", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { head } => {
            let ledger = ledger(&cli.state, true)?;
            match ledger.verify(head.as_deref()) {
                Ok((seq, hash)) => {
                    println!("ok: {seq} records verified; head {seq} {hash}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(VerifyError::Chain(fault)) => {
                    println!("FAILED: {fault}");
                    Ok(ExitCode::from(1))
                }
                Err(VerifyError::Approval(fault)) => {
                    println!("FAILED: {fault}");
                    Ok(ExitCode::from(1))
                }
                Err(VerifyError::Store(e)) => Err(e.to_string()),
            }
        }
        Command::Audit(AuditCommand::Head) => {
            let (seq, hash) = ledger(&cli.state, true)?
                .head()
                .map_err(|e| e.to_string())?;
            println!("{seq} {hash}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Log { json }) => {
            let records = ledger(&cli.state, true)?
                .records()
                .map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            for r in records {
                let line = if json {
                    r.to_json().to_string()
                } else {
                    escape_for_terminal(&format!(
                        "{:>6} {} {:<16} {:<28} {:<11} {:<16} {} {}",
                        r.seq,
                        r.time,
                        r.decision,
                        r.capability.as_deref().unwrap_or("-"),
                        r.environment.as_deref().unwrap_or("-"),
                        r.actor.as_deref().unwrap_or("-"),
                        r.approval_id.as_deref().unwrap_or("-"),
                        r.reason
                    ))
                    .into_owned()
                };
                if writeln!(out, "{line}").is_err() {
                    return Ok(ExitCode::from(2));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn decide(state: &Path, policy: &Path) -> Result<ExitCode, String> {
    let runtime = ActionRuntime::builder(policy)
        .state_dir(state)
        .build()
        .map_err(|e| e.to_string())?;
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for line in Lines::new(stdin) {
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        // Unreadable input is a decision too: denied, and on the record.
        let verdict = match line {
            Line::Text(text) => match Event::from_json(&text) {
                Ok(event) => runtime.execute_event(&event),
                Err(e) => runtime.execute_unreadable(&e.to_string()),
            },
            Line::Unreadable(why) => runtime.execute_unreadable(&why),
        };
        if writeln!(stdout, "{}", verdict.to_json())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn approvals(state: &Path, cmd: ApprovalsCommand) -> Result<ExitCode, String> {
    let refused = |e: capfence::OperatorError| -> Result<ExitCode, String> {
        match e {
            capfence::OperatorError::Store(e) => Err(e.to_string()),
            other => {
                eprintln!("refused: {other}");
                Ok(ExitCode::from(1))
            }
        }
    };
    match cmd {
        ApprovalsCommand::List => {
            let ledger = ledger(state, true)?;
            let now = rfc3339(capfence::clock::Clock::now_micros(&SystemClock));
            println!("tickets (now {now}):");
            for t in ledger.tickets().map_err(|e| e.to_string())? {
                println!(
                    "  {:<6} {:<9} {:<16} {:<20} {:<11} risk {:<8} rule {:<20} {} expires {}{}",
                    ticket_label(t.id),
                    t.status.as_str(),
                    t.actor.as_deref().unwrap_or("-"),
                    t.capability,
                    t.environment.as_deref().unwrap_or("-"),
                    t.risk.as_deref().unwrap_or("-"),
                    t.rule.as_deref().unwrap_or("-"),
                    t.payload,
                    rfc3339(t.expires_at),
                    t.decided_by.map(|b| format!(" by {b}")).unwrap_or_default()
                );
            }
            println!("grants:");
            for g in ledger.grants().map_err(|e| e.to_string())? {
                println!(
                    "  {:<6} {:<16} {}.{} by {} until {}{}{}{}",
                    grant_label(g.id),
                    g.actor,
                    g.capability,
                    g.environment,
                    g.granted_by,
                    rfc3339(g.expires_at),
                    if g.caps.is_empty() {
                        String::new()
                    } else {
                        format!(" max {}", capfence::approvals::caps_text(&g.caps))
                    },
                    g.uses_left
                        .map(|u| format!(" uses {u}"))
                        .unwrap_or_default(),
                    g.revoked_by
                        .map(|b| format!(" REVOKED by {b}"))
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve(args) => match ledger(state, true)?.approve(&args.id, &args.by) {
            Ok(t) => {
                println!(
                    "approved {} ({} {} by {})",
                    ticket_label(t.id),
                    t.capability,
                    t.payload,
                    args.by
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => refused(e),
        },
        ApprovalsCommand::Reject(args) => match ledger(state, true)?.reject(&args.id, &args.by) {
            Ok(t) => {
                println!(
                    "rejected {} ({} {} by {})",
                    ticket_label(t.id),
                    t.capability,
                    t.payload,
                    args.by
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => refused(e),
        },
        ApprovalsCommand::Revoke(args) => match ledger(state, true)?.revoke(&args.id, &args.by) {
            Ok(g) => {
                println!("revoked {} by {}", grant_label(g.id), args.by);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => refused(e),
        },
        ApprovalsCommand::Grant(args) => {
            let (capability, environment) = match (
                &args.environment,
                args.capability.matches('.').count(),
            ) {
                (Some(env), _) => (args.capability.clone(), env.clone()),
                (None, 2) => match args.capability.rsplit_once('.') {
                    Some((c, e)) => (c.to_owned(), e.to_owned()),
                    None => return Err("bad capability".to_owned()),
                },
                (None, _) => {
                    return Err(format!(
                        "--capability `{}` names no environment: use resource.action.environment or --environment",
                        args.capability
                    ));
                }
            };
            let mut caps = Vec::new();
            for text in &args.max {
                let parsed = text.split_once('=').and_then(|(field, value)| {
                    capfence_compiler::number::parse_exact(value).map(|v| (field.to_owned(), v))
                });
                caps.push(parsed.ok_or_else(|| {
                    format!("--max `{text}` is not FIELD=VALUE with an exact decimal VALUE")
                })?);
            }
            if !caps.is_empty() {
                let Some(path) = &args.policy else {
                    return Err(
                        "--max needs --policy: a cap must name a field the policy's \
                         require_approval rules compare"
                            .to_owned(),
                    );
                };
                let policy = capfence::Policy::load(path).map_err(|e| e.to_string())?;
                if let Err(why) =
                    capfence::approvals::check_caps(&policy.rule_facts(), &capability, &caps)
                {
                    eprintln!("refused: {why}");
                    return Ok(ExitCode::from(1));
                }
            }
            let limits = GrantLimits {
                caps,
                uses: args.uses,
            };
            match ledger(state, false)?.grant(
                &args.actor,
                &capability,
                &environment,
                &args.granted_by,
                args.duration,
                limits,
            ) {
                Ok(g) => {
                    println!(
                        "granted {} to {} for {}.{} until {}",
                        grant_label(g.id),
                        g.actor,
                        g.capability,
                        g.environment,
                        rfc3339(g.expires_at)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e),
            }
        }
    }
}
