"""Network: Open vSwitch ports, VXLAN tunnels and BFD, drops and errors, the datapath."""

from dashboards.kit import (
    GREEN,
    RATE,
    RED,
    Q,
    Row,
    Spec,
    Var,
    dashboard,
    datasource,
    stat,
    table,
    timeseries,
)

H = 'host=~"$host"'

dashboard = dashboard(
    Spec(
        uid="zcp-network",
        title="ZCP / Network",
        description="The tenant overlay on each hypervisor's Open vSwitch: VM ports, VXLAN tunnels "
        "and their BFD sessions, drops and errors, datapath cache efficiency.",
        tags=["zcp", "operator"],
        variables=[
            datasource(),
            Var("host", "Host", "label_values(ovs_up, host)", multi=True, include_all=True),
        ],
        rows=[
            Row(
                "Health",
                [
                    stat(
                        "OVS exporters up",
                        "Hosts whose OVS exporter reaches ovsdb-server and ovs-vswitchd.",
                        f"sum(ovs_up{{{H}}})",
                        unit="none",
                    ),
                    stat(
                        "VM ports",
                        "Interfaces attached to a CloudStack vNIC.",
                        f'count(ovs_interface_link_up{{{H},nic_id!=""}})',
                        unit="none",
                    ),
                    stat(
                        "Ports down",
                        "VM ports whose link is down.",
                        f'count(ovs_interface_link_up{{{H},nic_id!=""}} == 0) or vector(0)',
                        unit="none",
                        thresholds=((None, GREEN), (1, RED)),
                    ),
                    stat(
                        "Tunnels",
                        "VXLAN (and other) tunnel interfaces.",
                        f"count(ovs_tunnel_info{{{H}}}) or vector(0)",
                        unit="none",
                    ),
                    stat(
                        "Interfaces in error",
                        "Interfaces OVSDB reports an error for.",
                        f"count(ovs_interface_error{{{H}}} == 1) or vector(0)",
                        unit="none",
                        thresholds=((None, GREEN), (1, RED)),
                    ),
                ],
            ),
            Row(
                "Traffic",
                [
                    timeseries(
                        "Top ports by traffic",
                        "Bytes per second in + out, the busiest ports.",
                        Q(
                            f"topk(10, sum by (host, interface) (rate("
                            f"ovs_interface_receive_bytes_total{{{H}}}[{RATE}]) + rate("
                            f"ovs_interface_transmit_bytes_total{{{H}}}[{RATE}])))",
                            "{{host}} {{interface}}",
                        ),
                        unit="Bps",
                    ),
                    timeseries(
                        "Drops and errors",
                        "Packets per second dropped or in error, per host.",
                        Q(
                            f"sum by (host) (rate(ovs_interface_receive_drops_total{{{H}}}"
                            f"[{RATE}]) + rate(ovs_interface_transmit_drops_total{{{H}}}"
                            f"[{RATE}]))",
                            "{{host}} drops",
                        ),
                        Q(
                            f"sum by (host) (rate(ovs_interface_receive_errors_total{{{H}}}"
                            f"[{RATE}]) + rate(ovs_interface_transmit_errors_total{{{H}}}"
                            f"[{RATE}]))",
                            "{{host}} errors",
                        ),
                        unit="pps",
                    ),
                ],
            ),
            Row(
                "Tunnels",
                [
                    table(
                        "VXLAN tunnels",
                        "Tunnel ports: remote and local endpoints, VNI key, MTU.",
                        Q(f"ovs_tunnel_info{{{H}}}"),
                        hide=("Time", "Value", "__name__", "instance", "job"),
                        width=16,
                    ),
                    timeseries(
                        "BFD",
                        "1 while the tunnel's BFD session is up (only where BFD is enabled).",
                        Q(f"ovs_interface_bfd_up{{{H}}}", "{{host}} {{interface}}"),
                        unit="none",
                        width=8,
                    ),
                    stat(
                        "VM ports off MTU 1500",
                        "Tenant ports whose MTU is not the overlay's 1500 (alert "
                        "OverlayPortMTUWrong).",
                        f'count(ovs_interface_mtu_bytes{{{H},vm_id!=""}} != 1500) or vector(0)',
                        unit="none",
                        thresholds=((None, GREEN), (1, RED)),
                        width=6,
                    ),
                    table(
                        "Tunnel underlays",
                        "The interface each tunnel's packets leave by (OVS's route to the "
                        "remote) and its MTU: at least 1550 carries 1500 plus VXLAN's 50 "
                        "(alert TunnelUnderlayMTUTooSmall).",
                        Q(f"ovs_tunnel_underlay_mtu_bytes{{{H}}}"),
                        hide=("Time", "__name__", "instance", "job"),
                        rename={"Value": "underlay MTU"},
                        width=18,
                    ),
                    table(
                        "Port MTUs",
                        "MTU of every port (tenant ports must be 1500).",
                        Q(f"ovs_interface_mtu_bytes{{{H}}}"),
                        hide=("Time", "__name__", "instance", "job", "iface_id"),
                        rename={"Value": "MTU"},
                        width=24,
                    ),
                ],
            ),
            Row(
                "Datapath",
                [
                    timeseries(
                        "Lookups",
                        "Datapath packets per second: cache hits, misses (sent to "
                        "ovs-vswitchd) and lost.",
                        Q(
                            f"sum by (datapath) (rate(ovs_datapath_lookups_hit_total{{{H}}}"
                            f"[{RATE}]))",
                            "{{datapath}} hit",
                        ),
                        Q(
                            f"sum by (datapath) (rate(ovs_datapath_lookups_missed_total{{{H}}}"
                            f"[{RATE}]))",
                            "{{datapath}} missed",
                        ),
                        Q(
                            f"sum by (datapath) (rate(ovs_datapath_lookups_lost_total{{{H}}}"
                            f"[{RATE}]))",
                            "{{datapath}} lost",
                        ),
                        unit="pps",
                    ),
                    timeseries(
                        "Flows",
                        "Flows in each datapath.",
                        Q(
                            f"sum by (host, datapath) (ovs_datapath_flows{{{H}}})",
                            "{{host}} {{datapath}}",
                        ),
                        unit="none",
                    ),
                ],
            ),
        ],
    )
)
