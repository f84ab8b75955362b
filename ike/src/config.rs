//! What an IKE SA needs to know of its connection: identities, the PSK,
//! proposals, CHILD SA templates and retransmission policy. The daemon builds
//! these from its configuration; this crate never reads files.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::proposal::ProposalSpec;
use crate::wire::{IdType, Identification, TrafficSelector};

/// CHILD SA mode (RFC 4301).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Tunnel,
    Transport,
}

/// A CHILD SA template of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildConfig {
    pub name: String,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub esp_proposals: Vec<ProposalSpec>,
    pub mode: Mode,
    /// Insist on PFS when `esp_proposals` name a group: refuse a
    /// CREATE_CHILD_SA without KE, never fall back to a rekey without
    /// (strongSwan's and Libreswan's behaviour). `false`: PFS is proposed,
    /// and dropped for a peer that refuses it.
    pub pfs_required: bool,
}

/// Request retransmission (RFC 7296 §2.1): the first retransmission after
/// `timeout`, each later one after twice the previous wait, capped at
/// `max_timeout`; after `tries` retransmissions the exchange fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmit {
    pub timeout: Duration,
    pub tries: u32,
    pub max_timeout: Duration,
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit {
            timeout: Duration::from_secs(2),
            tries: 5,
            max_timeout: Duration::from_secs(60),
        }
    }
}

impl Retransmit {
    /// How long to wait after transmission number `sent` (0 = the original).
    pub fn wait_after(&self, sent: u32) -> Duration {
        let factor = 1u32.checked_shl(sent.min(31)).unwrap_or(u32::MAX);
        self.timeout.saturating_mul(factor).min(self.max_timeout)
    }
}

/// A pre-shared key; zeroized on drop and never printed.
#[derive(Clone)]
pub struct Psk(pub Zeroizing<Vec<u8>>);

impl Psk {
    pub fn new(secret: impl Into<Vec<u8>>) -> Psk {
        Psk(Zeroizing::new(secret.into()))
    }
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

/// One connection as an IKE SA sees it.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The connection's name, for events and logs.
    pub name: String,
    pub local_id: Identification,
    /// `None` accepts any identity (`%any`).
    pub remote_id: Option<Identification>,
    /// `None` when no secret is configured: authentication then fails with a
    /// message saying so.
    pub psk: Option<Psk>,
    /// Certificate authentication (`auth = pubkey`); when set it is used
    /// instead of `psk`.
    pub pubkey: Option<Arc<crate::pki::PubkeyAuth>>,
    pub ike_proposals: Vec<ProposalSpec>,
    pub children: Vec<ChildConfig>,
    /// Force UDP encapsulation by faking a NAT (strongSwan `encap = yes`).
    pub encap: bool,
    pub retransmit: Retransmit,
    /// Send INITIAL_CONTACT in IKE_AUTH (the peer then drops stale SAs).
    pub initial_contact: bool,
    /// At most this many CHILD SAs on one IKE SA: past it a peer's
    /// CREATE_CHILD_SA for a new CHILD SA gets NO_ADDITIONAL_SAS (rekeys
    /// are always allowed). See [`DEFAULT_MAX_CHILD_SAS`].
    pub max_child_sas: u32,
    /// IKE fragmentation (RFC 7383): the largest IP datagram an encrypted
    /// message of ours may fill, IP and UDP headers included (as
    /// strongSwan's `fragment_size`); a longer one goes out in fragments if
    /// the peer announced support. 0 disables fragmentation (it is then not
    /// announced either). Values below [`MIN_FRAGMENT_SIZE`] count as it.
    /// See [`DEFAULT_FRAGMENT_SIZE`].
    pub fragment_size: u16,
}

/// The default of [`PeerConfig::fragment_size`], for both address families:
/// strongSwan's default, and for IPv6 exactly the minimum link MTU (so the
/// 1232-byte UDP payload of a 1280-byte IPv6 packet), a size every IPv6
/// path carries.
pub const DEFAULT_FRAGMENT_SIZE: u16 = 1280;

/// The smallest fragment size used: the IPv4 datagram every host must
/// accept (RFC 791).
pub const MIN_FRAGMENT_SIZE: u16 = 576;

