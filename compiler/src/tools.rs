//! MCP tool names to capabilities (the policy's `tools:` map), for the
//! gateway.

use crate::policy::Policy;

impl Policy {
    /// The capability an MCP tool's calls exercise: the `tools:` entry (exact
    /// name), else `mcp.<tool>` when that is a capability and the name is not
    /// a case variant of a mapped tool, else `None` (the call is malformed).
    pub fn tool_capability(&self, tool: &str) -> Option<String> {
        if let Some((_, capability)) = self.tools.iter().find(|(name, _)| name == tool) {
            return Some(capability.clone());
        }
        // A case variant of a mapped tool is refused rather than decided as
        // `mcp.<tool>`: a server that matches names loosely would run the
        // mapped tool under another capability.
        if self
            .tools
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(tool))
        {
            return None;
        }
        crate::token::is_segment(tool).then(|| format!("mcp.{}", tool.to_ascii_lowercase()))
    }
}
