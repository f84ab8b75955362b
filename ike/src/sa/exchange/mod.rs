//! One module per IKEv2 exchange, each holding both halves of it: the
//! initiator's `start_*`/`send_*` and `handle_*_response`, and the
//! responder's `handle_*_request`, like strongSwan's task `build`/`process`
//! pairs. They are `impl IkeSa` blocks: the shell in `sa` owns the state,
//! the message layer (`sa::message`) and dispatch by exchange type.
//!
//! | module | exchange |
//! |---|---|
//! | `sa_init` | IKE_SA_INIT, COOKIE and INVALID_KE_PAYLOAD retries, NAT detection |
//! | `auth` | IKE_AUTH with PSK and the first CHILD SA |
//! | `create_child` | CREATE_CHILD_SA: new CHILD SA, CHILD rekey, collisions |
//! | `ike_rekey` | CREATE_CHILD_SA rekeying the IKE SA, collisions, retiring SAs |
//! | `informational` | INFORMATIONAL: DELETE and liveness |

pub(super) mod auth;
pub(super) mod create_child;
pub(super) mod ike_rekey;
pub(super) mod informational;
pub(super) mod pfs;
pub(super) mod sa_init;
