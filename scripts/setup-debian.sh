#!/usr/bin/env bash
# Install the Debian packages zcp-observability's demo and tests need (Debian 12, as root).
# Idempotent: only missing packages are installed; nothing else on the machine is changed.
set -euo pipefail

PACKAGES=(
  # Python build of libvirt-python and the venv
  python3-venv python3-dev gcc pkg-config libvirt-dev
  # Prometheus side
  prometheus prometheus-alertmanager prometheus-libvirt-exporter ceph-prometheus-alerts
  prometheus-pushgateway prometheus-node-exporter prometheus-blackbox-exporter
  # metering: the long-term store, the billing database, the HTML report in a real browser
  victoria-metrics postgresql chromium
  # Open vSwitch (userspace datapath in the tests)
  openvswitch-switch
  # Ceph (single-node cluster in the tests) and radosgw
  ceph ceph-mon ceph-mgr ceph-osd ceph-mds radosgw python3-cephfs
  # libvirt + KVM
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  # network tools used by the lab
  iproute2 iputils-ping procps curl
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them yourself)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting system-wide daemons: the lab starts its own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirtd's QEMU driver needs these accounts and directories.
if [ "$(id -u)" -eq 0 ]; then
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  id -u libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -s /usr/sbin/nologin libvirt-qemu
  mkdir -p /var/log/libvirt /var/run/libvirt
fi
echo "Debian packages: ok" >&2
