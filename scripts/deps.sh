# Installs what the demo or the tests need when it is absent, from Debian's
# packages. Sourced, as root:
#
#   . scripts/deps.sh demo    # scripts/demo: two vpnd gateways, ping, iperf3
#   . scripts/deps.sh test    # scripts/test-all: everything every test uses
#
# Each need is a file that the demo or a test really uses, beside the package
# that ships it: a command (looked up in PATH), an absolute path, or a glob.
# Checking files rather than package names matters: a package that was
# installed by hand earlier, or that an install skipped (recommends are not
# installed), must not hide a missing file. A package is installed when one of
# its files is missing and the package is not installed. A file missing from
# a package that *is* installed (moved away by hand, say) is not reinstalled
# behind the operator's back: `deps_missing` reports it, and scripts/preflight
# stops on it with the command that restores it.

deps_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# What the demo runs: namespaces and veths, ping, a TCP stream.
deps_demo=(
  ip:iproute2
  ping:iputils-ping
  iperf3:iperf3
)

# What the tests run, beyond the demo's needs.
deps_test=(
  /usr/lib/ipsec/charon:strongswan-charon
  swanctl:strongswan-swanctl
  # control/tests/import.rs converts Debian's own commented swanctl.conf.
  /etc/swanctl/swanctl.conf:strongswan-swanctl
  ss:iproute2
  nft:nftables
  sysctl:procps
  /usr/bin/kill:procps
  unshare:util-linux
  # control/tests/sockgroup.rs runs vpnctl as a socket_group member.
  setpriv:util-linux
  # User-Mode Linux: real kernel ESP for the kernel_esp tests.
  /usr/bin/linux.uml:user-mode-linux
  '/usr/lib/uml/modules/*/kernel/net/ipv4/esp4.ko*':user-mode-linux
  '/usr/lib/uml/modules/*/kernel/net/xfrm/xfrm_user.ko*':user-mode-linux
  '/usr/lib/uml/modules/*/kernel/drivers/net/tun.ko*':user-mode-linux
  depmod:kmod
  # A UML guest's kernel has no nftables ip family: its NAT labs masquerade
  # with x_tables.
  iptables-legacy:iptables
  # The certificate tests make their CAs and keys with openssl.
  openssl:openssl
  modprobe:kmod
  # control/tests/systemd.rs verifies the unit; xtask/tests render the man
  # pages (man -l needs nroff) and install the package with dpkg --root.
  systemd-analyze:systemd
  man:man-db
  nroff:groff-base
  dpkg-deb:dpkg
)
# Every charon plugin a lab loads (chaos-tests/charon-plugins.txt).
while read -r plugin package; do
  case $plugin in '' | '#'*) continue ;; esac
  deps_test+=("/usr/lib/ipsec/plugins/libstrongswan-$plugin.so:$package")
done <"$deps_root/chaos-tests/charon-plugins.txt"

# deps_present FILE: the need is met (command in PATH, path or glob exists).
deps_present() {
  case $1 in
    *'*'*) compgen -G "$1" >/dev/null ;;
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

# deps_installed PACKAGE: dpkg has the package installed.
deps_installed() {
  dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

# deps_missing demo|test: prints "FILE PACKAGE" for each unmet need.
deps_missing() {
  local d
  local -a needs=("${deps_demo[@]}")
  [ "$1" = test ] && needs+=("${deps_test[@]}")
  for d in "${needs[@]}"; do
    deps_present "${d%:*}" || echo "${d%:*} ${d##*:}"
  done
}

# deps_install demo|test: installs the packages of missing files that are not
# installed yet.
deps_install() {
  local file package
  local -a packages=()
  while read -r file package; do
    deps_installed "$package" || [[ " ${packages[*]} " == *" $package "* ]] || packages+=("$package")
  done < <(deps_missing "$1")
  [ ${#packages[@]} -gt 0 ] || return 0
  echo "deps: installing ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=120 update -qq
  apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}

# deps_check demo|test: one line per need still unmet, with how to meet it;
# fails when there is any.
deps_check() {
  local file package what bad=0
  while read -r file package; do
    bad=1
    case $file in
      */libstrongswan-*.so) what=${file##*/libstrongswan-} what="charon plugin '${what%.so}' ($file)" ;;
      *) what=$file ;;
    esac
    if deps_installed "$package"; then
      echo "deps: $what is missing, although $package is installed; restore it with: apt-get install --reinstall $package" >&2
    else
      echo "deps: $what is missing; install it with: apt-get install $package" >&2
    fi
  done < <(deps_missing "$1")
  return $bad
}

deps_install "${1:-test}"
