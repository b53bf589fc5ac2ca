"""The run folder: the single source of truth of a training run.

A run folder holds

- ``config.json``: the run's :class:`~aniportrait.train.config.TrainConfig`, written once when the run starts;
- ``log.txt`` (events) and ``stats.jsonl`` (one line per logged step; ``snapshots.jsonl``, one per snapshot;
  ``warmups.jsonl``, the loss of every ``log_every``-th step of each warm-up and of its last);
- ``samples/step_*.png``;
- ``state.safetensors``: every state (networks, EMA, optimisers, step, RNG), for ``--resume``; it is also written
  every ``checkpoint_every`` steps of each warm-up and after each (with the running warm-up's optimisers and
  progress), so a run stopped in its warm-ups resumes there;
- ``generator.safetensors``: the EMA generator, for ``aniportrait render --checkpoint``.

Resuming reads the settings from ``config.json``: only the settings in ``RESUMABLE_CHANGES`` may be given again
with new values, and any other that differs is refused with one line naming the key, the run's value and the new
one. A refused resume changes nothing in the folder, and resuming a folder without a state creates nothing. Lines
of ``stats.jsonl`` and ``snapshots.jsonl`` after the resumed step are dropped, so each step appears once; a run
resumed in its warm-ups also keeps only the finished warm-ups' lines of ``warmups.jsonl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aniportrait.errors import UserInputError
from aniportrait.train.config import RESUMABLE_CHANGES, ConfigError, TrainConfig

STATE_FILE = "state.safetensors"
GENERATOR_FILE = "generator.safetensors"
CONFIG_FILE = "config.json"
LOG_FILE = "log.txt"
STATS_FILE = "stats.jsonl"
SNAPSHOTS_FILE = "snapshots.jsonl"
WARMUPS_FILE = "warmups.jsonl"
SAMPLES_DIR = "samples"


class RunFolderError(UserInputError):
    """The run folder or ``--init-from`` does not fit this run (bad input); the message says what to do."""


def check_creatable(path: str | os.PathLike, what: str = "--out") -> None:
    """Refuse a folder that cannot be created or written, before anything is written anywhere."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise RunFolderError(f"{what} {path} is a file, not a folder; choose a folder path")
        if not os.access(path, os.W_OK | os.X_OK):
            raise RunFolderError(f"{what} {path} is not writable; choose another folder")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RunFolderError(f"{what} {path} cannot be created: {parent} is a file; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunFolderError(f"{what} {path} cannot be created: {parent} is not writable; choose another path")


class RunFolder:
    """Paths and bookkeeping of one run folder. Only rank 0 of a multi-process job writes (``writer=False`` else)."""

    def __init__(self, path: str | os.PathLike, *, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer

    # -- paths

    @property
    def state(self) -> Path:
        return self.path / STATE_FILE

    @property
    def generator(self) -> Path:
        return self.path / GENERATOR_FILE

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    def sample(self, step: int) -> Path:
        return self.path / SAMPLES_DIR / f"step_{step:07d}.png"

    def has_state(self) -> bool:
        return self.state.is_file()

    # -- starting and resuming

    def check_new(self) -> None:
        """Refuse to start a new run in a folder that holds one."""
        check_creatable(self.path)
        if self.has_state():
            raise RunFolderError(
                f"{self.path} already holds a run; add --resume to continue it, or choose another --out"
            )
        if self.config_file.exists():
            raise RunFolderError(self._stopped_early())

    def saved_config(self) -> TrainConfig:
        """The run's config (``config.json``); refuses a folder without a resumable state."""
        if not self.has_state():
            if self.config_file.exists():
                raise RunFolderError(f"--resume: {self._stopped_early()}")
            raise RunFolderError(f"--resume: no {STATE_FILE} in {self.path}; start the run without --resume")
        if not self.config_file.is_file():
            raise RunFolderError(f"--resume: {self.path} has a state but no {CONFIG_FILE}; it cannot be resumed")
        try:
            return TrainConfig.from_json(self.config_file.read_text())
        except (ConfigError, TypeError, OSError) as err:
            raise RunFolderError(f"--resume: {self.config_file} cannot be read ({err})") from None

    def _stopped_early(self) -> str:
        return (
            f"{self.path} holds a run that stopped before its first checkpoint ({CONFIG_FILE}, no {STATE_FILE}): "
            "there is nothing to resume; delete the folder and start again, or choose another --out"
        )

    def resume_config(self, requested: TrainConfig | None, overrides: dict) -> TrainConfig:
        """The config of a resumed run: the saved one with the given changes, if each is allowed.

        Args:
            requested: the config built from ``--config`` and ``--set`` when ``--config`` was given, else None.
            overrides: the ``--set`` values ({key: typed value}).
        """
        saved = self.saved_config()
        wanted = dict(overrides)
        if requested is not None:
            wanted.update({k: requested.value(k) for k in requested.changed_keys(saved)})
        refused = [
            f"{key} is {saved.value(key)!r} in the run but {value!r} was given"
            for key, value in sorted(wanted.items())
            if key not in RESUMABLE_CHANGES and saved.value(key) != value
        ]
        if refused:
            raise RunFolderError(
                f"--resume: {'; '.join(refused)} ({self.config_file}); only {', '.join(RESUMABLE_CHANGES)} may "
                "change on resume: drop the other options, or start a new run"
            )
        allowed = {k: v for k, v in wanted.items() if k in RESUMABLE_CHANGES}
        try:
            return saved.with_values(allowed)
        except ConfigError as err:
            raise RunFolderError(f"--resume: {err}") from None

    def start(self, config: TrainConfig) -> None:
        """Create the folder and write ``config.json`` (a new run), or rewrite it with the allowed changes."""
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            _atomic_text(self.config_file, config.to_json())

    def truncate_logs(self, step: int) -> None:
        """Drop the stats and snapshot lines after ``step`` (the resumed step)."""
        if not self.writer:
            return
        for name in (STATS_FILE, SNAPSHOTS_FILE):
            path = self.path / name
            if not path.exists():
                continue
            kept = [line for line in path.read_text().splitlines() if line.strip() and _step_of(line) <= step]
            _atomic_text(path, "".join(line + "\n" for line in kept))

    def truncate_warmups(self, finished: list[str]) -> None:
        """Keep only the warm-up curve lines of the ``finished`` warm-ups (a run resumed in its warm-ups)."""
        path = self.path / WARMUPS_FILE
        if not self.writer or not path.exists():
            return
        kept = [line for line in path.read_text().splitlines() if line.strip() and _warmup_of(line) in finished]
        _atomic_text(path, "".join(line + "\n" for line in kept))

    # -- writing

    def log(self, line: str) -> None:
        if self.writer:
            with open(self.path / LOG_FILE, "a") as f:
                f.write(line + "\n")

    def stats(self, record: dict, file: str = STATS_FILE) -> None:
        if self.writer:
            with open(self.path / file, "a") as f:
                f.write(json.dumps(record) + "\n")


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0


def _warmup_of(line: str) -> str | None:
    try:
        return json.loads(line).get("warmup")
    except (ValueError, AttributeError):
        return None


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
