//! IKEv2 wire format (RFC 7296 §3): the IANA number spaces, the decoded
//! payload structures, and a strict, panic-free codec between them and bytes.

mod codec;
mod decode;
mod encode;
mod helpers;
mod types;

pub use codec::{
    decode_payloads, encode_payloads, first_unsupported_critical, try_encode_payloads, DecodeError,
    EncodeError, Message, HEADER_LEN, PAYLOAD_HEADER_LEN,
};
pub use helpers::find_notify;
pub use types::*;
