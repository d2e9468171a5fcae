//! `capfence._capfence`: the Rust core for Python. The pure-Python package
//! `capfence` (pysrc/capfence) re-exports these types.
//!
//! Money stays exact: a Python `float` is read through its shortest
//! round-trip text (`float.__repr__`), a `decimal.Decimal` and a numeric
//! `str` through their text; `bool` is never a number. Values are read from
//! what the object holds, never through a method a subclass overrides. Every Rust error is a Python
//! exception with the Rust message; nothing panics across the boundary.

// RuntimeError carries file, line and key for the message; never hot.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use capfence::ledger::TicketOutcome;
use capfence::{ActionRuntime, Event, GrantLimits, OperatorKey, Value, Verdict};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// `ty.__repr__`/`__str__` (the method of `ty` itself, not of a subclass)
/// applied to `obj`: the text of the value `obj` holds, whatever a subclass
/// overrides.
fn own_text(ty: &Bound<'_, PyAny>, method: &str, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    ty.getattr(method)?.call1((obj,))?.extract()
}

/// A payload key: a `str` (or subclass), read from its storage.
fn key_text(k: &Bound<'_, PyAny>) -> PyResult<String> {
    let key = k
        .cast::<PyString>()
        .map_err(|_| PyValueError::new_err("payload keys must be str"))?;
    Ok(key.to_cow()?.into_owned())
}

/// A Python value as a payload value. Every value is read from what the
/// object holds, never through a method a subclass can override (`__str__`,
/// `__repr__`, `__iter__`): a `str` subclass or `Enum` member with a `str`
/// mixin is its string, a `float` subclass its float, and so on.
fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = obj.py();
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: True is an int in Python, never a number here.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    // Numbers are read from their text, as event intake reads JSON numbers.
    let number_text = |text: String| match Value::String(text.clone()).as_number() {
        Some(n) => Value::Number(n),
        None => Value::BadNumber(text),
    };
    if obj.is_instance_of::<PyInt>() {
        return Ok(number_text(own_text(
            py.get_type::<PyInt>().as_any(),
            "__repr__",
            obj,
        )?));
    }
    if obj.is_instance_of::<PyFloat>() {
        // float's repr is the shortest text that reads back as the same float.
        return Ok(number_text(own_text(
            py.get_type::<PyFloat>().as_any(),
            "__repr__",
            obj,
        )?));
    }
    let decimal = py.import("decimal")?.getattr("Decimal")?;
    if obj.is_instance(&decimal)? {
        return Ok(number_text(own_text(&decimal, "__str__", obj)?));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut fields = BTreeMap::new();
        for (k, v) in d.iter() {
            fields.insert(key_text(&k)?, to_value(&v)?);
        }
        return Ok(Value::Object(fields));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list
            .iter()
            .map(|v| to_value(&v))
            .collect::<PyResult<_>>()
            .map(Value::List);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple
            .iter()
            .map(|v| to_value(&v))
            .collect::<PyResult<_>>()
            .map(Value::List);
    }
    Err(PyValueError::new_err(format!(
        "a payload value must be None, bool, int, float, decimal.Decimal, str, list or dict, not {}",
        obj.get_type().name()?
    )))
}

/// A tool call an agent wants to make.
#[pyclass(name = "ActionEvent", module = "capfence", frozen)]
struct PyActionEvent {
    event: Event,
    payload: Py<PyDict>,
}

#[pymethods]
impl PyActionEvent {
    /// `ActionEvent.create(actor=…, action=…, resource=…, environment=…, risk=…, payload={…})`.
    #[staticmethod]
    #[pyo3(signature = (*, actor, action, resource, environment = "production", risk = "low", payload = None))]
    fn create(
        py: Python<'_>,
        actor: &str,
        action: &str,
        resource: &str,
        environment: &str,
        risk: &str,
        payload: Option<Bound<'_, PyDict>>,
    ) -> PyResult<PyActionEvent> {
        let mut event = Event::new(actor, resource, action, environment, risk);
        let payload = payload.unwrap_or_else(|| PyDict::new(py));
        for (k, v) in payload.iter() {
            event.payload.insert(key_text(&k)?, to_value(&v)?);
        }
        Ok(PyActionEvent {
            event,
            payload: payload.copy()?.unbind(),
        })
    }

