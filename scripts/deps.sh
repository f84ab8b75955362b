# Installs what the demo and the tests need when it is absent (Debian
# packages). Sourced by scripts/demo and scripts/test-all; needs root.
deps=(
  strongswan-charon:/usr/lib/ipsec/charon
  strongswan-swanctl:/usr/sbin/swanctl
  libcharon-extra-plugins:/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so
  iproute2:/usr/sbin/ip
  nftables:/usr/sbin/nft
  iperf3:/usr/bin/iperf3
  procps:/usr/bin/pgrep
  iputils-ping:/usr/bin/ping
  user-mode-linux:/usr/bin/linux.uml
  kmod:/usr/sbin/depmod
)
missing=()
for d in "${deps[@]}"; do
  [ -e "${d#*:}" ] || missing+=("${d%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
