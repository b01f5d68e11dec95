"""Three tenants' series for the tenant-stack tests: identity and counters the real tenant
recording rules turn into ``tenant:*`` series, plus series no tenant may see."""

from __future__ import annotations

TENANTS = {
    "7f9c2ba4-e88f-11e9-81b4-2a2ae2dbcce4": "va",
    "0b1e5d2c-3f4a-4b5c-8d6e-7f8091a2b3c4": "vb",
    "c0ffee00-0000-4000-8000-000000000001": "vc",
}
A, B, C = TENANTS
TOKENS = {t: f"token-of-{vm}" for t, vm in TENANTS.items()}
SCRAPE = ("job", "instance")


def exposition(step: int) -> bytes:
    """Identity and counters of two VMs per tenant, series without a tenant, and a series that
    carries a tenant label without being a tenant:* rule output."""
    lines = []
    for tenant, vm in TENANTS.items():
        for i in (1, 2):
            lines.append(f'zcp_vm_info{{vm_id="{vm}{i}",account_id="{tenant}"}} 1')
            lines.append(
                f'libvirt_domain_cpu_time_seconds_total{{vm_id="{vm}{i}"}} {step * i * 0.5}'
            )
    lines.append('zcp_vm_info{vm_id="orphan",account_id=""} 1')
    lines.append(f"untenanted_total {step}")
    lines.append(f'stray_series{{tenant="{B}"}} 1')
    return ("\n".join(lines) + "\n").encode()
