//! The command line's arguments: what clap parses, nothing run here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// CapFence runtime: decide agent tool calls, operate approvals, verify the audit chain.
#[derive(Parser)]
#[command(name = "capfence", version, about)]
pub struct Cli {
    /// State directory (holds ledger.db).
    #[arg(
        long,
        global = true,
        env = "CAPFENCE_STATE",
        default_value = ".capfence"
    )]
    pub state: PathBuf,
    /// The ledger as a URL instead: `postgres://user@host/db` for a
    /// PostgreSQL server every agent host shares (overrides --state).
    #[arg(long, global = true, env = "CAPFENCE_STORE", value_name = "URL")]
    pub store: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Decide events read as JSON lines on stdin, with approvals and audit; one verdict JSON line out each.
    Decide {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Write a signed checkpoint every N records (needs
        /// --checkpoint-dir and --checkpoint-key).
        #[arg(long, value_name = "N", requires_all = ["checkpoint_dir", "checkpoint_key"])]
        checkpoint_every: Option<u64>,
        /// Where checkpoints go (`checkpoint-<size>`).
        #[arg(long, value_name = "DIR", requires = "checkpoint_every")]
        checkpoint_dir: Option<PathBuf>,
        /// The key that signs them.
        #[arg(long, value_name = "FILE", requires = "checkpoint_every")]
        checkpoint_key: Option<PathBuf>,
    },
    /// Serve the operator console: held payments in a browser, approved with
    /// the operator's own key (docs/console.md).
    Serve {
        /// The policy file (its `approvers:` may sign in).
        #[arg(long)]
        policy: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// The certificate chain (PEM) for TLS.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Allow plain HTTP on an address that is not loopback.
        #[arg(long)]
        insecure_http: bool,
        /// POST a notification to URL for each ticket and grant event
        /// (repeatable; docs/console.md).
        #[arg(long, value_name = "URL")]
        notify: Vec<String>,
        /// Sign each notification with HMAC-SHA256 under the key in FILE
        /// (`CapFence-Signature` header).
        #[arg(long, value_name = "FILE", requires = "notify")]
        notify_secret_file: Option<PathBuf>,
        /// `json` (CapFence's object) or `slack` (an incoming-webhook message).
        #[arg(long, default_value = "json", value_parser = ["json", "slack"], requires = "notify")]
        notify_format: String,
        /// The console's address as receivers should link to it (default:
        /// the address it listens on).
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
        /// Show the newest checkpoint in DIR (`checkpoint-<size>`, as
        /// `decide --checkpoint-dir` writes them) on the chain page, held to
        /// the ledger.
        #[arg(long, value_name = "DIR")]
        checkpoint_dir: Option<PathBuf>,
        /// The agents that may call `POST /v1/decide` (`capfence agents
        /// new` prints each line; mode 0600).
        #[arg(long, value_name = "FILE")]
        agents: Option<PathBuf>,
        /// Front the MCP server at URL as `/mcp/NAME` (streamable HTTP;
        /// repeatable): every tools/call is decided as the agent whose
        /// token comes with it (docs/mcp.md).
        #[arg(long, value_name = "NAME=URL")]
        mcp: Vec<String>,
        /// The environment of every call through `/mcp/NAME`.
        #[arg(long, default_value = "production", requires = "mcp")]
        mcp_environment: String,
        /// The risk of every call through `/mcp/NAME` (low, medium, high,
        /// critical).
        #[arg(long, default_value = "low", value_parser = parse_risk, requires = "mcp")]
        mcp_risk: capfence::Risk,
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
        #[arg(long, default_value = "low", value_parser = parse_risk)]
        risk: capfence::Risk,
        /// Drop from tools/list the tools the policy denies this agent for every input.
        #[arg(long)]
        hide_denied: bool,
        /// The MCP server's command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        server: Vec<std::ffi::OsString>,
    },
    /// Record what became of an authorized call: `outcome SEQ executed
    /// --reference ID [--amount X]` or `outcome SEQ failed --error TEXT`
    /// (SEQ: the verdict's `seq`).
    Outcome {
        /// The decision's record (the verdict's `seq`).
        seq: u64,
        /// `executed` or `failed`.
        #[arg(value_parser = ["executed", "failed"])]
        outcome: String,
        /// The policy in force: its velocity windows count what moved.
        #[arg(long)]
        policy: PathBuf,
        /// The payment rail's reference of the movement (executed).
        #[arg(long, value_name = "ID", conflicts_with = "error")]
        reference: Option<String>,
        /// The amount actually sent, when it is not the decided one (executed; exact).
        #[arg(long, value_name = "AMOUNT", conflicts_with = "error")]
        amount: Option<String>,
        /// What went wrong (failed).
        #[arg(long, value_name = "TEXT")]
        error: Option<String>,
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
        /// A checkpoint (`audit checkpoint`): its signatures are checked
        /// against the policy's approvers and witnesses (needs --policy) and the ledger
        /// must still hold its records, with its root at its size.
        #[arg(long, value_name = "FILE", requires = "policy")]
        checkpoint: Option<PathBuf>,
    },
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The ledger's active policy: show it, or activate another.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Make and inspect operator keys (Ed25519) that sign approvals.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Make agent identities for the HTTP decision API (`capfence serve --agents`).
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// List tickets and grants.
    List,
    /// Approve a pending ticket.
    Approve(TicketArgs),
    /// Reject a pending ticket.
    Reject(TicketArgs),
    /// Grant an actor passage through require_approval for a while.
    Grant(GrantArgs),
    /// Revoke a grant.
    Revoke(TicketArgs),
}

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// Print a fresh token for agent NAME, alone on the first line (shown
    /// once: give it to the agent), then the line to add to the agents file.
    New {
        /// The agent's name: the actor of every call it makes.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
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
pub struct TicketArgs {
    /// The ticket (`T-1`) or grant (`G-1`).
    pub id: String,
    /// The operator's name, recorded in the audit log (only where the policy
    /// lists no approvers).
    #[arg(long)]
    pub by: Option<String>,
    /// The operator's key file: the action is signed.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The policy in force (default: the requirements the ledger noted for
    /// the ticket's policy).
    #[arg(long)]
    pub policy: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("operator").required(true).args(["granted_by", "key"])))]
