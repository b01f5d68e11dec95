"""A tenant's storage, in the tenant's own Grafana: volumes by class, buckets."""

from dashboards.kit import (
    GREEN,
    RED,
    YELLOW,
    Q,
    Row,
    Spec,
    dashboard,
    datasource,
    gauge,
    table,
    timeseries,
)

dashboard = dashboard(
    Spec(
        uid="zcp-tenant-storage",
        title="My cloud / Storage",
        description="Your volumes per storage class (provisioned and used) and your buckets.",
        tags=["zcp", "tenant"],
        variables=[datasource()],
        rows=[
            Row(
                "Volumes",
                [
                    gauge(
                        "Used / provisioned",
                        "How full your volumes are, overall.",
                        "100 * sum(tenant:ceph_rbd_image_used_bytes:sum) / "
                        "sum(tenant:ceph_rbd_image_provisioned_bytes:sum)",
                        unit="percent",
                        thresholds=((None, GREEN), (80, YELLOW), (95, RED)),
                        width=6,
                    ),
                    timeseries(
                        "By storage class",
                        "Provisioned and used bytes per class.",
                        Q(
                            "tenant:ceph_rbd_image_provisioned_bytes:sum",
                            "{{storage_class}} provisioned",
                        ),
                        Q("tenant:ceph_rbd_image_used_bytes:sum", "{{storage_class}} used"),
                        unit="bytes",
                        width=18,
                        height=6,
                    ),
                    table(
                        "Your volumes",
                        "Each volume: class, provisioned and used bytes.",
                        Q("tenant:ceph_rbd_image_provisioned_bytes:volume"),
                        Q("tenant:ceph_rbd_image_used_bytes:volume"),
                        hide=("Time", "__name__", "tenant"),
                        rename={"Value #A": "provisioned", "Value #B": "used"},
                        unit="bytes",
                        width=24,
                    ),
                ],
            ),
            Row(
                "Object storage",
                [
                    table(
                        "Your buckets",
                        "Objects and bytes per bucket.",
                        Q("tenant:ceph_rgw_bucket_stored_bytes:max"),
                        Q("tenant:ceph_rgw_bucket_objects:max"),
                        hide=("Time", "__name__", "tenant"),
                        rename={"Value #A": "bytes", "Value #B": "objects"},
                        width=24,
                    ),
                ],
            ),
        ],
    )
)
