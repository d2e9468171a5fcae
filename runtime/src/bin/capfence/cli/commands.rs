//! `decide`, `mcp-proxy`, `verify` and `audit`: each calls the library and
//! renders what it returns.

#[allow(unused_imports)]
use capfence_compiler::{
    eprintln_escaped as eprintln, print_escaped as print, println_escaped as println,
};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use capfence::Event;
use capfence::ledger::VerifyError;
use capfence_compiler::lines::{Line, Lines};

use super::{Failure, Place, render};

/// `decide`: one verdict JSON line per input line; unreadable input is a
/// decision too (denied, and on the record).
pub fn decide(
    place: &Place,
    policy: &Path,
    checkpoints: Option<(u64, std::path::PathBuf, std::path::PathBuf)>,
) -> Result<ExitCode, Failure> {
    let mut builder = place.builder(policy);
    if let Some((every, dir, key)) = checkpoints {
        let key = capfence::signing::OperatorKey::load(&key).map_err(|e| e.to_string())?;
        builder = builder.checkpoints(capfence::ledger::Checkpoints::new(every, dir, key));
    }
    let runtime = builder.build().map_err(|e| e.to_string())?;
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for line in Lines::new(stdin) {
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
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

/// `mcp-proxy`: the server's exit code, once one side ends.
pub fn mcp_proxy(
    place: &Place,
    policy_path: &Path,
    options: capfence::mcp::ProxyOptions,
) -> Result<ExitCode, Failure> {
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

/// `outcome SEQ executed|failed`: exit 1 when the ledger refuses it.
pub fn outcome(
    place: &Place,
    policy: &Path,
    seq: u64,
    kind: &str,
    reference: Option<String>,
    amount: Option<&str>,
    error: Option<String>,
) -> Result<ExitCode, Failure> {
    let outcome = match kind {
        "executed" => capfence::Outcome::Executed {
            reference,
            amount: amount
                .map(|a| {
                    capfence_compiler::number::parse_exact(a)
                        .ok_or_else(|| format!("--amount {a}: not an exact decimal number"))
                })
                .transpose()?,
        },
        _ => capfence::Outcome::Failed {
            error: error.ok_or("a failed outcome needs --error TEXT")?,
        },
    };
    let runtime = place.builder(policy).build().map_err(|e| e.to_string())?;
    match runtime.record_outcome(seq, &outcome) {
        Ok(record) => {
            println!("recorded: {} (record {})", record.reason, record.seq);
            Ok(ExitCode::SUCCESS)
        }
        Err(capfence::OutcomeError::Store(e)) => Err(e.to_string()),
        Err(e) => {
            println!("refused: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `audit reconcile --rail FILE`: exit 1 when anything does not match (or
/// the chain does not verify).
pub fn reconcile(
    place: &Place,
    rail: &Path,
    columns: &str,
    json: bool,
) -> Result<ExitCode, Failure> {
    use capfence::reconcile::{self, Columns, ExecutedCalls};
    let columns = Columns::default()
        .parse_mapping(columns)
        .map_err(|e| e.to_string())?;
    let file =
        std::fs::File::open(rail).map_err(|e| format!("cannot read {}: {e}", rail.display()))?;
    let movements = reconcile::read_rail(
        std::io::BufReader::new(file),
        &rail.display().to_string(),
        &columns,
    )
    .map_err(|e| e.to_string())?;
    let ledger = place.ledger(true)?;
    // Only a whole chain is worth reconciling against.
    if let Err(e) = ledger.verify(None) {
        println!("FAILED: the ledger does not verify: {e}");
        return Ok(ExitCode::from(1));
    }
    let mut calls = ExecutedCalls::default();
    ledger
        .records_after(0, &mut |r| {
            calls.push(&r);
            true
        })
        .map_err(|e| e.to_string())?;
    let report = reconcile::reconcile(&calls.calls, &movements);
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render::reconciliation(&report));
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `verify`: exit 1 naming the first bad record.
pub fn verify(
    place: &Place,
    head: Option<&str>,
    policy: Option<&Path>,
    checkpoint: Option<&Path>,
) -> Result<ExitCode, Failure> {
    let ledger = place.ledger(true)?;
    let policy = policy
        .map(capfence::Policy::load)
        .transpose()
        .map_err(|e| e.to_string())?;
    let verified = ledger.verify(head).and_then(|head| match &policy {
        Some(p) => ledger
            .verify_windows(&p.windows(), &p.digest)
            .map(|()| head),
        None => Ok(head),
    });
    match verified {
        Ok((seq, hash)) => {
            if let (Some(file), Some(policy)) = (checkpoint, &policy)
                && let Err(fault) = super::tree::hold_to(&ledger, file, policy)?
            {
                println!("FAILED: {fault}");
                return Ok(ExitCode::from(1));
            }
            println!("ok: {seq} records verified; head {seq} {hash}");
            // Not a fault of the chain, but worth a look: a clock that
            // stepped back, or hosts that disagree.
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
            VerifyError::Approval(fault) | VerifyError::Window(fault) | VerifyError::Record(fault),
        ) => {
            println!("FAILED: {fault}");
            Ok(ExitCode::from(1))
        }
        Err(VerifyError::Store(e)) => Err(e.to_string()),
    }
}

/// `audit head`.
pub fn audit_head(place: &Place) -> Result<ExitCode, Failure> {
    let (seq, hash) = place.ledger(true)?.head().map_err(|e| e.to_string())?;
    println!("{seq} {hash}");
    Ok(ExitCode::SUCCESS)
}

/// `audit log [--json]`.
/// `capfence serve`'s options as given.
pub struct ServeArgs {
    pub listen: std::net::SocketAddr,
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub insecure_http: bool,
    pub notify: Vec<String>,
    pub notify_secret_file: Option<std::path::PathBuf>,
    pub slack: bool,
    pub public_url: Option<String>,
    pub checkpoint_dir: Option<std::path::PathBuf>,
    pub agents: Option<std::path::PathBuf>,
    pub mcp: Vec<String>,
    pub mcp_environment: String,
    pub mcp_risk: capfence::Risk,
}

/// `agents new --name NAME`: the token, then the agents-file line.
pub fn new_agent(name: &str) -> Result<ExitCode, Failure> {
    if !capfence_compiler::token::is_token(name) {
        return Err(format!("--name {name}: not a plain token to name an agent"));
    }
    let (token, line) = capfence::serve::agents::new_agent(name).map_err(|e| e.to_string())?;
    println!("{token}");
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// Serves the console until the process is stopped. Prints the address it
/// listens on (`listening on https://127.0.0.1:8443`) once it accepts.
pub fn serve(place: &Place, policy: &Path, args: ServeArgs) -> Result<ExitCode, Failure> {
    use capfence::serve::notify::{NotifyFormat, NotifyOptions};
    let secret = match &args.notify_secret_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                format!(
                    "{}: cannot read the notification secret: {e}",
                    file.display()
                )
            })?;
            let secret = text.trim();
            if secret.len() < 16 {
                return Err(format!(
                    "{}: the notification secret is shorter than 16 characters",
                    file.display()
                ));
            }
            Some(secret.as_bytes().to_vec())
        }
        None => None,
    };
    for url in &args.notify {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!("--notify {url}: not an http:// or https:// URL"));
        }
    }
    let loaded = capfence_compiler::Policy::load(policy).map_err(|e| e.to_string())?;
    let checkpoints = args
        .checkpoint_dir
        .map(|dir| capfence::serve::CheckpointDir {
            dir,
            keys: super::tree::checkpoint_keys(&loaded),
        });
    let viewers = loaded
        .viewers
        .iter()
        .map(|v| (v.name.clone(), v.key.clone()))
        .collect();
    let agents = match &args.agents {
        Some(file) => capfence::serve::agents::Agents::load(file).map_err(|e| e.to_string())?,
        None => capfence::serve::agents::Agents::default(),
    };
    let upstreams = args
        .mcp
        .iter()
        .map(|spec| capfence::serve::mcp_http::Upstream::parse(spec))
        .collect::<Result<Vec<_>, String>>()?;
    let mut names = std::collections::HashSet::new();
    if let Some(twice) = upstreams.iter().find(|u| !names.insert(u.name.as_str())) {
        return Err(format!("--mcp {}: the name is given twice", twice.name));
    }
    let mcp = (!upstreams.is_empty()).then(|| capfence::serve::mcp_http::McpOptions {
        upstreams,
        policy: std::sync::Arc::new(loaded),
        environment: args.mcp_environment,
        risk: args.mcp_risk,
    });
    let options = capfence::serve::ServeOptions {
        mcp,
        viewers,
        checkpoints,
        agents,
        listen: args.listen,
        tls: args.tls,
        insecure_http: args.insecure_http,
        notify: (!args.notify.is_empty()).then(|| NotifyOptions {
            urls: args.notify,
            secret,
            format: if args.slack {
                NotifyFormat::Slack
            } else {
                NotifyFormat::Json
            },
            console_url: args.public_url.unwrap_or_default(),
        }),
    };
    let runtime = place.builder(policy).build().map_err(|e| e.to_string())?;
    capfence::serve::serve(runtime, &options, |addr, tls| {
        let scheme = if tls { "https" } else { "http" };
        println!("listening on {scheme}://{addr}");
        let _ = std::io::stdout().flush();
    })
    .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// What `audit log` prints.
pub struct LogOptions {
    /// JSON lines instead of text.
    pub json: bool,
    /// Only records after this seq.
    pub since: u64,
    /// Wait for new records after the last.
    pub follow: bool,
    /// Payload fields replaced by their SHA-256 (JSON only).
    pub redact: Vec<String>,
}

pub fn audit_log(place: &Place, options: &LogOptions) -> Result<ExitCode, Failure> {
    let ledger = place.ledger(!options.follow)?;
    let mut out = std::io::stdout().lock();
    let mut last = options.since;
    let mut broken = false;
    loop {
        let read = ledger.records_after(last, &mut |r| {
            let line = if options.json {
                r.to_json_redacted(&options.redact).to_string()
            } else {
                render::record_line(&r)
            };
            if writeln!(out, "{line}").is_err() {
                broken = true;
                return false;
            }
            last = r.seq;
            true
        });
        if broken || out.flush().is_err() {
            return Ok(ExitCode::from(2));
        }
        if let Err(e) = read {
            if !options.follow {
                return Err(e.to_string());
            }
            // A follower outlives a server restart: it says so and retries
            // from the last record it printed.
            eprintln!("capfence: audit log: {e}; retrying after record {last}");
            std::thread::sleep(std::time::Duration::from_secs(1));
            continue;
        }
        if !options.follow {
            return Ok(ExitCode::SUCCESS);
        }
        if let Err(e) = ledger.wait_for_records(last, std::time::Duration::from_secs(30)) {
            eprintln!("capfence: audit log: {e}; retrying after record {last}");
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
