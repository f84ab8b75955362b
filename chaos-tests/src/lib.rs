//! Network-namespace labs, strongSwan interop, fault injection, soak and benchmarks. Filled in by the daemon issue.
