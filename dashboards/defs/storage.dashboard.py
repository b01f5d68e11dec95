"""Storage: RBD volumes per storage class and tenant (provisioned vs used), top tenants, RGW
object storage, CephFS; Ceph's own upstream dashboards for the cluster's internals."""

from dashboards.kit import (
    GREEN,
    RED,
    YELLOW,
    Q,
    Row,
    Spec,
    Var,
    bars,
    dashboard,
    datasource,
    gauge,
    stat,
    table,
    timeseries,
    value_map,
)

C = 'storage_class=~"$class"'
OWNER = (
    "* on (volume_id) group_left (account_id) max by (volume_id, account_id) "
    '(zcp_volume_info{job="zcp-inventory",account_id=~"$tenant"})'
)

# a pool's size, min_size and hosts, with its rule and storage class as labels
RULE = (
    "* on (pool) group_left (rule, failure_domain, device_class) "
    "max by (pool, rule, failure_domain, device_class) (ceph_pool_crush_rule_info) "
    "* on (pool) group_left (storage_class) max by (pool, storage_class) (zcp_ceph_pool_info)"
)
PROMISE_ALERTS = (
    "CephPoolReplicasBelowPromise|CephPoolMinSizeBelowPromise|CephPoolFailureDomainTooSmall|"
    "CephPGsOnTooFewHosts|CephStorageClassWrongMedia|CephPGsNotSelfHealed"
)

