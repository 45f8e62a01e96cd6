"""Checkpoints: a snapshot and the training state written with it, as a pair in a run directory.

The file formats are elsewhere: the snapshot (weights + resolved recipe, safetensors) in
`gancli.train.snapshot`, the training state (optimizers, counters, RNG states; weights-only
torch.save) in `gancli.train.state`. This module names the pair, writes it, finds the newest
complete one, and resolves what a user typed (a run directory or a snapshot file) to a checkpoint.
Its names are re-exported here, so `from gancli.train.checkpoint import load_snapshot` keeps working.

Names in a run directory
------------------------
A pair is named by kimg (thousands of real images shown to D, as the official tools do) *and* by
optimizer step, so two checkpoints never share a name, however close together they are written:

    snapshot-{kimg:06d}-step{step:08d}.safetensors    state-{kimg:06d}-step{step:08d}.pt

Runs written by older gancli versions have `snapshot-{kimg:06d}.safetensors` + `state-{kimg:06d}.pt`;
they are read the same way (ordered by kimg, before any new name of the same kimg).

Writing: the new snapshot, then its state (each atomic, `gancli.fileio`), and only then, when the run
keeps fewer checkpoints (`train.keep_snapshots`), the older pairs are removed, snapshot before state.
A crash at any moment leaves the previous complete pair, or the new one, or both. A finished
checkpoint is never overwritten. Reading: `latest_checkpoint` takes the newest pair whose snapshot is
intact and whose state names that snapshot's content hash, and skips the others with a
`CheckpointWarning`.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gancli.errors import UserError
from gancli.fileio import kill_point
from gancli.train.snapshot import (
    SNAPSHOT_FORMAT,
    SNAPSHOT_FORMAT_VERSION,
    CheckpointWarning,
    Snapshot,
    _parse_snapshot,
    _to_plain_dict,
    _verify,
    describe_checkpoint,
    info_lines,
    load_snapshot,
    read_snapshot_header,
    render_info,
    save_snapshot,
)
from gancli.train.state import (
    TRAINING_STATE_FORMAT,
    TRAINING_STATE_FORMAT_VERSION,
    _load_state_payload,
    load_training_state,
    save_training_state,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_FORMAT_VERSION",
    "TRAINING_STATE_FORMAT",
    "TRAINING_STATE_FORMAT_VERSION",
    "CheckpointWarning",
    "Snapshot",
    "CheckpointPair",
    "save_snapshot",
    "load_snapshot",
    "read_snapshot_header",
    "save_training_state",
    "load_training_state",
    "snapshot_path",
    "state_path",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "remove_older_checkpoints",
    "resolve_checkpoint",
    "describe_checkpoint",
    "info_lines",
    "render_info",
]

SNAPSHOT_RE = re.compile(r"^snapshot-(\d{6,})(?:-step(\d{8,}))?\.safetensors$")


@dataclass(frozen=True)
class CheckpointPair:
    """A snapshot and the training state written with it (state None: a snapshot file on its own)."""

    snapshot: Path
    state: Path | None
    kimg: int
    step: int | None = None  # None for names written by gancli before steps were in the name

    @property
    def order(self) -> tuple[int, int]:
        """Sort key, oldest first: kimg, then step (old names, which lack it, first)."""
        return (self.kimg, -1 if self.step is None else self.step)


def _check_count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def _stem(kimg: int, step: int | None) -> str:
    _check_count(kimg, "kimg")
    return f"{kimg:06d}" if step is None else f"{kimg:06d}-step{_check_count(step, 'step'):08d}"


def snapshot_path(run_dir: str | os.PathLike[str], kimg: int, step: int | None = None) -> Path:
    """`run_dir/snapshot-{kimg:06d}-step{step:08d}.safetensors`; without step, the old kimg-only name."""
    return Path(run_dir) / f"snapshot-{_stem(kimg, step)}.safetensors"


def state_path(run_dir: str | os.PathLike[str], kimg: int, step: int | None = None) -> Path:
    """`run_dir/state-{kimg:06d}-step{step:08d}.pt`, the training state saved with that snapshot."""
    return Path(run_dir) / f"state-{_stem(kimg, step)}.pt"


def _pair_for(snapshot: Path) -> CheckpointPair | None:
    """The pair a snapshot's file name belongs to, or None when it is not a run-directory name."""
    m = SNAPSHOT_RE.match(snapshot.name)
    if not m:
        return None
    kimg, step = int(m.group(1)), None if m.group(2) is None else int(m.group(2))
    return CheckpointPair(snapshot=snapshot, state=state_path(snapshot.parent, kimg, step), kimg=kimg, step=step)


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[CheckpointPair]:
    """Every snapshot in `run_dir` named as a checkpoint, oldest first (files are not opened)."""
    pairs = [_pair_for(p) for p in Path(run_dir).iterdir() if SNAPSHOT_RE.match(p.name) and p.is_file()]
    return sorted((p for p in pairs if p is not None), key=lambda p: p.order)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    kimg: int,
    *,
    step: int,
    modules: dict[str, dict[str, torch.Tensor]],
    recipe: dict[str, Any] | None,
    meta: dict[str, Any] | None,
    state: dict[str, Any],
    keep: int = 0,
) -> CheckpointPair:
    """Save a snapshot and its training state (snapshot first, then the state that names it), then
    remove all but the `keep` newest pairs (0: keep every pair).

    `meta['kimg']` defaults to `kimg`, `meta['step']` to `step`. A checkpoint of the same kimg and
    step whose snapshot and state both exist is never overwritten (ValueError): an earlier save
    finished it. A snapshot alone (a save killed before its state was written) is replaced.
    """
    _check_count(keep, "keep")
    meta_d = {"kimg": kimg, "step": step, **_to_plain_dict(meta, "meta")}
    snap, st = snapshot_path(run_dir, kimg, step), state_path(run_dir, kimg, step)
    if snap.exists() and st.exists():
        raise ValueError(f"{snap}: exists already with its state; a finished checkpoint is never overwritten")
    digest = save_snapshot(snap, modules, recipe, meta_d)
    save_training_state(st, state, snapshot_sha256=digest)
    new = CheckpointPair(snapshot=snap, state=st, kimg=kimg, step=step)
    if keep:
        remove_older_checkpoints(run_dir, new, keep)
    return new