/// The default of [`PeerConfig::max_child_sas`]: far more than any
/// configured set of children needs, few enough that an authenticated peer
/// cannot make an IKE SA hold thousands.
pub const DEFAULT_MAX_CHILD_SAS: u32 = 64;

impl PeerConfig {
    /// Whether proving our identity costs milliseconds rather than
    /// microseconds: an RSA signature (ECDSA, Ed25519, PSK and every DH
    /// group we support are a few hundred microseconds at most).
    pub fn signs_slowly(&self) -> bool {
        self.pubkey
            .as_ref()
            .and_then(|p| p.local.as_ref())
            .is_some_and(|l| matches!(*l.key, crate::pki::SigningKey::Rsa(_)))
    }

    /// How this connection authenticates, if it has the credentials for it.
    pub fn authenticator(&self) -> Option<Box<dyn crate::auth::Authenticator + '_>> {
        let psk = self.psk.as_ref()?;
        Some(Box::new(crate::auth::PskAuthenticator(&psk.0)))
    }

    pub fn child(&self, name: &str) -> Option<&ChildConfig> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Does this connection accept `id` as the peer's identity? A DN
    /// matches attribute by attribute, a `*` value matching any.
    pub fn matches_remote(&self, id: &Identification) -> bool {
        self.remote_id.as_ref().is_none_or(|r| {
            r == id
                || (r.id_type == IdType::ID_DER_ASN1_DN
                    && id.id_type == IdType::ID_DER_ASN1_DN
                    && crate::pki::dn_matches(&r.data, &id.data))
        })
    }
}

/// Shared handle to a connection's settings.
pub type PeerConfigRef = Arc<PeerConfig>;

/// Error parsing an identity string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid identity '{0}': {1}")]
pub struct IdParseError(pub String, pub &'static str);

/// Parse an identity as strongSwan does: an IP address → ID_IPV4/6_ADDR;
/// `@name` → ID_FQDN `name`; `@#hex` → ID_KEY_ID; `user@host` →
/// ID_RFC822_ADDR; anything else containing `=` is a DN (ID_DER_ASN1_DN,
/// "C=CH, O=strongSwan, CN=moon"); otherwise ID_FQDN.
pub fn parse_identity(s: &str) -> Result<Identification, IdParseError> {
    let bad = |why| IdParseError(s.to_string(), why);
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Identification::ip(ip));
    }
    if let Some(hex) = s.strip_prefix("@#") {
        if hex.len() % 2 != 0 || hex.is_empty() {
            return Err(bad("key id needs an even number of hex digits"));
        }
        let data = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad("key id is not hex"))?;
        return Ok(Identification {
            id_type: IdType::ID_KEY_ID,
            data,
        });
    }
    if let Some(name) = s.strip_prefix('@') {
        return Ok(Identification {
            id_type: IdType::ID_FQDN,
            data: name.as_bytes().to_vec(),
        });
    }
    if s.contains('=') {
        return Ok(Identification {
            id_type: IdType::ID_DER_ASN1_DN,
            data: crate::pki::parse_dn(s).map_err(bad)?,
        });
    }
    if s.contains('@') {
        return Ok(Identification {
            id_type: IdType::ID_RFC822_ADDR,
            data: s.as_bytes().to_vec(),
        });
    }
    Ok(Identification {
        id_type: IdType::ID_FQDN,
        data: s.as_bytes().to_vec(),
    })
}

/// Human form of an identity, as strongSwan prints it.
pub fn display_identity(id: &Identification) -> String {
    match id.id_type {
        IdType::ID_IPV4_ADDR if id.data.len() == 4 => {
            let b: [u8; 4] = id.data[..].try_into().unwrap_or([0; 4]);
            std::net::Ipv4Addr::from(b).to_string()
        }
        IdType::ID_IPV6_ADDR if id.data.len() == 16 => {
            let b: [u8; 16] = id.data[..].try_into().unwrap_or([0; 16]);
            std::net::Ipv6Addr::from(b).to_string()
        }
        IdType::ID_FQDN | IdType::ID_RFC822_ADDR => String::from_utf8_lossy(&id.data).into_owned(),
        IdType::ID_DER_ASN1_DN => crate::pki::dn_to_string(&id.data),
        _ => {
            let hex: String = id.data.iter().map(|b| format!("{b:02x}")).collect();
            format!("@#{hex}")
        }
    }
}
