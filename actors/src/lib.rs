//! The daemon's actors: connection, IKE SA, CHILD SA, socket, kernel, control. Filled in by the daemon issue.
