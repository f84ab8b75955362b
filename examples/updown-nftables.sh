#!/bin/sh
# updown-nftables.sh: an example vpnd updown script for nftables.
#
# vpnd runs its updown script the way strongSwan's updown plugin does: when a
# CHILD SA comes up or goes down (not on rekey), once for every pair of local
# and remote traffic selectors, with the PLUTO_* variables below. Install it
# executable (chmod 755) and name it in the connection's `updown` setting.
# vpnd runs it directly (no shell in between) with only PATH and PLUTO_* set,
# stdin from /dev/null; stdout is logged at info, stderr at warn; it is
# killed after 10 s. Anything it starts in the background must redirect its
# output, or the run counts as timed out.
#
# What it does: on up it adds accept rules for the tunnelled traffic
#   PLUTO_PEER_CLIENT -> PLUTO_MY_CLIENT  arriving through this CHILD SA
#                                         (`ipsec in reqid PLUTO_REQID`)
#   PLUTO_MY_CLIENT -> PLUTO_PEER_CLIENT  leaving through it
#                                         (`ipsec out reqid PLUTO_REQID`)
# to table `inet vpnd`: chain `forward` for *-client verbs (subnets behind
# the gateways), chains `input` and `output` for *-host verbs (the selector
# is this host's own address). On down it deletes them. It is idempotent:
# every rule carries a comment naming the CHILD SA, its reqid and the
# selector pair; up replaces rules with the same comment, down deletes them,
# and deleting what is not there is not an error.
#
# Missing chains are created with policy accept, so out of the box the rules
# only count traffic. To make them a filter, create the table yourself
# before vpnd starts, e.g. in /etc/nftables.conf:
#
#   table inet vpnd {
#     chain forward {
#       type filter hook forward priority filter; policy drop;
#       ct state established,related accept
#       # ... your other forwarding rules; the script appends its own.
#     }
#   }
#
# The script never changes an existing chain's policy. (An accept in one
# base chain does not override a drop in another table's chain hooked at
# the same point: keep your forwarding policy in this table, or accept
# `meta ipsec exists` traffic there.)
#
# Variables used (set by vpnd, strongSwan's names and formats):
#   PLUTO_VERSION        interface version, 1.1
#   PLUTO_VERB           up-client, down-client, up-host, down-host;
#                        "-v6" appended for IPv6 (up-client-v6, ...)
#   PLUTO_CONNECTION     the CHILD SA's (config) name
#   PLUTO_REQID          the reqid of the CHILD SA's policies
#   PLUTO_ME, PLUTO_PEER our and the peer's IKE address
#   PLUTO_MY_CLIENT      local selector as net/prefix (198.19.1.0/24; a host
#                        is addr/32 or addr/128)
#   PLUTO_PEER_CLIENT    remote selector, likewise
#   PLUTO_MY_PROTOCOL, PLUTO_PEER_PROTOCOL
#                        IP protocol number, 0 = any
#   PLUTO_MY_PORT, PLUTO_PEER_PORT
#                        port, 0 = any, or a range "from:to"; for ICMP the
#                        message type (MY) and code (PEER)
# Also set, not used here: PLUTO_INTERFACE (always "unknown"), PLUTO_PROTO
# (esp), PLUTO_UNIQUEID, PLUTO_MY_ID, PLUTO_PEER_ID, and when applicable
# PLUTO_UDP_ENC (peer's NAT-T port), PLUTO_MARK_IN/OUT (value/mask),
# PLUTO_IF_ID_IN/OUT.

set -u

NFT=nft
FAMILY_TABLE="inet vpnd"
DEFAULT_POLICY=accept

log() { echo "updown-nftables: $*"; }
fail() {
	echo "updown-nftables: $*" >&2
	exit 1
}

case "${PLUTO_VERSION:-}" in
1.*) ;;
*) fail "unknown interface version '${PLUTO_VERSION:-}'" ;;
esac

verb=${PLUTO_VERB:?PLUTO_VERB is not set}
case "$verb" in
*-v6)
	ipfam=ip6
	verb=${verb%-v6}
	;;
*) ipfam=ip ;;
esac
case "$verb" in
up-client | down-client)
	in_chain=forward
	out_chain=forward
	;;
up-host | down-host)
	in_chain=input
	out_chain=output
	;;
prepare-*)
	# Not sent by vpnd; kept for scripts shared with other daemons.
	exit 0
	;;
