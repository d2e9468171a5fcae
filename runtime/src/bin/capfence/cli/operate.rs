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
    let proposals = ledger.proposals().map_err(|e| e.to_string())?;
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
    if !proposals.is_empty() {
        println!("proposals:");
    }
    for p in &proposals {
        println!(
            "  {} by {} {} of {}: {}; signed by {}{}",
            capfence::ledger::proposal_label(p.id),
            p.by,
            p.digest,
            p.base,
            if p.loosens.is_empty() {
                "tightens"
            } else {
                "loosens"
            },
            if p.signers.is_empty() {
                "nobody".to_owned()
            } else {
                p.signers.join(", ")
            },
            p.activated
                .map(|seq| format!("; activated (record {seq})"))
                .unwrap_or_default()
        );
    }
    if let (true, Some(a)) = (text, current) {
        println!("text:");
        print!("{}", a.text);
    }
    Ok(ExitCode::SUCCESS)
}

/// `policy activate P-1` or `policy activate FILE --by NAME`.
pub fn policy_activate(place: &Place, target: &str, by: Option<&str>) -> Result<ExitCode, Failure> {
    let ledger = place.ledger(false)?;
    let done = if target.starts_with("P-") || target.starts_with("p-") {
        if by.is_some() {
            return Err("a proposal is activated by its signatures: no --by".to_owned());
        }
        ledger.activate_proposal(target)
    } else {
        let Some(by) = by else {
            return Err(
                "activating a policy file needs --by NAME (and an active policy that lists no \
                 approvers); otherwise propose it (`capfence policy propose`)"
                    .to_owned(),
            );
        };
        let policy = capfence::Policy::load(Path::new(target)).map_err(|e| e.to_string())?;
        ledger.activate_unsigned(&policy, by)
    };
    match done {
        Ok(a) => {
            println!(
                "activated {} by {} (record {}): {}",
                a.digest, a.by, a.seq, a.reason
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(e),
    }
}

/// `policy propose FILE --by NAME [--since D]`.
pub fn policy_propose(
    place: &Place,
    path: &Path,
    by: &str,
    since: std::time::Duration,
) -> Result<ExitCode, Failure> {
    let policy = capfence::Policy::load(path).map_err(|e| e.to_string())?;
    let ledger = place.ledger(true)?;
    let proposed = match ledger.propose(&policy, by) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let p = &proposed.proposal;
    let label = capfence::ledger::proposal_label(p.id);
    println!("proposed {label}: {} in place of {}", p.digest, p.base);
    match &proposed.diff {
        Some(diff) => {
            let rank = |k: capfence::DecisionKind| match k {
                capfence::DecisionKind::Deny => 0,
                capfence::DecisionKind::RequireApproval => 1,
                capfence::DecisionKind::Allow => 2,
            };
            let rule = |r: &Option<String>| r.clone().unwrap_or_else(|| "default".to_owned());
            for f in &diff.fields {
                println!(
                    "{}: `{}` is required differently (events lacking it or ill-typed change \
                     between malformed and well-formed)",
                    f.capability, f.field
                );
            }
            for c in &diff.changes {
                let way = match rank(c.new.decision).cmp(&rank(c.old.decision)) {
                    std::cmp::Ordering::Greater => "toward allow",
                    std::cmp::Ordering::Less => "toward deny",
                    std::cmp::Ordering::Equal => "another rule",
                };
                println!(
                    "{}: {} -> {} ({} -> {}; {way})",
                    c.region,
                    c.old.decision,
                    c.new.decision,
                    rule(&c.old.rule),
                    rule(&c.new.rule)
                );
                if let Some(w) = &c.witness {
                    println!("  e.g. {w}");
                }
            }
            if diff.equivalent() {
                println!("no change: the two policies decide every event alike");
            }
        }
        None => println!("diff: the policies are too complex to compare exactly"),
    }
    if p.loosens.is_empty() {
        println!("direction: it only tightens: one approver's signature activates it, no delay");
    } else {
        println!("direction: it loosens the active policy:");
        for l in &p.loosens {
            println!("  {l}");
        }
    }
    let cutoff = capfence::clock::Clock::now_micros(&capfence::clock::SystemClock)
        .saturating_sub(i64::try_from(since.as_micros()).unwrap_or(i64::MAX));
    let impact = ledger
        .replay_impact(&policy, cutoff)
        .map_err(|e| e.to_string())?;
    println!(
        "replay: of {} calls decided since {}, {} would be decided differently{}",
        impact.replayed,
        rfc3339(cutoff),
        impact.changed.values().sum::<usize>(),
        if impact.windowed > 0 {
            format!(
                " ({} decided on velocity windows are not replayed)",
                impact.windowed
            )
        } else {
            String::new()
        }
    );
    for ((old, new), count) in &impact.changed {
        let examples: Vec<String> = impact
            .examples
            .get(&(old.clone(), new.clone()))
            .map(|e| {
                e.iter()
                    .map(|(seq, cap)| format!("record {seq} {cap}"))
                    .collect()
            })
            .unwrap_or_default();
        println!("  {old} -> {new}: {count} (e.g. {})", examples.join(", "));
    }
    println!(
        "sign it: capfence policy approve {label} --key FILE; then: capfence policy activate {label}"
    );
    Ok(ExitCode::SUCCESS)
}

/// `policy approve P-1 --key FILE`.
pub fn policy_approve(place: &Place, proposal: &str, key: &Path) -> Result<ExitCode, Failure> {
    let key = load_key(key)?;
    match place.ledger(true)?.sign_proposal(proposal, &key) {
        Ok(p) => {
            println!(
                "{} signed {}: signed by {}",
                key.name(),
                capfence::ledger::proposal_label(p.id),
                p.signers.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(e),
    }
}