def remove_older_checkpoints(run_dir: str | os.PathLike[str], new: CheckpointPair, keep: int) -> None:
    """Remove every checkpoint file older than the `keep` newest complete pairs, `new` among them
    (nothing when `new` is not the newest complete pair)."""
    run_dir = Path(run_dir)
    complete = [p for p in list_checkpoints(run_dir) if p.state is not None and p.state.is_file()]
    kept = [p for p in complete if p.order <= new.order][-keep:]
    if new not in kept:  # never remove anything on behalf of a pair that is not the newest one
        return
    oldest_kept = kept[0].order
    for pair in list_checkpoints(run_dir):
        if pair.order < oldest_kept:
            for path in (pair.snapshot, pair.state):  # snapshot first: a lone state is invisible
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                kill_point()
    for orphan in run_dir.glob("state-*.pt"):  # states whose snapshot an interrupted removal took
        m = re.match(r"^state-(\d{6,})(?:-step(\d{8,}))?\.pt$", orphan.name)
        if m and (int(m.group(1)), -1 if m.group(2) is None else int(m.group(2))) < oldest_kept:
            orphan.unlink(missing_ok=True)
            kill_point()


def load_checkpoint(pair: CheckpointPair) -> tuple[Snapshot, dict[str, Any]]:
    """Load a snapshot and its training state, checking that they belong together."""
    if pair.state is None:
        raise UserError(f"{pair.snapshot}: has no training state beside it; exact resume needs both files")
    snap = load_snapshot(pair.snapshot)
    state = load_training_state(pair.state, expect_snapshot_sha256=snap.content_sha256)
    return snap, state


def latest_checkpoint(run_dir: str | os.PathLike[str], *, verify: bool = True) -> CheckpointPair | None:
    """The newest complete snapshot + training-state pair in `run_dir`, or None when there is none.

    A snapshot is skipped (with a CheckpointWarning) when it is damaged, when its state file is
    missing or unreadable, or when the state was written for a different snapshot.
    verify: also check each candidate snapshot's content hash (one read of the file).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    for pair in reversed(list_checkpoints(run_dir)):
        snap, st = pair.snapshot, pair.state
        try:
            parsed = _parse_snapshot(snap)
            if verify:
                _verify(parsed)
        except UserError as e:
            warnings.warn(f"skipping damaged snapshot: {e}", CheckpointWarning, stacklevel=2)
            continue
        if not st.is_file():
            warnings.warn(f"skipping {snap.name}: its training state {st.name} is missing", CheckpointWarning,
                          stacklevel=2)
            continue
        try:
            payload = _load_state_payload(st, mmap=True)
        except UserError as e:
            warnings.warn(f"skipping {snap.name}: {e}", CheckpointWarning, stacklevel=2)
            continue
        if payload.get("snapshot_sha256") != parsed.metadata["content_sha256"]:
            warnings.warn(f"skipping {snap.name}: {st.name} was written for a different snapshot",
                          CheckpointWarning, stacklevel=2)
            continue
        return pair
    return None


def resolve_checkpoint(spec: str | os.PathLike[str], *, with_state: bool = False,
                       option: str | None = None) -> CheckpointPair:
    """What the user named, as a checkpoint: a run directory (its newest complete pair) or a file.

    with_state: the training state must be there too (for --resume): a file must be a checkpoint
    snapshot with its state beside it, not another network file. Without it, any file is returned
    as is (its format is checked by whoever opens it); `state` is set when the pair is complete.
    option: the command-line option named in errors (e.g. '--resume').
    """
    where = f"{option} {spec}" if option else str(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        pair = latest_checkpoint(path)
        if pair is None:
            raise UserError(f"{where}: no complete checkpoint (snapshot + training state) in this run directory")
        return pair
    if not path.exists():
        raise UserError(f"{where}: no such {'run directory or checkpoint' if with_state else 'file or run directory'}")
    pair = _pair_for(path)
    if not with_state:
        if pair is None or not pair.state.is_file():
            return CheckpointPair(snapshot=path, state=None, kimg=pair.kimg if pair else 0,
                                  step=pair.step if pair else None)
        return pair
    if pair is None:
        raise UserError(f"{where}: expected a run directory or a snapshot-NNNNNN-stepNNNNNNNN.safetensors file "
                        "(a network file without its training state cannot be resumed exactly)")
    if not pair.state.is_file():
        raise UserError(f"{where}: the training state {pair.state.name} is missing beside it; exact resume needs both files")
    later = [p for p in list_checkpoints(path.parent) if p.order > pair.order]
    if later:
        raise UserError(f"{where}: the run has later checkpoints (newest {later[-1].snapshot.name}); resuming from an "
                        "earlier one would rewrite them: copy the snapshot and its state into a new folder to branch")
    return pair
