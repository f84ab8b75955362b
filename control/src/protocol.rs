//! The control-socket protocol: one JSON object per line each way. A client
//! sends a `Request`; the daemon answers with one `Response` (or, for
//! `monitor`, a stream of `Event` responses until the client goes away).

use std::path::PathBuf;

use actors::status::{MonitorEvent, StatsReport, StatusReport};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case")]
pub enum Request {
    Status {
        conn: Option<String>,
        /// Also list kernel state vpnd did not install.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        kernel: bool,
    },
    Up {
        conn: String,
        child: Option<String>,
        /// Return before the result.
        #[serde(rename = "async")]
        no_wait: bool,
    },
    Down {
        conn: String,
    },
    Kill {
        conn: String,
    },
    /// Re-read the main config (or one extra file) and apply new and
    /// changed connections; unchanged ones are not touched.
    Load {
        file: Option<PathBuf>,
    },
    Stats,
    Monitor,
    /// Load one connection's definition from the configuration file(s).
    Add {
        conn: String,
    },
    Delete {
        conn: String,
    },
    Replace {
        conn: String,
    },
    Route {
        conn: String,
    },
    Unroute {
        conn: String,
    },
    /// Runtime retry tuning: `KEY=VALUE` pairs.
    Set {
        conn: String,
        settings: Vec<String>,
    },
    RereadSecrets,
    /// The loaded certificates, keys and CRLs.
    ListCerts,
    /// Re-read the main configuration and apply the difference.
    Reload {
        dry_run: bool,
    },
    Impair {
        conn: String,
        kind: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    Ok {
        message: String,
    },
    Error {
        message: String,
    },
    Status {
        status: StatusReport,
    },
    Stats {
        stats: Box<StatsReport>,
    },
    Event {
        event: MonitorEvent,
    },
    Certs {
        certs: Box<crate::certlist::CertsReport>,
    },
}

/// The `status` object of a `Response::Status` line as the daemon writes
/// it (`{"result":"status","status":{…}}`, the tag first), without
/// parsing it: `vpnctl status --json` into a pipe hands the daemon's JSON
/// on as it came, which at 10,000 tunnels saves parsing and re-printing
/// megabytes. `None` for any other line.
pub fn status_json(line: &str) -> Option<&str> {
    line.trim_end()
        .strip_prefix(r#"{"result":"status","status":"#)?
        .strip_suffix('}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_is_the_status_object_of_the_line_the_daemon_writes() {
        let status = StatusReport {
            kernel_unknown: vec!["a \"quoted\" } line".into()],
            ..StatusReport::default()
        };
        let line = serde_json::to_string(&Response::Status {
            status: status.clone(),
        })
        .unwrap()
            + "\n";
        let inner = status_json(&line).expect("a status line");
        assert_eq!(inner, serde_json::to_string(&status).unwrap());
        let back: StatusReport = serde_json::from_str(inner).unwrap();
        assert_eq!(back, status);
        let err = serde_json::to_string(&Response::Error {
            message: "no".into(),
        })
        .unwrap();
        assert_eq!(status_json(&err), None);
    }
}
