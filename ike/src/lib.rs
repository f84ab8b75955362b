
pub mod crypto;
pub mod wire;
pub mod proposal;
pub mod auth;
pub mod config;
pub mod keys;
pub mod sa;
pub mod testing;
pub mod ts;
