//! `capfence`: the runtime's operator and sidecar command line. Parses
//! arguments and calls the library; nothing more.

// Human output never sends control or format characters to the terminal:
// these shadow the std macros for the whole binary; JSON output escapes its
// own way.
#[allow(unused_imports)]
use capfence_compiler::{
    eprintln_escaped as eprintln, print_escaped as print, println_escaped as println,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use capfence::approvals::{GrantId, TicketId};
use capfence::clock::{SystemClock, rfc3339};
use capfence::ledger::VerifyError;
use capfence::ledger::{Operator, PolicyFacts};
use capfence::signing::OperatorKey;
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
    /// The ledger as a URL instead: `postgres://user@host/db` for a
    /// PostgreSQL server every agent host shares (overrides --state).
    #[arg(long, global = true, env = "CAPFENCE_STORE", value_name = "URL")]
    store: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Where the ledger is: a state directory or a store URL.
struct Place {
    state: PathBuf,
    store: Option<String>,
}

impl Place {
    /// A runtime builder for `policy` on this ledger.
    fn builder(&self, policy: &Path) -> capfence::RuntimeBuilder {
        let builder = ActionRuntime::builder(policy);
        match &self.store {
            Some(url) => builder.store_url(url),
            None => builder.state_dir(&self.state),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Decide events read as JSON lines on stdin, with approvals and audit; one verdict JSON line out each.
    Decide {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
    },
    /// Run an MCP server behind CapFence: every tools/call is decided and
    /// recorded before the server sees it (`capfence mcp-proxy --policy P -- python server.py`).
    McpProxy {
        /// The policy file (its `tools:` map names each tool's capability).
        #[arg(long)]
        policy: PathBuf,
        /// The agent: the actor of every call.
        #[arg(long, default_value = "mcp-agent")]
        actor: String,
        /// The environment of every call.
        #[arg(long, default_value = "production")]
        environment: String,
        /// The risk of every call (low, medium, high, critical).
        #[arg(long, default_value = "low")]
        risk: String,
        /// Drop from tools/list the tools the policy denies this agent for every input.
        #[arg(long)]
        hide_denied: bool,
        /// The MCP server's command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        server: Vec<std::ffi::OsString>,
    },
    /// Operate approvals: tickets and grants.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Re-compute the audit chain; exit 1 naming the first bad record.
    Verify {
        /// A head hash printed earlier by `capfence audit head`: it must still be in the chain.
        #[arg(long)]
        head: Option<String>,
        /// The policy in force: its velocity windows' rows are held to the chain too.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Make and inspect operator keys (Ed25519) that sign approvals.
    #[command(subcommand)]
    Keys(KeysCommand),
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

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new operator key (mode 0600; never overwrites) and print the
    /// public key line to paste under the policy's `approvers:`.
    New {
        /// The operator's name (`ops1`).
        #[arg(long)]
        name: String,
        /// The key file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a key file's public key line.
    Show {
        /// The key file.
        file: PathBuf,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("operator").required(true).args(["by", "key"])))]
struct Decide {
    /// The ticket (`T-1`) or grant (`G-1`).
    id: String,
    /// The operator's name, recorded in the audit log (only where the policy
    /// lists no approvers).
    #[arg(long)]
    by: Option<String>,
    /// The operator's key file: the action is signed.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The policy in force (default: the requirements the ledger noted for
    /// the ticket's policy).
    #[arg(long)]
    policy: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("operator").required(true).args(["granted_by", "key"])))]
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
    /// The operator's name (only where the policy lists no approvers).
    #[arg(long)]
    granted_by: Option<String>,
    /// The operator's key file: the grant is signed (needs --policy).
    #[arg(long)]
    key: Option<PathBuf>,
    /// How long: `30s`, `15m`, `2h`, `1d`.
    #[arg(long, value_parser = parse_duration)]
    duration: Duration,
    /// A cap, `FIELD=VALUE` (repeatable): the grant covers only decisions
    /// whose rule compares FIELD and whose event carries FIELD <= VALUE.
    /// Needs --policy, to check that a require_approval rule compares FIELD.
    #[arg(long = "max", value_name = "FIELD=VALUE")]
    max: Vec<String>,
    /// The policy in force: caps are checked against it, and a signed grant
    /// is signed under it (required with --max and --key).
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

/// A grant's duration: the one duration syntax of the policy language
/// (`30s`, `15m`, `2h`, `1d`; at most 366 days).
fn parse_duration(text: &str) -> Result<Duration, String> {
    capfence_compiler::aggregate::parse_duration(text)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            format!("`{text}` is not a duration like 30s, 15m, 2h, 1d (a whole number and one unit, at most 366d)")
        })
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

fn ledger(place: &Place, must_exist: bool) -> Result<Ledger, String> {
    let url = match &place.store {
        Some(url) => url.clone(),
        None => place.state.to_string_lossy().into_owned(),
    };
    let store = capfence::store::open_url_checked(&url, must_exist).map_err(|e| e.to_string())?;
    Ok(Ledger::new(
        store,
        Arc::new(SystemClock),
        Duration::from_secs(3600),
    ))
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let place = Place {
        state: cli.state,
        store: cli.store,
    };
    match cli.command {
        Command::Decide { policy } => decide(&place, &policy),
        Command::McpProxy {
            policy,
            actor,
            environment,
            risk,
            hide_denied,
            server,
        } => mcp_proxy(
            &place,
            &policy,
            capfence::mcp::ProxyOptions {
                actor,
                environment,
                risk: parse_risk(&risk)?,
                hide_denied,
                server,
            },
        ),
        Command::Approvals(cmd) => approvals(&place, cmd),
        Command::Keys(cmd) => keys(cmd),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "capfence", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { head, policy } => {
            let ledger = ledger(&place, true)?;
            let policy = policy
                .as_deref()
                .map(capfence::Policy::load)
                .transpose()
                .map_err(|e| e.to_string())?;
            let verified = ledger
                .verify(head.as_deref())
                .and_then(|head| match &policy {
                    Some(p) => ledger
                        .verify_windows(&p.windows(), &p.digest)
                        .map(|()| head),
                    None => Ok(head),
                });
            match verified {
                Ok((seq, hash)) => {
                    println!("ok: {seq} records verified; head {seq} {hash}");
                    // Not a fault of the chain, but worth a look: a clock
                    // that stepped back, or hosts that disagree.
                    let reversals = ledger.time_reversals().map_err(|e| e.to_string())?;
                    for r in reversals.iter().take(10) {
                        println!("note: {r}");
                    }
                    if reversals.len() > 10 {
                        println!(
                            "note: … and {} more records stamped before an earlier one",
                            reversals.len() - 10
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(VerifyError::Chain(fault)) => {
                    println!("FAILED: {fault}");
                    Ok(ExitCode::from(1))
                }
                Err(
                    VerifyError::Approval(fault)
                    | VerifyError::Window(fault)
                    | VerifyError::Record(fault),
                ) => {
                    println!("FAILED: {fault}");
                    Ok(ExitCode::from(1))
                }
                Err(VerifyError::Store(e)) => Err(e.to_string()),
            }
        }
        Command::Audit(AuditCommand::Head) => {
            let (seq, hash) = ledger(&place, true)?.head().map_err(|e| e.to_string())?;
            println!("{seq} {hash}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Log { json }) => {
            let records = ledger(&place, true)?.records().map_err(|e| e.to_string())?;
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

fn decide(place: &Place, policy: &Path) -> Result<ExitCode, String> {
    let runtime = place.builder(policy).build().map_err(|e| e.to_string())?;
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

fn parse_risk(risk: &str) -> Result<capfence::Risk, String> {
    capfence::Risk::parse(&risk.to_ascii_lowercase())
        .ok_or_else(|| format!("--risk {risk:?}: expected low, medium, high or critical"))
}

fn mcp_proxy(
    place: &Place,
    policy_path: &Path,
    options: capfence::mcp::ProxyOptions,
) -> Result<ExitCode, String> {
    let policy = capfence::Policy::load(policy_path).map_err(|e| e.to_string())?;
    let runtime = place
        .builder(policy_path)
        .build()
        .map_err(|e| e.to_string())?;
    if runtime.policy_digest() != policy.digest {
        return Err(format!(
            "{} changed while the proxy was starting; start it again",
            policy_path.display()
        ));
    }
    let code = capfence::mcp::Proxy::new(runtime, policy, options)
        .run(std::io::stdin(), Box::new(std::io::stdout()))
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn approvals(place: &Place, cmd: ApprovalsCommand) -> Result<ExitCode, String> {
    match cmd {
        ApprovalsCommand::List => {
            let ledger = ledger(place, true)?;
            let now = rfc3339(capfence::clock::Clock::now_micros(&SystemClock));
            println!("tickets (now {now}):");
            for t in ledger.tickets().map_err(|e| e.to_string())? {
                println!(
                    "  {:<6} {:<9} {:<16} {:<20} {:<11} risk {:<8} rule {:<20} {} expires {}{}",
                    TicketId(t.id).to_string(),
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
                    GrantId(g.id).to_string(),
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
        ApprovalsCommand::Approve(args) => ticket_action(place, &args, true),
        ApprovalsCommand::Reject(args) => ticket_action(place, &args, false),
        ApprovalsCommand::Revoke(args) => {
            let key = args.key.as_deref().map(load_key).transpose()?;
            let policy = args.policy.as_deref().map(policy_facts).transpose()?;
            let who = operator(args.by.as_deref(), key.as_ref());
            match ledger(place, true)?.revoke(&args.id, who, policy.as_ref()) {
                Ok(g) => {
                    println!(
                        "revoked {} by {}",
                        GrantId(g.id).to_string(),
                        g.revoked_by.unwrap_or_default()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e),
            }
        }
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
                caps.push(capfence::approvals::parse_cap(text).ok_or_else(|| {
                    format!("--max `{text}` is not FIELD=VALUE with an exact decimal VALUE")
                })?);
            }
            if args.policy.is_none() && (!caps.is_empty() || args.key.is_some()) {
                return Err(
                    "--max and --key need --policy: a cap must name a field the policy's \
                     require_approval rules compare, and a signed grant is signed under a policy"
                        .to_owned(),
                );
            }
            let key = args.key.as_deref().map(load_key).transpose()?;
            let policy = args.policy.as_deref().map(policy_facts).transpose()?;
            let limits = GrantLimits {
                caps,
                uses: args.uses,
            };
            match ledger(place, false)?.grant(
                &args.actor,
                &capability,
                &environment,
                operator(args.granted_by.as_deref(), key.as_ref()),
                args.duration,
                limits,
                policy.as_ref(),
            ) {
                Ok(g) => {
                    println!(
                        "granted {} to {} for {}.{} until {}",
                        GrantId(g.id).to_string(),
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

fn refused(e: capfence::OperatorError) -> Result<ExitCode, String> {
    match e {
        capfence::OperatorError::Store(e) => Err(e.to_string()),
        other => {
            eprintln!("refused: {other}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The operator: a key if one was given, else the name.
fn operator<'a>(by: Option<&'a str>, key: Option<&'a OperatorKey>) -> Operator<'a> {
    match key {
        Some(key) => Operator::Key(key),
        None => Operator::Name(by.unwrap_or_default()),
    }
}

fn load_key(path: &Path) -> Result<OperatorKey, String> {
    OperatorKey::load(path).map_err(|e| e.to_string())
}

fn policy_facts(path: &Path) -> Result<PolicyFacts, String> {
    let policy = capfence::Policy::load(path).map_err(|e| e.to_string())?;
    Ok(PolicyFacts::new(&policy.digest, policy.rule_facts()))
}

/// `approvals approve|reject`.
fn ticket_action(place: &Place, args: &Decide, approve: bool) -> Result<ExitCode, String> {
    // A key, policy or ledger that cannot be read is an I/O error (exit 2),
    // as for the other operator commands; a refusal exits 1.
    let key = args.key.as_deref().map(load_key).transpose()?;
    let policy = args.policy.as_deref().map(policy_facts).transpose()?;
    let ledger = ledger(place, true)?;
    let who = operator(args.by.as_deref(), key.as_ref());
    let outcome = if approve {
        ledger.approve(&args.id, who, policy.as_ref())
    } else {
        ledger.reject(&args.id, who, policy.as_ref())
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return refused(e),
    };
    let t = &outcome.ticket;
    let by = outcome
        .approvals
        .last()
        .cloned()
        .or_else(|| t.decided_by.clone())
        .unwrap_or_default();
    let what = format!(
        "{} {} by {}",
        t.capability,
        t.payload,
        t.actor.as_deref().unwrap_or("?")
    );
    if !approve {
        let by = t.decided_by.clone().unwrap_or_default();
        println!("rejected {} ({what}) by {by}", TicketId(t.id).to_string());
    } else if t.status == capfence::TicketStatus::Approved {
        println!(
            "approved {} ({what}) by {}",
            TicketId(t.id).to_string(),
            outcome.approvals.join(", ")
        );
    } else {
        println!(
            "recorded {by}'s approval of {} ({what}): {} of {} approvals, waiting for more",
            TicketId(t.id).to_string(),
            outcome.approvals.len(),
            outcome.needed
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn keys(cmd: KeysCommand) -> Result<ExitCode, String> {
    match cmd {
        KeysCommand::New { name, out } => {
            let key = OperatorKey::generate(&name).map_err(|e| e.to_string())?;
            match key.write_new(&out) {
                Ok(()) => {}
                Err(e @ capfence::signing::KeyError::Exists(_)) => {
                    eprintln!("refused: {e}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e.to_string()),
            }
            println!("{}: {}", key.name(), key.public_key());
            eprintln!(
                "wrote {}'s secret key to {} (mode 0600); paste the line above under the \
                 policy's `approvers:`",
                key.name(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Show { file } => {
            let key = load_key(&file)?;
            println!("{}: {}", key.name(), key.public_key());
            Ok(ExitCode::SUCCESS)
        }
    }
}
