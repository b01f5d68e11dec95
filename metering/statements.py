"""Monthly statements: a draft is what the charges say now; closing makes it final."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from metering.errors import MeteringError
from metering.models import Charge, Run, Statement, UsageRecord
from metering.periods import Month
from metering.pricing import PriceBook
from metering.store import run_lock, watermark


def close(
    engine: Engine, book: PriceBook, month: str, accept_gaps: bool = False, ttl: float = 120.0
) -> list[Statement]:
    """Make ``month`` final for every account with charges in it (each in its billing
    timezone). Refused while hours of the month are not metered yet, or, without
    ``accept_gaps``, while records of it are flagged."""
    Month.parse(month)
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with run_lock(engine, run_id, ttl), Session(engine) as s, s.begin():
        s.add(
            Run(
                id=run_id,
                command="close",
                started_at=now,
                status="ok",
                finished_at=now,
                price_book_version=book.version,
            )
        )
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for charge in s.scalars(select(Charge).where(Charge.billing_month == month)):
            totals[charge.account_id] += charge.amount
        if not totals:
            return []
        mark = watermark(s)
        ends = {a: Month.parse(month, book.tz(a)).end for a in totals}
        late = max(ends.values())
        if mark is None or mark < late:
            raise MeteringError(
                f"{month} is not fully metered yet: records end at "
                f"{mark.isoformat() if mark else 'nothing'}, the month at "
                f"{late.isoformat()} (run zcp-obs metering run first)"
            )
        flagged = s.scalars(
            select(UsageRecord)
            .join(Charge, Charge.record_key == UsageRecord.key)
            .where(Charge.billing_month == month, UsageRecord.flags != "")
        ).all()
        if flagged and not accept_gaps:
            unbilled = sum((r.unbilled_s for r in flagged), Decimal(0))
            raise MeteringError(
                f"{len(flagged)} records of {month} are flagged ({unbilled} s "
                "not billed for gaps in the data); fix the data and re-run, "
                "or close with --accept-gaps"
            )
        out = []
        for account, total in sorted(totals.items()):
            st = s.get(Statement, (account, month))
            if st is not None and st.status == "final":
                out.append(st)
                continue
            if st is None:
                st = Statement(
                    account_id=account,
                    month=month,
                    timezone=book.tz(account),
                    status="final",
                    currency=book.currency,
                    total=total,
                    closed_at=now,
                    run_id=run_id,
                )
                s.add(st)
            else:
                st.status, st.total, st.closed_at, st.run_id = "final", total, now, run_id
            out.append(st)
        s.flush()
        s.expunge_all()
        return out
