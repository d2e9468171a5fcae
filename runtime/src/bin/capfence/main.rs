//! `capfence`: the runtime's operator and sidecar command line. Parses
//! arguments and dispatches to [`cli`]'s commands, which call the library.

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

/// mimalloc, not glibc's malloc: the serve process allocates on the
/// executor's threads and frees on the commit thread, where glibc's arenas
/// cost 13 % of its CPU at 32 clients (`cargo bench --bench http`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cli::args::{AgentsCommand, AuditCommand, Cli, Command, PolicyCommand};
use cli::{Failure, Place, commands, operate, tree};

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

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let place = Place {
        state: cli.state,
        store: cli.store,
    };
    match cli.command {
        Command::Decide {
            policy,
            checkpoint_every,
            checkpoint_dir,
            checkpoint_key,
        } => {
            let checkpoints = match (checkpoint_every, checkpoint_dir, checkpoint_key) {
                (Some(every), Some(dir), Some(key)) => Some((every, dir, key)),
                _ => None,
            };
            commands::decide(&place, &policy, checkpoints)
        }
        Command::Serve {
            policy,
            listen,
            tls_cert,
            tls_key,
            insecure_http,
            notify,
            notify_secret_file,
            notify_format,
            public_url,
            checkpoint_dir,
            agents,
            mcp,
            mcp_environment,
            mcp_risk,
        } => commands::serve(
            &place,
            &policy,
            commands::ServeArgs {
                listen,
                tls: tls_cert.zip(tls_key),
                insecure_http,
                notify,
                notify_secret_file,
                slack: notify_format == "slack",
                public_url,
                checkpoint_dir,
                agents,
                mcp,
                mcp_environment,
                mcp_risk,
            },
        ),
        Command::McpProxy {
            policy,
            actor,
            environment,
            risk,
            hide_denied,
            server,
        } => commands::mcp_proxy(
            &place,
            &policy,
            capfence::mcp::ProxyOptions {
                actor,
                environment,
                risk,
                hide_denied,
                server,
            },
        ),
        Command::Approvals(cmd) => operate::approvals(&place, cmd),
        Command::Keys(cmd) => operate::keys(cmd),
        Command::Agents(AgentsCommand::New { name }) => commands::new_agent(&name),
        Command::Outcome {
            seq,
            outcome,
            policy,
            reference,
            amount,
            error,
        } => commands::outcome(
            &place,
            &policy,
            seq,
            &outcome,
            reference,
            amount.as_deref(),
            error,
        ),
        Command::Verify {
            head,
            policy,
            checkpoint,
        } => commands::verify(
            &place,
            head.as_deref(),
            policy.as_deref(),
            checkpoint.as_deref(),
        ),
        Command::Audit(AuditCommand::Head) => commands::audit_head(&place),
        Command::Audit(AuditCommand::Log {
            json,
            since,
            follow,
            redact,
        }) => commands::audit_log(
            &place,
            &commands::LogOptions {
                json,
                since: since.unwrap_or(0),
                follow,
                redact,
            },
        ),
        Command::Audit(AuditCommand::Checkpoint { key, out }) => {
            tree::checkpoint(&place, &key, out.as_deref())
        }
        Command::Audit(AuditCommand::Cosign { checkpoint, key }) => tree::cosign(&checkpoint, &key),
        Command::Audit(AuditCommand::Prove { seq, checkpoint }) => {
            tree::prove(&place, seq, checkpoint.as_deref())
        }
        Command::Audit(AuditCommand::Reconcile {
            rail,
            columns,
            format,
        }) => commands::reconcile(&place, &rail, &columns, format == "json"),
        Command::Policy(PolicyCommand::Show { text }) => operate::policy_show(&place, text),
        Command::Policy(PolicyCommand::Activate { target, by }) => {
            operate::policy_activate(&place, &target, by.as_deref())
        }
        Command::Policy(PolicyCommand::Propose { policy, by, since }) => {
            operate::policy_propose(&place, &policy, &by, since)
        }
        Command::Policy(PolicyCommand::Approve { proposal, key }) => {
            operate::policy_approve(&place, &proposal, &key)
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "capfence", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