    /// The payload as given.
    #[getter]
    fn payload(&self, py: Python<'_>) -> Py<PyDict> {
        self.payload.clone_ref(py)
    }

    /// `resource.action`.
    #[getter]
    fn capability(&self) -> String {
        self.event.capability().unwrap_or_default()
    }
}

/// The answer for one event.
#[pyclass(name = "Verdict", module = "capfence", frozen)]
struct PyVerdict {
    #[pyo3(get)]
    authorized: bool,
    #[pyo3(get)]
    decision: String,
    #[pyo3(get)]
    reason: String,
    #[pyo3(get)]
    approval_id: Option<String>,
    #[pyo3(get)]
    rule: Option<String>,
    /// The decision's chain record (`None`: nothing was recorded); an
    /// authorized call's outcome cites it.
    #[pyo3(get)]
    seq: Option<u64>,
    /// The detail as JSON (docs/cli.md's schema); `detail` reads it.
    detail_json: String,
}

#[pymethods]
impl PyVerdict {
    /// Why, in fields: a dict with the schema of `capfence decide`'s
    /// `detail` (decimals are strings, times RFC 3339 UTC).
    #[getter]
    fn detail<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (self.detail_json.as_str(),))
    }

    fn __repr__(&self) -> String {
        format!(
            "Verdict(authorized={}, decision={:?}, reason={:?}, approval_id={:?}, rule={:?})",
            if self.authorized { "True" } else { "False" },
            self.decision,
            self.reason,
            self.approval_id,
            self.rule
        )
    }
}

