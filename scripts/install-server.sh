#!/usr/bin/env bash
# Installs the control plane as the systemd service tether-server (docs/control-plane.md, "Running
# on a VM"). Run as root from the checkout the service will run (normally /opt/tether):
#
#   bash scripts/install-server.sh [--no-start] [--destdir DIR]
#
#  1. provisions Node 24 and the npm packages into <checkout>/.cache (TETHER_CACHE), read-only to
#     the sandboxed service afterwards (run it again after each update of the checkout);
#  2. creates the system user `tether` (systemd-sysusers, from control-plane/systemd/tether-server.sysusers);
#  3. installs /etc/systemd/system/tether-server.service (ExecStart pointing at this checkout) and
#     a commented /etc/tether-server/server.env, unless one exists;
#  4. systemctl daemon-reload, then enable --now (not with --no-start).
#
# --destdir DIR stages the files under DIR instead and skips steps 1, 2 and 4 (packaging, tests).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
destdir=
start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) destdir=${2:?--destdir needs a folder}; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-server: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$root" in /home/*|/root/*|/run/user/*) echo "install-server: the service cannot see $root (ProtectHome=yes); clone to /opt/tether" >&2; exit 2 ;; esac
case "$root" in *[[:space:]#]*) echo "install-server: the checkout path must not contain spaces or '#': $root" >&2; exit 2 ;; esac

if [ -z "$destdir" ]; then
  [ "$(id -u)" = 0 ] || { echo "install-server: run as root (or stage with --destdir DIR)" >&2; exit 2; }
  echo "install-server: provisioning Node 24 and the npm packages into $root/.cache" >&2
  # umask 022: the service's user reads what is installed here (the checkout must be readable too).
  (umask 022 && TETHER_CACHE="$root/.cache" bash "$root/scripts/setup.sh")
fi

unit_dir="$destdir/etc/systemd/system"
conf_dir="$destdir/etc/tether-server"
install -d -m 0755 "$unit_dir" "$destdir/etc/sysusers.d"
install -d -m 0755 "$conf_dir"
# The unit names /opt/tether; point it at this checkout.
sed "s#/opt/tether/#$root/#g" "$root/control-plane/systemd/tether-server.service" > "$unit_dir/tether-server.service.tmp"
chmod 0644 "$unit_dir/tether-server.service.tmp"
mv "$unit_dir/tether-server.service.tmp" "$unit_dir/tether-server.service"
install -m 0644 "$root/control-plane/systemd/tether-server.sysusers" "$destdir/etc/sysusers.d/tether-server.conf"
if [ ! -e "$conf_dir/server.env" ]; then
  cat > "$conf_dir/server.env" <<'ENV'
# Settings of tether-server.service (read by systemd as root; `systemctl restart tether-server` after a change).
#TETHER_LISTEN=0.0.0.0:8443
# The admin API and the CLI on an address of their own (HTTP/1.1, agents refused), reachable when a
# large fleet fills the agents' accept queue (docs/control-plane.md).
#TETHER_ADMIN_LISTEN=127.0.0.1:8444
# Extra names/IPs on the certificate from the Tether CA (the one agents verify), space-separated.
#TETHER_SAN=agents.example.com 203.0.113.10
# A certificate for the public endpoint (e.g. from Let's Encrypt; docs/control-plane.md): copy the
# chain and key here (key 0640 root:tether), then `systemctl reload tether-server` after each renewal.
#TETHER_TLS_CERT=/etc/tether-server/tls.crt
#TETHER_TLS_KEY=/etc/tether-server/tls.key
#TETHER_LOG_LEVEL=info
ENV
  chmod 0640 "$conf_dir/server.env"
fi

if [ -n "$destdir" ]; then
  echo "install-server: staged under $destdir" >&2
  exit 0
fi

if command -v systemd-sysusers >/dev/null; then
  systemd-sysusers /etc/sysusers.d/tether-server.conf
elif ! id tether >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /var/lib/tether-server --no-create-home --shell /usr/sbin/nologin tether
fi
chgrp tether "$conf_dir" "$conf_dir/server.env"

if [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ]; then
  echo "install-server: systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null)); unit installed, not started" >&2
  exit 0
fi
systemctl daemon-reload
if [ "$start" = 1 ]; then
  systemctl enable --now tether-server.service
  echo "install-server: tether-server started; admin token in /var/lib/tether-server/admin-token, CA in /var/lib/tether-server/ca.crt" >&2
else
  echo "install-server: installed; start with: systemctl enable --now tether-server" >&2
fi
