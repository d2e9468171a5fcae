//! `approvals …` and `keys …`: operator actions. A refusal exits 1 with
//! its reason; a key, policy or ledger that cannot be read exits 2.

#[allow(unused_imports)]
use capfence_compiler::{
    eprintln_escaped as eprintln, print_escaped as print, println_escaped as println,
};
use std::path::Path;
use std::process::ExitCode;

use capfence::GrantLimits;
use capfence::approvals::{GrantId, parse_cap, parse_scope};
use capfence::clock::{SystemClock, rfc3339};
use capfence::ledger::{Operator, PolicyFacts};
use capfence::signing::OperatorKey;

use super::args::{ApprovalsCommand, GrantArgs, KeysCommand, TicketArgs};
use super::{Failure, Place, render};

/// `approvals …`.
pub fn approvals(place: &Place, cmd: ApprovalsCommand) -> Result<ExitCode, Failure> {
    match cmd {
        ApprovalsCommand::List => list(place),
        ApprovalsCommand::Approve(args) => ticket_action(place, &args, true),
        ApprovalsCommand::Reject(args) => ticket_action(place, &args, false),
        ApprovalsCommand::Revoke(args) => revoke(place, &args),
        ApprovalsCommand::Grant(args) => grant(place, &args),
    }
}

fn list(place: &Place) -> Result<ExitCode, Failure> {
    let ledger = place.ledger(true)?;
    let now = rfc3339(capfence::clock::Clock::now_micros(&SystemClock));
    println!("tickets (now {now}):");
    for t in ledger.tickets().map_err(|e| e.to_string())? {
        println!("{}", render::ticket_line(&t));
    }
    println!("grants:");
    for g in ledger.grants().map_err(|e| e.to_string())? {
        println!("{}", render::grant_line(&g));
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(place: &Place, args: &TicketArgs) -> Result<ExitCode, Failure> {
    let key = args.key.as_deref().map(load_key).transpose()?;
    let policy = args.policy.as_deref().map(policy_facts).transpose()?;
    let who = operator(args.by.as_deref(), key.as_ref());
    match place.ledger(true)?.revoke(&args.id, who, policy.as_ref()) {
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

fn grant(place: &Place, args: &GrantArgs) -> Result<ExitCode, Failure> {
    let (capability, environment) = parse_scope(&args.capability, args.environment.as_deref())
        .ok_or_else(|| {
            format!(
                "--capability `{}` names no environment: use resource.action.environment or --environment",
                args.capability
            )
        })?;
    let mut caps = Vec::new();
    for text in &args.max {
        caps.push(parse_cap(text).ok_or_else(|| {
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
    match place.ledger(false)?.grant(
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

/// `approvals approve|reject`.
fn ticket_action(place: &Place, args: &TicketArgs, approve: bool) -> Result<ExitCode, Failure> {
    // A key, policy or ledger that cannot be read is an I/O error (exit 2),
    // as for the other operator commands; a refusal exits 1.
    let key = args.key.as_deref().map(load_key).transpose()?;
    let policy = args.policy.as_deref().map(policy_facts).transpose()?;
    let ledger = place.ledger(true)?;
    let who = operator(args.by.as_deref(), key.as_ref());
    let outcome = if approve {
        ledger.approve(&args.id, who, policy.as_ref())
    } else {
        ledger.reject(&args.id, who, policy.as_ref())
    };
    match outcome {
        Ok(outcome) => {
            println!("{}", render::ticket_outcome(&outcome, approve));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(e),
    }
}

/// A refusal exits 1 with its reason; a store fault is an I/O error.
fn refused(e: capfence::OperatorError) -> Result<ExitCode, Failure> {
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

fn load_key(path: &Path) -> Result<OperatorKey, Failure> {
    OperatorKey::load(path).map_err(|e| e.to_string())
}

fn policy_facts(path: &Path) -> Result<PolicyFacts, Failure> {
    let policy = capfence::Policy::load(path).map_err(|e| e.to_string())?;
    Ok(PolicyFacts::new(&policy.digest, policy.rule_facts()))
}

/// `keys …`.
pub fn keys(cmd: KeysCommand) -> Result<ExitCode, Failure> {
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

/// `policy show [--text]`.
pub fn policy_show(place: &Place, text: bool) -> Result<ExitCode, Failure> {
    let ledger = place.ledger(true)?;
    let active = ledger.active_policy().map_err(|e| e.to_string())?;
    let history = ledger.policy_history().map_err(|e| e.to_string())?;
    let Some(active) = active else {
        println!("no active policy: the ledger activates the first policy that decides on it");
        return Ok(ExitCode::SUCCESS);
    };
    let current = history.iter().rev().find(|a| a.seq == active.seq);
    println!("active: {}", active.digest);
    if let Some(a) = current {
        println!(
            "activated: {} by {} (record {}): {}",
            a.time, a.by, a.seq, a.reason
        );
    }
    println!("history:");
    for a in &history {
        println!("  record {:<6} {} {} by {}", a.seq, a.time, a.digest, a.by);
    }
    if let (true, Some(a)) = (text, current) {
        println!("text:");
        print!("{}", a.text);
    }
    Ok(ExitCode::SUCCESS)
}

/// `policy activate FILE --by NAME`.
pub fn policy_activate(place: &Place, path: &Path, by: &str) -> Result<ExitCode, Failure> {
    let policy = capfence::Policy::load(path).map_err(|e| e.to_string())?;
    match place.ledger(false)?.activate_unsigned(&policy, by) {
        Ok(a) => {
            println!("activated {} by {} (record {})", a.digest, a.by, a.seq);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(e),
    }
}