impl From<Verdict> for PyVerdict {
    fn from(v: Verdict) -> PyVerdict {
        let detail_json = v
            .to_value()
            .get("detail")
            .map(|d| d.to_string())
            .unwrap_or_else(|| r#"{"cause":"unrecorded"}"#.to_owned());
        PyVerdict {
            authorized: v.authorized,
            decision: v.decision.as_str().to_owned(),
            reason: v.reason,
            approval_id: v.approval_id,
            rule: v.rule,
            seq: v.seq,
            detail_json,
        }
    }
}

// One exception per kind of fault, under `capfence.CapFenceError` (itself a
// `RuntimeError`, so code that caught that still does).
pyo3::create_exception!(
    capfence,
    CapFenceError,
    PyRuntimeError,
    "Every error CapFence raises (a RuntimeError)."
);
pyo3::create_exception!(
    capfence,
    PolicyError,
    CapFenceError,
    "The policy does not load, or an approver's key in it is unusable."
);
pyo3::create_exception!(
    capfence,
    StorageError,
    CapFenceError,
    "The ledger could not be read or written; nothing was done."
);
pyo3::create_exception!(
    capfence,
    OperatorRefused,
    CapFenceError,
    "An operator action was refused: a signature is needed, the key may not sign for the rule, or the approver signed already. Nothing was recorded."
);
pyo3::create_exception!(
    capfence,
    NotFound,
    CapFenceError,
    "No ticket or grant with that id."
);
pyo3::create_exception!(
    capfence,
    InvalidState,
    CapFenceError,
    "The ticket is not pending or has expired, or the grant was revoked already."
);
pyo3::create_exception!(
    capfence,
    InvalidArgument,
    CapFenceError,
    "An argument CapFence cannot use (a malformed id, capability or cap)."
);
pyo3::create_exception!(
    capfence,
    VerifyFailed,
    CapFenceError,
    "The audit chain, an approval or a window row does not verify."
);
pyo3::create_exception!(
    capfence,
    KeyFileError,
    CapFenceError,
    "An operator key file cannot be read or written (or others can read it)."
);

fn storage_error(e: &capfence::StoreError) -> PyErr {
    StorageError::new_err(e.to_string())
}

fn runtime_error(e: capfence::RuntimeError) -> PyErr {
    match &e {
        capfence::RuntimeError::Storage(s) => storage_error(s),
        _ => PolicyError::new_err(e.to_string()),
    }
}

fn operator_error(e: capfence::OperatorError) -> PyErr {
    use capfence::OperatorError as E;
    match &e {
        E::NotFound { .. } => NotFound::new_err(e.to_string()),
        E::NotPending { .. } | E::Expired(_) | E::AlreadyRevoked { .. } => {
            InvalidState::new_err(e.to_string())
        }
        E::Invalid(
            capfence::ledger::Invalid::ProposalUnsigned { .. }
            | capfence::ledger::Invalid::ProposalDelayed { .. }
            | capfence::ledger::Invalid::ProposalDone(_)
            | capfence::ledger::Invalid::ProposalStale { .. }
            | capfence::ledger::Invalid::AlreadySigned { .. }
            | capfence::ledger::Invalid::AlreadyActive(_),
        ) => InvalidState::new_err(e.to_string()),
        E::Invalid(_) | E::Caps(_) => InvalidArgument::new_err(e.to_string()),
        E::Refused(_) => OperatorRefused::new_err(e.to_string()),
        E::Store(s) => storage_error(s),
    }
}

fn outcome_error(e: capfence::OutcomeError) -> PyErr {
    use capfence::OutcomeError as E;
    match &e {
        E::NoSuchRecord(_) => NotFound::new_err(e.to_string()),
        E::NotAuthorized { .. } | E::AlreadyRecorded { .. } | E::NotActive { .. } => {
            InvalidState::new_err(e.to_string())
        }
        E::Invalid(_) => InvalidArgument::new_err(e.to_string()),
        E::Store(s) => storage_error(s),
    }
}

fn verify_error(e: capfence::VerifyError) -> PyErr {
    match &e {
        capfence::VerifyError::Store(s) => storage_error(s),
        _ => VerifyFailed::new_err(e.to_string()),
    }
}

fn key_error(e: capfence::signing::KeyError) -> PyErr {
    KeyFileError::new_err(e.to_string())
}

/// Decides events against a policy, with approvals and the audit chain.
#[pyclass(name = "ActionRuntime", module = "capfence", frozen)]
struct PyRuntime {
    runtime: ActionRuntime,
}

#[pymethods]
impl PyRuntime {
    /// `ActionRuntime.from_policy(path, state_dir=None, store=None)`: state
    /// in `.capfence` unless given; `store="postgres://…"` for a PostgreSQL
    /// ledger every agent host shares.
    #[staticmethod]
    #[pyo3(signature = (path, state_dir = None, store = None))]
    fn from_policy(
        py: Python<'_>,
        path: PathBuf,
        state_dir: Option<PathBuf>,
        store: Option<String>,
    ) -> PyResult<PyRuntime> {
        let builder = ActionRuntime::builder(&path);
        let builder = match (state_dir, store) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err("give state_dir or store, not both"));
            }
            (Some(dir), None) => builder.state_dir(dir),
            (None, Some(url)) => builder.store_url(url),
            (None, None) => builder,
        };
        let runtime = py.detach(|| builder.build()).map_err(runtime_error)?;
        Ok(PyRuntime { runtime })
    }

    /// Decides `event` and records it; the GIL is released while the
    /// durable commit is awaited, so threads share the group commit.
    fn execute(&self, py: Python<'_>, event: &PyActionEvent) -> PyVerdict {
        let e = &event.event;
        py.detach(|| self.runtime.execute_event(e)).into()
    }

    /// The case study's approval engine.
    #[getter]
    fn _approval_engine(&self) -> PyApprovalEngine {
        PyApprovalEngine {
            runtime: self.runtime.clone(),
        }
    }

    /// Approves a pending ticket (`T-…`) as `by`.
    fn approve(&self, py: Python<'_>, ticket: &str, by: &str) -> PyResult<()> {
        py.detach(|| self.runtime.approve(ticket, by))
            .map(|_| ())
            .map_err(operator_error)
    }

    /// Rejects a pending ticket as `by`.
    fn reject(&self, py: Python<'_>, ticket: &str, by: &str) -> PyResult<()> {
        py.detach(|| self.runtime.reject(ticket, by))
            .map(|_| ())
            .map_err(operator_error)
    }

    /// Records what became of the authorized call whose verdict had `seq`:
    /// `outcome="executed"` (with the rail's `reference` and the `amount`
    /// sent when it is not the decided one: int, Decimal or numeric str) or
    /// `"failed"` (with `error`). Returns the outcome record's seq. A failed
    /// call releases what it held in velocity windows.
    #[pyo3(signature = (seq, outcome, *, reference = None, amount = None, error = None))]
    fn record_outcome(
        &self,
        py: Python<'_>,
        seq: u64,
        outcome: &str,
        reference: Option<String>,
        amount: Option<Bound<'_, PyAny>>,
        error: Option<String>,
    ) -> PyResult<u64> {
        let outcome = match outcome {
            "executed" => {
                if error.is_some() {
                    return Err(PyValueError::new_err("an executed outcome has no error"));
                }
                let amount = match amount {
                    Some(a) if a.is_instance_of::<pyo3::types::PyFloat>() => {
                        return Err(PyValueError::new_err(
                            "the amount sent must be exact: an int, a Decimal or a numeric str, not a float",
                        ));
                    }
                    Some(a) => Some(to_value(&a)?.as_number().ok_or_else(|| {
                        PyValueError::new_err(
                            "the amount sent must be an exact number (int, Decimal or numeric str)",
                        )
                    })?),
                    None => None,
                };
                capfence::Outcome::Executed { reference, amount }
            }
            "failed" => match (error, reference, amount) {
                (Some(error), None, None) => capfence::Outcome::Failed { error },
                (None, _, _) => return Err(PyValueError::new_err("a failed outcome needs error=")),
                _ => {
                    return Err(PyValueError::new_err(
                        "a failed outcome has no reference or amount",
                    ));
                }
            },
            other => {
                return Err(PyValueError::new_err(format!(
                    "outcome is \"executed\" or \"failed\", not {other:?}"
                )));
            }
        };
        py.detach(|| self.runtime.record_outcome(seq, &outcome))
            .map(|record| record.seq)
            .map_err(outcome_error)
    }

    /// Revokes a grant (`G-…`) as `by`.
    fn revoke(&self, py: Python<'_>, grant: &str, by: &str) -> PyResult<()> {
        py.detach(|| self.runtime.revoke(grant, by))
            .map(|_| ())
            .map_err(operator_error)
    }

    /// Approves a pending ticket with an operator key: the outcome says how
    /// many of the rule's approvers have signed.
    fn approve_with_key(
        &self,
        py: Python<'_>,
        ticket: &str,
        key: &PyOperatorKey,
    ) -> PyResult<PyTicketOutcome> {
        py.detach(|| self.runtime.approve(ticket, &key.key))
            .map(PyTicketOutcome::from)
            .map_err(operator_error)
    }

    /// Rejects a pending ticket with an operator key.
    fn reject_with_key(
        &self,
        py: Python<'_>,
        ticket: &str,
        key: &PyOperatorKey,
    ) -> PyResult<PyTicketOutcome> {
        py.detach(|| self.runtime.reject(ticket, &key.key))
            .map(PyTicketOutcome::from)
            .map_err(operator_error)
    }

    /// Revokes a grant with an operator key.
    fn revoke_with_key(&self, py: Python<'_>, grant: &str, key: &PyOperatorKey) -> PyResult<()> {
        py.detach(|| self.runtime.revoke(grant, &key.key))
            .map(|_| ())
            .map_err(operator_error)
    }

    /// A grant for (actor, capability, environment), by name (`granted_by`)
    /// or signed (`key`), capped in payload fields (`caps={"amount": "1000"}`)
    /// and in uses; the grant id (`G-…`).
    #[pyo3(signature = (*, actor, capability, environment, duration_seconds, granted_by = None, key = None, caps = None, uses = None))]
    #[allow(clippy::too_many_arguments)]
    fn grant(
        &self,
        py: Python<'_>,
        actor: &str,
        capability: &str,
        environment: &str,
        duration_seconds: u64,
        granted_by: Option<&str>,
        key: Option<&PyOperatorKey>,
        caps: Option<Bound<'_, PyDict>>,
        uses: Option<u32>,
    ) -> PyResult<String> {
        let mut limits = GrantLimits {
            uses,
            ..GrantLimits::default()
        };
        for (field, max) in caps.iter().flat_map(|d| d.iter()) {
            let field: String = field
                .extract()
                .map_err(|_| PyValueError::new_err("a cap's field must be a str"))?;
            let max = to_value(&max)?.as_number().ok_or_else(|| {
                PyValueError::new_err(format!(
                    "the cap on `{field}` must be an exact number (int, float, Decimal or numeric str)"
                ))
            })?;
            limits = limits.cap(&field, max);
        }
        let duration = Duration::from_secs(duration_seconds);
        let granted = py.detach(|| match (granted_by, key) {
            (Some(by), None) => {
                Ok(self
                    .runtime
                    .grant(actor, capability, environment, by, duration, limits))
            }
            (None, Some(key)) => {
                Ok(self
                    .runtime
                    .grant(actor, capability, environment, &key.key, duration, limits))
            }
            _ => Err("give exactly one of granted_by and key"),
        });
        granted
            .map_err(PyValueError::new_err)?
            .map(|g| capfence::GrantId(g.id).to_string())
            .map_err(operator_error)
    }

    /// Verifies the audit chain: `(records, head hash)`; raises on a fault.
    fn verify(&self, py: Python<'_>) -> PyResult<(u64, String)> {
        py.detach(|| self.runtime.verify()).map_err(verify_error)
    }

    /// The digest of the policy the ledger holds active (`None` before the
    /// first decision on a fresh ledger).
    fn active_policy(&self, py: Python<'_>) -> PyResult<Option<String>> {
        py.detach(|| self.runtime.ledger().active_policy())
            .map(|a| a.map(|a| a.digest))
            .map_err(|e| storage_error(&e))
    }

    /// Proposes the policy file at `path` in place of the active one, by
    /// `by`: the proposal's id (`P-1`).
    fn propose_policy(&self, py: Python<'_>, path: PathBuf, by: &str) -> PyResult<String> {
        let policy =
            capfence::Policy::load(&path).map_err(|e| PolicyError::new_err(e.to_string()))?;
        py.detach(|| self.runtime.ledger().propose(&policy, by))
            .map(|p| capfence::ledger::proposal_label(p.proposal.id))
            .map_err(operator_error)
    }

    /// Signs proposal `proposal` with `key` (an approver the active policy
    /// names for policy changes).
    fn sign_policy(&self, py: Python<'_>, proposal: &str, key: &PyOperatorKey) -> PyResult<()> {
        py.detach(|| self.runtime.ledger().sign_proposal(proposal, &key.key))
            .map(|_| ())
            .map_err(operator_error)
    }

    /// Activates proposal `proposal` once the active policy's quorum has
    /// signed and its delay passed: the new active digest.
    fn activate_policy(&self, py: Python<'_>, proposal: &str) -> PyResult<String> {
        py.detach(|| self.runtime.ledger().activate_proposal(proposal))
            .map(|a| a.digest)
            .map_err(operator_error)
    }
}

