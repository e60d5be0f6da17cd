#!/usr/bin/env bash
# Installs the system packages Skiff's build and tests need, only those missing.
#   libclang-dev  bindgen for the RocksDB bindings (librocksdb-sys)
#   etcd-client   real etcdctl, driven by the integration tests
#   etcd-server   real etcd, the reference the differential tests compare against
#   iproute2, nftables  network namespaces and kernel packet drops (jepsen's netns faults)
#   faketime      libfaketime, clock skew for one member (jepsen's clock nemesis)
set -euo pipefail
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v flock >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
dpkg -s libfaketime >/dev/null 2>&1 || need+=(libfaketime faketime)
if ((${#need[@]} == 0)); then
  exit 0
fi
echo "install-deps: installing ${need[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts etcd-server as a service on install; tests start their own on other ports.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
