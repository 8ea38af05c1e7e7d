//! Cairn's gossip layer: LAN (and WAN) membership with SWIM, as Consul's Serf pools.
//!
//! Failure detection and dissemination are [foca](https://docs.rs/foca)'s SWIM
//! implementation; this crate adds what Consul's agents expect around it:
//!
//! ```text
//!  agent ──> Gossip (handle) ──commands──> driver task ──> GossipCore (sans-IO)
//!    ^                                       │   ^            ├─ foca (SWIM)
//!    └──── GossipEvent channel <─────────────┘   │            ├─ member table, Book
//!                                                │            └─ user event ring
//!                UDP: envelope(frame(foca packet))  TCP: envelope(frame(push/pull))
//! ```
//!
//! - [`identity`]: the foca identity (name, address, per-start generation);
//! - [`codec`]: the bounded, versioned wire format of foca's messages;
//! - [`broadcast`]: member metadata, leave intents and user events as foca custom
//!   broadcasts;
//! - [`state`]: member status and the convergent merge of member states;
//! - [`pushpull`]: the TCP full-state exchange on join and every ~30 s;
//! - [`keyring`], [`envelope`], [`frame`]: AES-GCM sealing, key rotation, replay detection;
//! - [`core`]: the sans-IO state machine tying these together;
//! - [`driver`]: the tokio driver (the owner task, timers and tasks) and the [`Gossip`]
//!   handle;
//! - [`transport`]: the driver's network behind a trait: real UDP and TCP
//!   ([`transport::NetTransport`]) or an in-memory network with seeded faults for tests
//!   ([`transport::memory::MemoryNetwork`]);
//! - [`sim`]: a deterministic in-memory network to run many cores without sockets.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_gossip::GossipError> {
//! use cairn_gossip::{Gossip, GossipConfig, GossipEvent, Keyring, UserEvent, keygen};
//!
//! let mut cfg = GossipConfig::new("node-1", "10.0.0.1:8301".parse().expect("addr"));
//! cfg.keyring = Some(Keyring::from_base64(&keygen(), &[])?);
//! let (gossip, mut events) = Gossip::start(cfg).await?;
//! gossip.join(&["10.0.0.2".to_string()]).await?; // port 8301 by default
//! gossip.fire_event(UserEvent::new("deploy", b"v2".to_vec())).await?;
//! while let Some(ev) = events.recv().await {
//!     if let GossipEvent::MemberFailed(m) = ev {
//!         println!("{} failed", m.name);
//!     }
//! }
//! gossip.leave().await?;
//! gossip.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Dependencies
//!
//! - `foca`: the SWIM protocol (with its `std` feature for `Config::new_lan`).
//! - `aes-gcm`: pure-Rust AES-GCM for packet encryption (Consul's gossip encryption).
//! - `rand` 0.10 (as `rand_010`): the RNG type foca 2 requires, nonces and key generation,
//!   the seeded generators of reproducible runs (`StdRng`).
//! - `bytes`: foca's `Codec` trait is written against `Buf`/`BufMut`.
//! - `base64`: keys are exchanged in standard base64, as `consul keygen` prints them.
//! - `uuid`: user event IDs.
//! - `thiserror`, `tracing`: typed errors and logs.
//! - `tokio`: the driver's timers and tasks, the real transport's sockets, the in-memory
//!   transport's channels and duplex streams.
//! - dev: `proptest` (merge laws, decoder robustness), `tracing-subscriber` (test logs),
//!   tokio's `test-util` (paused, virtual time).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod broadcast;
pub mod codec;
pub mod config;
pub mod core;
pub mod driver;
pub mod envelope;
pub mod frame;
pub mod identity;
pub mod keyring;
pub mod pushpull;
pub mod sim;
pub mod state;
pub mod transport;

pub use crate::broadcast::{MemberMeta, Ports, Role, UserEvent};
pub use crate::config::Timings;
pub use crate::core::{GossipCore, GossipEvent, PROTOCOL_VERSION};
pub use crate::driver::{DEFAULT_PORT, Gossip, GossipConfig, GossipError, GossipStats};
pub use crate::identity::NodeId;
pub use crate::keyring::{Key, KeyInfo, Keyring, KeyringError, keygen};
pub use crate::state::{Member, MemberStatus};