/// An operator's Ed25519 signing key and name.
#[pyclass(name = "OperatorKey", module = "capfence", frozen)]
struct PyOperatorKey {
    key: OperatorKey,
}

#[pymethods]
impl PyOperatorKey {
    /// A new key for `name` from the operating system's random source.
    #[staticmethod]
    fn generate(name: &str) -> PyResult<PyOperatorKey> {
        OperatorKey::generate(name)
            .map(|key| PyOperatorKey { key })
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Reads a key file (`capfence keys new` writes one); refuses a file
    /// others can read.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<PyOperatorKey> {
        OperatorKey::load(&path)
            .map(|key| PyOperatorKey { key })
            .map_err(key_error)
    }

    /// Writes the key to a new file readable by its owner only.
    fn write_new(&self, path: PathBuf) -> PyResult<()> {
        self.key.write_new(&path).map_err(key_error)
    }

    /// The operator's name.
    #[getter]
    fn name(&self) -> &str {
        self.key.name()
    }

    /// The public key as a policy lists it (`ed25519:…`).
    #[getter]
    fn public_key(&self) -> String {
        self.key.public_key()
    }

    fn __repr__(&self) -> String {
        format!(
            "OperatorKey(name={:?}, public_key={:?})",
            self.key.name(),
            self.key.public_key()
        )
    }
}