pub struct GrantArgs {
    /// The actor (exact).
    #[arg(long)]
    pub actor: String,
    /// `resource.action`, or `resource.action.environment`.
    #[arg(long)]
    pub capability: String,
    /// The environment (unless the capability names it).
    #[arg(long)]
    pub environment: Option<String>,
    /// The operator's name (only where the policy lists no approvers).
    #[arg(long)]
    pub granted_by: Option<String>,
    /// The operator's key file: the grant is signed (needs --policy).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// How long: `30s`, `15m`, `2h`, `1d`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,
    /// A cap, `FIELD=VALUE` (repeatable): the grant covers only decisions
    /// whose rule compares FIELD and whose event carries FIELD <= VALUE.
    /// Needs --policy, to check that a require_approval rule compares FIELD.
    #[arg(long = "max", value_name = "FIELD=VALUE")]
    pub max: Vec<String>,
    /// The policy in force: caps are checked against it, and a signed grant
    /// is signed under it (required with --max and --key).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// How many decisions it may satisfy.
    #[arg(long)]
    pub uses: Option<u32>,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Print the active policy's digest, when and by whom it was activated,
    /// and every earlier activation.
    Show {
        /// Also print the active policy's text.
        #[arg(long)]
        text: bool,
    },
    /// Propose a policy in place of the active one: prints the proposal id,
    /// the exact diff (and which way each region moves) and how the ledger's
    /// past calls would have been decided.
    Propose {
        /// The proposed policy file.
        policy: PathBuf,
        /// Who proposes it (recorded).
        #[arg(long)]
        by: String,
        /// Replay the calls decided since this long ago (`30d`, `12h`).
        #[arg(long, default_value = "30d", value_parser = parse_duration)]
        since: Duration,
    },
    /// Sign a proposal with an approver's key (one the active policy lists
    /// for policy changes).
    Approve {
        /// The proposal (`P-1`).
        proposal: String,
        /// The approver's key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Activate a proposal (`P-1`) once enough approvers signed it and its
    /// delay passed; or a policy file by an operator's name (`--by`), only
    /// where the active policy lists no approvers.
    Activate {
        /// `P-<n>`, or a policy file.
        target: String,
        /// The operator's name, for a policy file.
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Print the last record's `SEQ HASH`.
    Head,
    /// Print every record.
    Log {
        /// One JSON object per line (docs/audit-format.md, "JSON lines").
        #[arg(long)]
        json: bool,
        /// Only the records after seq SEQ (a follower restarting from the
        /// last seq it wrote neither skips nor repeats a record).
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// After the records so far, wait for new ones and print each as it
        /// commits, until interrupted.
        #[arg(long)]
        follow: bool,
        /// Replace these payload fields by their SHA-256 (`sha256:<hex>`).
        #[arg(long, value_name = "FIELD", num_args = 1.., requires = "json")]
        redact: Vec<String>,
    },
    /// Write a signed checkpoint (C2SP tlog-checkpoint) of the ledger's
    /// Merkle tree: its size and root, signed with an operator key.
    Checkpoint {
        /// The operator key file that signs it.
        #[arg(long)]
        key: PathBuf,
        /// Where to write it (default: stdout). Never overwrites.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add a witness's signature to a checkpoint file (rewritten in place).
    Cosign {
        /// The checkpoint file.
        checkpoint: PathBuf,
        /// The witness's key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Print a record's inclusion proof (JSON) in the ledger's tree, or in
    /// a checkpoint's tree.
    Prove {
        /// The record's seq.
        seq: u64,
        /// Prove against this checkpoint's size and root.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Reconcile the ledger's executed calls with the payment rail's export
    /// (CSV): movements with no executed call, executed calls with no
    /// movement, pairs that differ. Exit 1 when any is found.
    Reconcile {
        /// The rail's export: CSV with a header.
        #[arg(long, value_name = "FILE")]
        rail: PathBuf,
        /// Column names, where they are not `reference`, `amount`,
        /// `destination`, `time`: `reference=txn_id,amount=value`.
        #[arg(long, value_name = "MAP", default_value = "")]
        columns: String,
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

/// A grant's duration: the one duration syntax of the policy language
/// (`30s`, `15m`, `2h`, `1d`; at most 366 days).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    capfence_compiler::aggregate::parse_duration(text)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            format!("`{text}` is not a duration like 30s, 15m, 2h, 1d (a whole number and one unit, at most 366d)")
        })
}

/// `--risk`: a risk level, any case.
pub fn parse_risk(risk: &str) -> Result<capfence::Risk, String> {
    capfence::Risk::parse(&risk.to_ascii_lowercase())
        .ok_or_else(|| "expected low, medium, high or critical".to_owned())
}
