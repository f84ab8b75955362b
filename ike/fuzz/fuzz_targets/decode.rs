//! Fuzz target for the IKEv2 wire codec.
//!
//! Runs on the stable toolchain (no sanitizer; `cargo install cargo-fuzz
//! --locked` if needed). From `ike/fuzz`:
//!
//! ```sh
//! cargo fuzz run decode -s none -- -max_total_time=30   # empty corpus
//! cargo fuzz run decode -s none corpus/decode seeds/decode
//! ```
//!
//! or from the workspace root:
//!
//! ```sh
//! cargo fuzz run --fuzz-dir ike/fuzz decode -s none ike/fuzz/corpus/decode ike/fuzz/seeds/decode
//! ```
//!
//! libFuzzer writes new inputs into the *first* corpus directory, so name the
//! (git-ignored) `corpus/decode` first to keep `seeds/decode` pristine. The
//! seeds are valid messages: an IKE_SA_INIT request, an IKE_AUTH request with
//! an SK payload, and a message with one payload of every decoded type;
//! `ike/tests/wire.rs` checks that they decode and re-encode verbatim.
//!
//! Properties: decoding never panics; whatever decodes re-encodes to the
//! same number of bytes and decodes back to an equal value. The same for
//! `decode_payloads` with the first input byte as the first payload type.

#![no_main]

use ike::wire::{decode_payloads, encode_payloads, Message, PayloadType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let encoded = m.encode();
        assert_eq!(encoded.len(), data.len(), "re-encoding changed the size");
        let again = Message::decode(&encoded).expect("re-encoded message must decode");
        assert_eq!(again, m, "decode(encode(m)) != m");
    }
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(payloads) = decode_payloads(PayloadType(first), rest) {
            let (f, encoded) = encode_payloads(&payloads);
            assert_eq!(encoded.len(), rest.len(), "re-encoding changed the size");
            let again = decode_payloads(f, &encoded).expect("re-encoded chain must decode");
            assert_eq!(again, payloads, "decode(encode(p)) != p");
        }
    }
});
