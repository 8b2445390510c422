#!/usr/bin/env bash
# Host packages the node-agent tests need (run as root; idempotent): WireGuard tools, the userspace
# wireguard-go (for kernels without the module), iproute2 (ip netns, veth, bridge) and nftables
# (the wg1 hub-and-spoke rules); and chromium, the headless browser of the console tests (test/console/).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "test/node-agent/setup.sh: not root; the WireGuard/netns tests will skip" >&2
  exit 0
fi
need=()
for p in wireguard-tools wireguard-go iproute2 nftables chromium; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v wg >/dev/null && command -v wireguard-go >/dev/null && command -v ip >/dev/null && command -v nft >/dev/null
