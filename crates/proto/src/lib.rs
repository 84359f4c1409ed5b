//! SyncML DM 1.2 representation: the message model, its XML and WBXML codecs,
//! authentication, status and alert codes, and the package-0 notification.
//!
//! Everything here is pure: no I/O, no clock, no randomness. Callers pass in the
//! nonces and bytes they want used.

pub mod auth;
pub mod codec;
pub mod codes;
mod grammar;
pub mod model;
pub mod package0;
mod tags;
pub mod tnds;
pub mod wbxml;
pub mod xml;

pub use codec::{CodecError, Encoding};
pub use model::*;
