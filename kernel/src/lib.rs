//! The `Dataplane` trait and its backends (xfrm, userspace, none) and the updown runner. Filled in by later issues.
