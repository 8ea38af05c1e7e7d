//! The DNS engine: everything between a received packet and the bytes sent back, without
//! sockets, clocks or global randomness.
//!
//! - [`settings`]: the configuration as the engine uses it;
//! - [`name`]: zones and Consul's name grammar;
//! - [`view`]: the catalog as DNS reads it, memoized per catalog index;
//! - [`resolve`]: question + view + settings -> records;
//! - [`wire`]: validation, size limits, truncation and encoding (hickory-proto);
//! - `fuzz`: the body of the fuzz target (`agent/fuzz`), kept here so that it always builds.
//!
//! Keeping I/O out is what lets the engine be fuzzed and tested byte for byte: the same
//! function answers a UDP worker, a TCP connection and a client agent's query relayed to a
//! server (`/v1/internal/dns`), and a test drives it with a seeded random source.

#[doc(hidden)]
pub mod fuzz;
pub mod name;
pub mod resolve;
pub mod settings;
pub mod view;
pub mod wire;

pub use settings::Settings;
pub use view::{Cache, View};
pub use wire::{Forward, Outcome, Transport, handle};

#[cfg(test)]
mod tests;
