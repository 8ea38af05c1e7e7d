//! Cairn's gossip layer: LAN and WAN membership with SWIM (foca), encrypted packets and user
//! events. Not built yet: the agent runs a single-member pool until the gossip issue lands.

#![forbid(unsafe_code)]
