//! The four engines of the peer benchmark, each with its input prepared
//! ahead of timing, as a caller that decides many events would.

use std::str::FromStr;

use capfence::{Compiled, Event, Policy};

/// The shared 1,024-event mix and the decisions Cedar, regorus and a
/// hand-written evaluator agree on.
pub fn shared_mix() -> (Vec<String>, Vec<String>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/");
    let events = std::fs::read_to_string(format!("{dir}seed_policy_events.jsonl"))
        .expect("tests/data in the repository");
    let expected = std::fs::read_to_string(format!("{dir}seed_policy_expected.txt"))
        .expect("expected decisions");
    (
        events.lines().map(str::to_owned).collect(),
        expected.lines().map(|l| l.trim().to_owned()).collect(),
    )
}

/// A fixed shuffle (Fisher-Yates, 64-bit LCG) so predictors see a stream.
pub fn shuffled<T>(mut items: Vec<T>) -> Vec<T> {
    let mut state: u64 = 0x5eed_cafe_f00d_0001;
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        items.swap(i, (state >> 33) as usize % (i + 1));
    }
    items
}

/// CapFence's reference evaluator.
pub fn reference() -> Policy {
    Policy::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policies/fintech_policy.yaml"
    ))
    .expect("policy")
}

/// A CapFence compiled table and its views.
pub struct CompiledEngine<T: Compiled> {
    /// The table.
    pub table: T,
}

impl<T: Compiled> CompiledEngine<T> {
    /// Decides a prepared view.
    pub fn decide(&self, view: &T::View) -> &'static str {
        self.table.decide_view(view).kind.as_str()
    }
}

/// Cedar with the policy of fintech.cedar.
pub struct Cedar {
    policies: cedar_policy::PolicySet,
    /// Policy id -> tier (0 deny, 1 require_approval, 2 allow), from `@id`.
    tiers: std::collections::HashMap<cedar_policy::PolicyId, u8>,
    entities: cedar_policy::Entities,
    authorizer: cedar_policy::Authorizer,
}

impl Cedar {
    /// Loads fintech.cedar.
    pub fn new() -> Cedar {
        let text = include_str!("../fintech.cedar");
        let policies = cedar_policy::PolicySet::from_str(text).expect("fintech.cedar parses");
        let tiers = policies
            .policies()
            .map(|p| {
                let name = p.annotation("id").unwrap_or_default();
                let tier = if name.starts_with("deny") {
                    0
                } else if name.starts_with("require_approval") {
                    1
                } else {
                    2
                };
                (p.id().clone(), tier)
            })
            .collect();
        Cedar {
            policies,
            tiers,
            entities: cedar_policy::Entities::empty(),
            authorizer: cedar_policy::Authorizer::new(),
        }
    }

    /// A Cedar request for a JSON event: action = the capability, context =
    /// environment, risk and the amount as a Cedar decimal (its text).
    pub fn request(event_json: &str) -> cedar_policy::Request {
        let raw: serde_json::Value = serde_json::from_str(event_json).expect("event");
        let capability = format!(
            "{}.{}",
            raw["resource"].as_str().unwrap_or(""),
            raw["action"].as_str().unwrap_or("")
        );
        let mut context = serde_json::Map::new();
        for key in ["environment", "risk"] {
            if let Some(v) = raw[key].as_str() {
                context.insert(key.to_owned(), serde_json::Value::String(v.to_owned()));
            }
        }
        if let Some(amount) = raw["payload"]["amount"].as_number() {
            context.insert(
                "amount".to_owned(),
                serde_json::json!({"__extn": {"fn": "decimal", "arg": amount.to_string()}}),
            );
        }
        let principal = cedar_policy::EntityUid::from_str(&format!(
            "Agent::{}",
            serde_json::Value::String(raw["actor"].as_str().unwrap_or("unknown").to_owned())
        ))
        .expect("principal");
        let action = cedar_policy::EntityUid::from_str(&format!(
            "Action::{}",
            serde_json::Value::String(capability)
        ))
        .expect("action");
        let resource =
            cedar_policy::EntityUid::from_str(r#"Gateway::"payments""#).expect("resource");
        let context =
            cedar_policy::Context::from_json_value(serde_json::Value::Object(context), None)
                .expect("context");
        cedar_policy::Request::new(principal, action, resource, context, None).expect("request")
    }

    /// Decides a prepared request: the highest tier among the matching permits.
    pub fn decide(&self, request: &cedar_policy::Request) -> &'static str {
        let response = self
            .authorizer
            .is_authorized(request, &self.policies, &self.entities);
        let best = response
            .diagnostics()
            .reason()
            .filter_map(|id| self.tiers.get(id).copied())
            .min();
        match best {
            Some(0) | None => "deny",
            Some(1) => "require_approval",
            Some(_) => "allow",
        }
    }
}

impl Default for Cedar {
    fn default() -> Self {
        Cedar::new()
    }
}

/// regorus with fintech.rego.
pub struct Rego {
    engine: regorus::Engine,
}

impl Rego {
    /// Loads fintech.rego.
    pub fn new() -> Rego {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(
                "fintech.rego".to_owned(),
                include_str!("../fintech.rego").to_owned(),
            )
            .expect("fintech.rego parses");
        Rego { engine }
    }

    /// The Rego input for a JSON event.
    pub fn input(event_json: &str) -> regorus::Value {
        let raw: serde_json::Value = serde_json::from_str(event_json).expect("event");
        let input = serde_json::json!({
            "capability": format!("{}.{}", raw["resource"].as_str().unwrap_or(""), raw["action"].as_str().unwrap_or("")),
            "environment": raw["environment"],
            "risk": raw["risk"],
            "amount": raw["payload"]["amount"],
        });
        regorus::Value::from_json_str(&input.to_string()).expect("input")
    }

    /// Decides a prepared input.
    pub fn decide(&mut self, input: &regorus::Value) -> String {
        self.engine.set_input(input.clone());
        let value = self
            .engine
            .eval_rule("data.capfence.decision".to_owned())
            .expect("decision");
        value
            .as_string()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "deny".to_owned())
    }
}

impl Default for Rego {
    fn default() -> Self {
        Rego::new()
    }
}

/// Parses an event for CapFence.
pub fn event(json: &str) -> Event {
    Event::from_json(json).expect("event")
}