/// What a signed approval or rejection did.
#[pyclass(name = "TicketOutcome", module = "capfence", frozen, get_all)]
struct PyTicketOutcome {
    ticket: String,
    status: String,
    approvals: Vec<String>,
    needed: u32,
}

impl From<TicketOutcome> for PyTicketOutcome {
    fn from(o: TicketOutcome) -> PyTicketOutcome {
        PyTicketOutcome {
            ticket: capfence::TicketId(o.ticket.id).to_string(),
            status: o.ticket.status.as_str().to_owned(),
            approvals: o.approvals,
            needed: o.needed,
        }
    }
}

#[pymethods]
impl PyTicketOutcome {
    fn __repr__(&self) -> String {
        format!(
            "TicketOutcome(ticket={:?}, status={:?}, approvals={:?}, needed={})",
            self.ticket, self.status, self.approvals, self.needed
        )
    }
}

/// `runtime._approval_engine`, as the case study calls it.
#[pyclass(name = "ApprovalEngine", module = "capfence", frozen)]
struct PyApprovalEngine {
    runtime: ActionRuntime,
}

#[pymethods]
impl PyApprovalEngine {
    /// Grants `actor` passage through require_approval for
    /// `capability` = `resource.action.environment`, for a while; the grant id.
    #[pyo3(signature = (*, actor, capability, granted_by, duration_seconds))]
    fn grant_capability(
        &self,
        py: Python<'_>,
        actor: &str,
        capability: &str,
        granted_by: &str,
        duration_seconds: u64,
    ) -> PyResult<String> {
        py.detach(|| {
            self.runtime.grant_capability(
                actor,
                capability,
                granted_by,
                Duration::from_secs(duration_seconds),
            )
        })
        .map(|g| capfence::GrantId(g.id).to_string())
        .map_err(operator_error)
    }
}

#[pymodule]
fn _capfence(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRuntime>()?;
    m.add_class::<PyActionEvent>()?;
    m.add_class::<PyVerdict>()?;
    m.add_class::<PyApprovalEngine>()?;
    m.add_class::<PyOperatorKey>()?;
    m.add_class::<PyTicketOutcome>()?;
    let py = m.py();
    m.add("CapFenceError", py.get_type::<CapFenceError>())?;
    m.add("PolicyError", py.get_type::<PolicyError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("OperatorRefused", py.get_type::<OperatorRefused>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("InvalidState", py.get_type::<InvalidState>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("VerifyFailed", py.get_type::<VerifyFailed>())?;
    m.add("KeyFileError", py.get_type::<KeyFileError>())?;
    Ok(())
}
