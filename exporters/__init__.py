"""Custom Prometheus exporters for libvirt/KVM, Open vSwitch and Ceph."""
