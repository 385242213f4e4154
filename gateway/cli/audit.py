"""`gateway audit verify|checkpoint`: check the audit trail against its checkpoints, or write one now."""

from __future__ import annotations

from datetime import timedelta

import click

from gateway.cli import emit, fail, json_option, main, pass_context


@main.group()
def audit():
    """The audit trail."""


def _human(report) -> str:
    latest = report.latest_checkpoint
    if report.ok:
        lines = [f"audit trail intact: {report.checked} entries"]
        if latest:
            lines.append(f"  checkpoints: {report.checkpoints}; the newest (#{latest['number']}, {latest['at']}) "
                         f"covers {latest['seq']} entries; newer entries: {report.unanchored}")
    else:
        lines = [f"audit trail BROKEN (problems: {len(report.problems)}; entries read: {report.checked}):"]
        lines += [f"  - {text}" for text in report.problems]
    lines += [f"warning: {text}" for text in report.warnings]
    return "\n".join(lines)


@audit.command("verify")
@click.option("--database-only", is_flag=True,
              help="Skip the checkpoints (then a truncation or a roll-back cannot be ruled out).")
@json_option
@pass_context
def audit_verify(ctx, database_only, as_json):
    """Check the chain and the signed checkpoints kept outside the database; exit 1 on any problem."""
    from gateway.adapters import build_checkpoint_store
    from gateway.audit.checkpoints import verify_trail

    store = None if database_only else build_checkpoint_store(ctx.settings)
    stale_after = timedelta(seconds=10 * ctx.settings.audit_checkpoint_every_seconds)
    report = verify_trail(ctx.db, store, ctx.settings.audit_chain_key, stale_after=stale_after)
    emit(report.as_dict(), as_json, _human(report))
    if not report.ok:
        raise SystemExit(1)


@audit.command("checkpoint")
@json_option
@pass_context
def audit_checkpoint(ctx, as_json):
    """Sign the chain's current head into the checkpoint store now (the relay also does, every minute)."""
    from gateway.adapters import build_checkpoint_store
    from gateway.audit.checkpointer import ChainBroken, Checkpointer
    from gateway.storage import StorageUnavailable, StoredObjectMissing

    checkpointer = Checkpointer.from_settings(ctx.settings, ctx.db, build_checkpoint_store(ctx.settings))
    try:
        result = checkpointer.write()
    except ChainBroken as error:
        fail("no checkpoint written, the audit trail does not verify: " + "; ".join(error.problems[:5]),
             as_json, "AUDIT_CHAIN_BROKEN", 1)
    except (StorageUnavailable, StoredObjectMissing) as error:
        fail(f"no checkpoint written: {error}", as_json, "STORAGE_UNAVAILABLE", 1)
    checkpoint = result.checkpoint
    if result.written:
        human = f"wrote checkpoint {checkpoint.number}: {checkpoint.seq} entries, head {checkpoint.head[:16]}…"
    elif checkpoint is not None:
        human = f"nothing new since checkpoint {checkpoint.number} ({checkpoint.seq} entries)"
    else:
        human = "the audit trail is empty; nothing to checkpoint"
    emit(result.as_dict(), as_json, human)
