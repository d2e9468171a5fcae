//! [`ActionEvent`]: the case study's event type, and the [`payload!`](crate::payload) macro.

use std::collections::BTreeMap;

use capfence_compiler::event::{Event, EventError, Value};
use capfence_compiler::policy::Risk;

/// A tool call an agent wants to make.
///
/// ```
/// use capfence::{payload, ActionEvent, Risk};
/// let event = ActionEvent::create("treasury-agent", "transfer", "payments", "production", Risk::High,
///     payload! {"amount" => "2500.00", "destination" => "vendor-7"});
/// assert_eq!(event.capability(), "payments.transfer");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEvent {
    event: Event,
}

impl ActionEvent {
    /// Builds an event in the case study's argument order: actor, action,
    /// resource, environment, risk, payload.
    pub fn create(
        actor: &str,
        action: &str,
        resource: &str,
        environment: &str,
        risk: Risk,
        payload: BTreeMap<String, Value>,
    ) -> ActionEvent {
        let mut event = Event::new(actor, resource, action, environment, risk.name());
        event.payload = payload;
        ActionEvent { event }
    }

    /// Reads an event from JSON (the format of `capfence decide` and
    /// `capfence-compile eval`).
    pub fn from_json(text: &str) -> Result<ActionEvent, EventError> {
        Event::from_json(text).map(ActionEvent::from)
    }

    /// `resource.action` (empty segments when missing).
    pub fn capability(&self) -> String {
        self.event.capability().unwrap_or_default()
    }

    /// A payload field.
    pub fn payload(&self, name: &str) -> Option<&Value> {
        self.event.payload.get(name)
    }

    /// The underlying event.
    pub fn event(&self) -> &Event {
        &self.event
    }
}

impl From<Event> for ActionEvent {
    fn from(event: Event) -> Self {
        ActionEvent { event }
    }
}

/// Builds a payload map: `payload! {"amount" => "2500.00", "destination" => "vendor-7"}`.
///
/// Values are anything that converts into a [`Value`](crate::Value): `&str`,
/// `String`, [`Decimal`](crate::Decimal), `i64`, `bool`.
#[macro_export]
macro_rules! payload {
    () => { ::std::collections::BTreeMap::<::std::string::String, $crate::Value>::new() };
    ($($key:expr => $value:expr),+ $(,)?) => {{
        let mut map = ::std::collections::BTreeMap::<::std::string::String, $crate::Value>::new();
        $( map.insert(::std::string::String::from($key), $crate::Value::from($value)); )+
        map
    }};
}
