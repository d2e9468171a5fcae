//! Umbrella package of the CapFence workspace: it owns `examples/`, `tests/` and
//! `benches/`. It has no API of its own.