dashboard = dashboard(
    Spec(
        uid="zcp-storage",
        title="ZCP / Storage",
        description="Block storage per class (fast/flow/bulk) and tenant, object storage per RGW "
        "user, CephFS subvolumes. Cluster internals: Ceph's upstream dashboards "
        "(links).",
        tags=["zcp", "operator"],
        links=[
            {
                "title": "Ceph (upstream)",
                "type": "dashboards",
                "tags": ["ceph-mixin"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        variables=[
            datasource(),
            Var(
                "class",
                "Storage class",
                "label_values(ceph_rbd_image_provisioned_bytes, storage_class)",
                multi=True,
                include_all=True,
            ),
            Var(
                "tenant",
                "Tenant",
                'label_values(zcp_volume_info{job="zcp-inventory"}, account_id)',
                multi=True,
                include_all=True,
            ),
        ],
        rows=[
            Row(
                "Block storage",
                [
                    stat(
                        "Provisioned",
                        "Provisioned size of the selected volumes.",
                        f"sum(ceph_rbd_image_provisioned_bytes{{{C}}} {OWNER})",
                        unit="bytes",
                    ),
                    stat(
                        "Used",
                        "Bytes the selected volumes' images hold.",
                        f"sum(ceph_rbd_image_used_bytes{{{C}}} {OWNER})",
                        unit="bytes",
                    ),
                    gauge(
                        "Used / provisioned",
                        "How full the selected volumes are, overall.",
                        f"100 * sum(ceph_rbd_image_used_bytes{{{C}}} {OWNER}) / "
                        f"sum(ceph_rbd_image_provisioned_bytes{{{C}}} {OWNER})",
                        unit="percent",
                        thresholds=((None, GREEN), (80, YELLOW), (95, RED)),
                        height=4,
                    ),
                    stat(
                        "Volumes",
                        "RBD images that are CloudStack volumes.",
                        f"count(ceph_rbd_image_provisioned_bytes{{{C}}} {OWNER})",
                        unit="none",
                    ),
                    timeseries(
                        "Provisioned vs used by class",
                        "Per storage class.",
                        Q(
                            f"sum by (storage_class) (ceph_rbd_image_provisioned_bytes{{{C}}} "
                            f"{OWNER})",
                            "{{storage_class}} provisioned",
                        ),
                        Q(
                            f"sum by (storage_class) (ceph_rbd_image_used_bytes{{{C}}} {OWNER})",
                            "{{storage_class}} used",
                        ),
                        unit="bytes",
                        width=12,
                    ),
                    bars(
                        "Top tenants by provisioned bytes",
                        "Accounts with the most block storage.",
                        Q(
                            f"topk(10, sum by (account_id) (ceph_rbd_image_provisioned_bytes{{{C}}} "
                            f"{OWNER}))",
                            "{{account_id}}",
                            instant=True,
                        ),
                        unit="bytes",
                        width=12,
                    ),
                    table(
                        "Volumes",
                        "Every selected volume: class, pool, image, sizes.",
                        Q(f"ceph_rbd_image_provisioned_bytes{{{C}}} {OWNER}"),
                        Q(f"ceph_rbd_image_used_bytes{{{C}}} {OWNER}"),
                        rename={"Value #A": "provisioned", "Value #B": "used"},
                        unit="bytes",
                        width=24,
                    ),
                ],
            ),
            Row(
                "Pools",
                [
                    table(
                        "Storage classes and pools",
                        "Which Ceph pool backs each storage class.",
                        Q("zcp_ceph_pool_info"),
                        hide=("Time", "Value", "__name__", "instance", "job"),
                        width=12,
                    ),
                    timeseries(
                        "Pool usage",
                        "Bytes stored per pool (ceph-mgr).",
                        Q(
                            "ceph_pool_stored * on (pool_id) group_left (name) ceph_pool_metadata",
                            "{{name}}",
                        ),
                        unit="bytes",
                        width=12,
                    ),
                ],
            ),
            Row(
                "Promises: replication, failure domains, media",
                [
                    stat(
                        "Pools off their promise",
                        "Pools whose replicas, min_size, failure domain, hosts or media break "
                        "what alerting.promises says (firing alerts).",
                        f'count(ALERTS{{alertstate="firing",alertname=~"{PROMISE_ALERTS}"}})'
                        " or vector(0)",
                        unit="none",
                        thresholds=((None, GREEN), (1, RED)),
                        width=6,
                    ),
                    table(
                        "Pools: replicas, rule, failure domain, media",
                        "Per pool: replicas (size), copies needed to take writes (min_size), "
                        "the CRUSH rule with its failure domain and device class (empty: any "
                        "OSD), the fewest hosts any of its PGs spans, and its storage class.",
                        Q(f"ceph_pool_size {RULE}"),
                        Q(f"ceph_pool_min_size {RULE}"),
                        Q(f"ceph_pool_pg_acting_hosts_min {RULE}"),
                        rename={
                            "Value #A": "size",
                            "Value #B": "min_size",
                            "Value #C": "hosts (min)",
                        },
                        hide=("Time", "__name__", "instance", "job", "pool_id"),
                        width=18,
                    ),
                    table(
                        "OSDs each pool can use, by device class",
                        "OSDs under each pool's CRUSH rule, per device class: a fast pool must "
                        "see only its class's media.",
                        Q("ceph_pool_osds"),
                        rename={"Value": "OSDs"},
                        hide=("Time", "__name__", "instance", "job", "pool_id"),
                        width=12,
                    ),
                    stat(
                        "S3 endpoints answering",
                        "The blackbox exporter's S3 probe (anonymous GET / must list buckets "
                        "as S3 does), per endpoint (alert S3EndpointDown).",
                        Q('probe_success{job="s3-probe"}', "{{zone}} {{instance}}"),
                        unit="none",
                        thresholds=((None, RED), (1, GREEN)),
                        mappings=[value_map({"0": ("down", "red"), "1": ("S3 OK", "green")})],
                        width=4,
                    ),
                    timeseries(
                        "S3 probe time",
                        "How long the S3 probe took, per endpoint.",
                        Q('probe_duration_seconds{job="s3-probe"}', "{{zone}} {{instance}}"),
                        unit="s",
                        width=8,
                    ),
                ],
            ),
            Row(
                "Object storage (RGW)",
                [
                    bars(
                        "Stored per RGW user",
                        "Bytes each S3 user stores.",
                        Q("topk(10, ceph_rgw_user_stored_bytes)", "{{user}}", instant=True),
                        unit="bytes",
                        width=12,
                    ),
                    table(
                        "Buckets",
                        "Objects and bytes per bucket.",
                        Q("ceph_rgw_bucket_stored_bytes"),
                        Q("ceph_rgw_bucket_objects"),
                        rename={"Value #A": "bytes", "Value #B": "objects"},
                        width=12,
                    ),
                ],
            ),
            Row(
                "CephFS",
                [
                    table(
                        "Subvolumes",
                        "Used and quota bytes per CephFS subvolume.",
                        Q("ceph_cephfs_subvolume_used_bytes"),
                        Q("ceph_cephfs_subvolume_quota_bytes"),
                        rename={"Value #A": "used", "Value #B": "quota"},
                        unit="bytes",
                        width=24,
                    ),
                ],
            ),
        ],
    )
)