*) fail "unknown verb '$PLUTO_VERB'" ;;
esac

my_client=${PLUTO_MY_CLIENT:?}
peer_client=${PLUTO_PEER_CLIENT:?}
reqid=${PLUTO_REQID:?}
case "$reqid" in '' | *[!0-9]*) fail "bad PLUTO_REQID '$reqid'" ;; esac

# The rules' comment: no spaces or quotes, at most 128 bytes (nft's limit).
name=$(printf '%s' "${PLUTO_CONNECTION:-}" | tr -c 'A-Za-z0-9_.-' '_' | cut -c1-48)
pair=$(printf '%s %s %s %s %s %s' "$my_client" "$peer_client" \
	"${PLUTO_MY_PROTOCOL:-0}" "${PLUTO_MY_PORT:-0}" \
	"${PLUTO_PEER_PROTOCOL:-0}" "${PLUTO_PEER_PORT:-0}" | cksum | cut -d' ' -f1)
tag="vpnd:$name:$reqid:$pair"

# Protocol and port matches for traffic from side $1 to side $2 ("my" or
# "peer"); empty when the selectors allow any protocol.
l4match() {
	proto=${PLUTO_MY_PROTOCOL:-0}
	[ "$proto" = 0 ] && proto=${PLUTO_PEER_PROTOCOL:-0}
	[ "$proto" = 0 ] && return 0
	m="meta l4proto $proto"
	case "$proto" in
	1 | 58)
		# ICMP "ports" are type/code; match the protocol only.
		echo "$m"
		return 0
		;;
	esac
	if [ "$1" = my ]; then
		sport=${PLUTO_MY_PORT:-0} dport=${PLUTO_PEER_PORT:-0}
	else
		sport=${PLUTO_PEER_PORT:-0} dport=${PLUTO_MY_PORT:-0}
	fi
	[ "$sport" != 0 ] && m="$m th sport $(echo "$sport" | tr ':' '-')"
	[ "$dport" != 0 ] && m="$m th dport $(echo "$dport" | tr ':' '-')"
	echo "$m"
}

# Handles of the rules in chain $1 whose comment is exactly $2.
handles() {
	$NFT -a list chain $FAMILY_TABLE "$1" 2>/dev/null |
		awk -v c="comment \"$2\"" 'index($0, c) && $(NF-1) == "handle" { print $NF }'
}

# Print "delete rule" commands for our rules with comment $2 in chain $1.
deletions() {
	for h in $(handles "$1" "$2"); do
		echo "delete rule $FAMILY_TABLE $1 handle $h"
	done
}

ensure_chain() {
	$NFT list chain $FAMILY_TABLE "$1" >/dev/null 2>&1 && return 0
	$NFT add table $FAMILY_TABLE || fail "cannot create table $FAMILY_TABLE"
	$NFT "add chain $FAMILY_TABLE $1 { type filter hook $1 priority filter; policy $DEFAULT_POLICY; }" ||
		fail "cannot create chain $FAMILY_TABLE $1"
}

batch=$(
	# Whatever the verb: first remove what an earlier run left.
	deletions "$in_chain" "$tag-in"
	deletions "$out_chain" "$tag-out"
	case "$verb" in
	up-*)
		echo "add rule $FAMILY_TABLE $in_chain $ipfam saddr $peer_client $ipfam daddr $my_client" \
			"$(l4match peer my) ipsec in reqid $reqid counter accept comment \"$tag-in\""
		echo "add rule $FAMILY_TABLE $out_chain $ipfam saddr $my_client $ipfam daddr $peer_client" \
			"$(l4match my peer) ipsec out reqid $reqid counter accept comment \"$tag-out\""
		;;
	esac
)

case "$verb" in
up-*)
	ensure_chain "$in_chain"
	ensure_chain "$out_chain"
	;;
esac

if [ -n "$batch" ]; then
	printf '%s\n' "$batch" | $NFT -f - || fail "nft failed for $PLUTO_VERB $my_client <-> $peer_client"
fi
case "$verb" in
up-*) log "$PLUTO_VERB: accepting $peer_client <-> $my_client (reqid $reqid) in $FAMILY_TABLE $in_chain/$out_chain" ;;
*) log "$PLUTO_VERB: removed rules for $peer_client <-> $my_client (reqid $reqid)" ;;
esac
exit 0
