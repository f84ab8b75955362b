//! Fuzz target for IKE fragment reassembly (RFC 7383).
//!
//! From `ike/fuzz` (stable toolchain, as for `decode`):
//!
//! ```sh
//! cargo fuzz run fragments -s none corpus/fragments seeds/fragments
//! ```
//!
//! The input is a sequence of fragments, each `[id][number: 2][total: 2]
//! [len]` and `len` plaintext bytes (see `ike::sa::fuzz_reassembly`),
//! offered to one reassembly slot as if their integrity had been checked.
//! Properties: nothing panics; at most 64 fragments and 64 KiB are ever
//! held; a reassembled message is exactly its fragments' bytes in order.
//! The same bytes are also decoded as a datagram, which covers the SKF
//! payload's codec.

#![no_main]

use ike::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ike::sa::fuzz_reassembly(data);
    if let Ok(m) = Message::decode(data) {
        let again = Message::decode(&m.encode()).expect("re-encoded message must decode");
        assert_eq!(again, m, "decode(encode(m)) != m");
    }
});
