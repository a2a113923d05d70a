//! Reaching real Lightning nodes: the BOLT #8 transport ([`noise`]). Sans-I/O like the channels:
//! the embedder owns the socket and moves bytes between it and these state machines.

pub mod noise;
