"""The output folder of a sweep: ``<out>/<name>/``.

- ``sweep.json``   what was swept (base config, params, zip, Nruns, seed, points);
                   compared on every start to refuse mixing different sweeps;
- ``results.csv``  one row per (point, run), appended and flushed when a point
                   has all its runs, so an interrupted sweep loses no finished point;
- ``points/<k>.toml`` the resolved config of point k (re-run it with ``xbarsim run``);
- ``summary.csv``  mean, std, min, max of the accuracy per point;
- ``accuracy.png`` accuracy vs the swept parameter(s).

Nothing is ever overwritten except by this same sweep under ``--resume``;
rewrites go through a temporary file and :func:`os.replace`.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from simulator.sweep.spec import SweepError
from simulator.validation import mkstemp_normal

RESULTS = "results.csv"
SUMMARY = "summary.csv"
DESCRIPTION = "sweep.json"
POINTS = "points"
PLOT = "accuracy.png"
LOCK = ".lock"
FORMAT = "xbarsim-sweep/1"

#: fixed leading/trailing columns of results.csv (the swept params follow "point")
FIRST_COLUMNS = ("point",)
RUN_COLUMNS = ("run", "seed", "accuracy")
LAST_COLUMNS = ("ideal_accuracy", "seconds_per_image")


def default_name(source: Optional[str], names: Sequence[str]) -> str:
    """``<config stem>_<param>_<param>`` (``sweep_...`` for a config given as a dict)."""
    stem = "sweep"
    if source and not source.startswith("<"):
        stem = Path(source).stem or "sweep"
    # parameters already named by the stem are not repeated (alpha_error.toml -> alpha_error)
    extra = [n for n in names if n.lower() not in stem.lower()]
    return safe_name("_".join([stem, *extra]))


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "sweep"


def check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name != name.strip():
        raise SweepError(f"--name {name!r}: expected a plain folder name (use --out for the parent folder)")
    return name


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = mkstemp_normal(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0644 under umask 022
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with_suppress_unlink(tmp)
        raise


def with_suppress_unlink(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


def comparable(desc: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a sweep description that identifies the sweep (no timestamps, no version)."""
    d = json.loads(json.dumps({k: v for k, v in desc.items() if k != "info"}))
    for p in d.get("params", []):
        p.pop("scale", None)
    return d


def describe_difference(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> str:
    """A short text of what differs between two sweep descriptions."""
    out = []
    ob, nb = old.get("base_config", {}), new.get("base_config", {})
    for k in sorted(set(ob) | set(nb)):
        if ob.get(k) != nb.get(k):
            out.append(f"{k}: {ob.get(k)!r} -> {nb.get(k)!r}")
    op = [(p["name"], p["values"]) for p in old.get("params", [])]
    np_ = [(p["name"], p["values"]) for p in new.get("params", [])]
    if [n for n, _ in op] != [n for n, _ in np_]:
        out.append(f"swept {', '.join(n for n, _ in op) or '-'} -> {', '.join(n for n, _ in np_) or '-'}")
    else:
        for (n, a), (_, b) in zip(op, np_):
            if a != b:
                out.append(f"values of {n}")
    for k in ("zip", "Nruns", "seed", "format"):
        if old.get(k) != new.get(k):
            out.append(f"{k}: {old.get(k)!r} -> {new.get(k)!r}")
    if not out and old.get("points") != new.get("points"):
        out.append("points")
    out = list(dict.fromkeys(out))  # Nruns/seed appear in the base config and at the top level
    if len(out) > limit:
        out = out[:limit] + [f"{len(out) - limit} more"]
    return "; ".join(out) or "unknown difference"


class SweepStore:
    """Reads and writes one sweep's output folder."""

    def __init__(self, folder: "str | Path"):
        self.folder = Path(folder)
        self.results_path = self.folder / RESULTS
        self.summary_path = self.folder / SUMMARY
        self.description_path = self.folder / DESCRIPTION
        self.points_dir = self.folder / POINTS
        self.plot_path = self.folder / PLOT
        self.header: Optional[list[str]] = None
        self._drop: Optional[tuple[list[str], list[list[str]]]] = None

    # ------------------------------------------------------------ checking
    def check(self, desc: Mapping[str, Any], *, resume: bool, npoints: int, nruns: int) -> set[int]:
        """Refuse a folder that holds another sweep or (without ``resume``) results; return complete points.

        Reads only; nothing is written. Rows of incomplete points (and a
        half-written last line) are remembered and dropped by :meth:`open`.
        """
        has_desc = self.description_path.exists()
        has_results = self.results_path.exists()
        if not has_desc and not has_results:
            return set()
        if has_results and not has_desc:
            raise SweepError(
                f"{self.folder} holds a {RESULTS} of an unknown sweep (no {DESCRIPTION}); "
                f"it is left untouched: choose another --name or --out"
            )
        try:
            old = json.loads(self.description_path.read_text())
        except (OSError, ValueError) as exc:
            raise SweepError(f"{self.description_path}: unreadable sweep description ({exc}); choose another --name or --out") from None
        if comparable(old) != comparable(desc):
            raise SweepError(
                f"{self.folder} holds results of a different sweep ({describe_difference(comparable(old), comparable(desc))}); "
                f"nothing was overwritten: choose another --name or --out, or delete that folder"
            )
        header, rows, dropped = self._read()
        complete, keep = self._complete(header, rows, npoints, nruns)
        if not resume and rows:
            raise SweepError(
                f"{self.folder} already holds results of this sweep ({len(complete)} of {npoints} points complete); "
                f"pass --resume to complete it, or choose another --name or --out"
            )
        if dropped or len(keep) != len(rows):
            self._drop = (header, keep)
        self.header = header
        return complete

    def _read(self) -> tuple[Optional[list[str]], list[list[str]], bool]:
        """Header, data rows and whether something (a half-written line) was dropped."""
        if not self.results_path.exists():
            return None, [], False
        with open(self.results_path, newline="") as f:
            text = f.read()
        if not text:
            return None, [], False
        dropped = False
        if not text.endswith("\n"):  # interrupted in the middle of a line
            cut = text.rfind("\n")
            text = text[: cut + 1] if cut >= 0 else ""
            dropped = True
        records = list(csv.reader(io.StringIO(text)))
        if not records:
            return None, [], dropped
        header, rows = records[0], records[1:]
        good = [r for r in rows if len(r) == len(header)]
        return header, good, dropped or len(good) != len(rows)

    @staticmethod
    def _complete(header, rows, npoints: int, nruns: int) -> tuple[set[int], list[list[str]]]:
        """Points with all runs present, and the rows to keep (those of complete points, deduplicated)."""
        if not header or "point" not in header or "run" not in header:
            return set(), []
        ip, ir = header.index("point"), header.index("run")
        by_point: dict[int, dict[int, list[str]]] = {}
        for r in rows:
            try:
                p, run = int(r[ip]), int(r[ir])
            except ValueError:
                continue
            by_point.setdefault(p, {}).setdefault(run, r)
        complete = {p for p, runs in by_point.items() if 0 <= p < npoints and set(runs) == set(range(nruns))}
        keep = [by_point[p][i] for p in sorted(complete) for i in range(nruns)]
        return complete, keep

    # ------------------------------------------------------------ writing
    # ------------------------------------------------------------ lock
    def lock(self) -> None:
        """Take ``.lock`` so that two drivers never write the same folder (creates the folder)."""
        import socket

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    other = json.loads(path.read_text())
                except (OSError, ValueError):
                    other = {}
                if other.get("host") == me["host"] and not _pid_alive(int(other.get("pid", -1))):
                    with_suppress_unlink(str(path))  # left by a driver that was killed
                    continue
                raise SweepError(
                    f"{self.folder} is in use by another sweep (pid {other.get('pid', '?')} on {other.get('host', '?')}); "
                    f"if none is running, delete {path}"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._locked = True
            return

    def unlock(self) -> None:
        if getattr(self, "_locked", False):
            with_suppress_unlink(str(self.folder / LOCK))
            self._locked = False

    def open(self, desc: Mapping[str, Any], point_tomls: Sequence[str]) -> None:
        """Create the folder, write ``sweep.json`` and ``points/<k>.toml``; drop partial rows."""
        self.folder.mkdir(parents=True, exist_ok=True)
        desc = dict(desc)
        if self.description_path.exists() and "info" in desc:
            # resuming: keep when the sweep started, record when it was resumed
            try:
                old = json.loads(self.description_path.read_text()).get("info", {})
            except (OSError, ValueError):
                old = {}
            info = dict(desc["info"])
            if "started" in old:
                info["resumed"] = list(old.get("resumed", [])) + [info.get("started")]
                info["started"] = old["started"]
            desc["info"] = info
        atomic_write(self.description_path, json.dumps(desc, indent=2) + "\n")
        self.points_dir.mkdir(exist_ok=True)
        for k, text in enumerate(point_tomls):
            path = self.points_dir / f"{k}.toml"
            if not path.exists() or path.read_text() != text:
                atomic_write(path, text)
        if self._drop is not None:
            header, keep = self._drop
            self._rewrite(header, keep)
            self._drop = None

    def _rewrite(self, header: Optional[list[str]], rows: Iterable[Sequence[str]]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header:
            w.writerow(header)
            w.writerows(rows)
        atomic_write(self.results_path, buf.getvalue())
        self.header = list(header) if header else None

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append the rows of one finished point (one write, flushed and fsynced)."""
        if not rows:
            return
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        if self.header is None and self.results_path.exists() and self.results_path.stat().st_size:
            self.header, old, _ = self._read()
        if self.header is None:
            self._rewrite(keys, [])
        elif any(k not in self.header for k in keys):
            # a point brought new columns (e.g. top5): rewrite with the wider header
            header, old, _ = self._read()
            new_header = _merge_columns(header or [], keys)
            idx = {c: i for i, c in enumerate(header or [])}
            widened = [[r[idx[c]] if c in idx else "" for c in new_header] for r in old]
            self._rewrite(new_header, widened)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in self.header])
        with open(self.results_path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def sort_results(self) -> None:
        """Rewrite results.csv ordered by (point, run) (rows were appended in completion order)."""
        header, rows, _ = self._read()
        if not header:
            return
        ip, ir = header.index("point"), header.index("run")
        ordered = sorted(rows, key=lambda r: (int(r[ip]), int(r[ir])))
        if ordered != rows:
            self._rewrite(header, ordered)

    def read_frame(self):
        import pandas as pd

        if not self.results_path.exists() or not self.results_path.stat().st_size:
            return pd.DataFrame()
        return pd.read_csv(self.results_path)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - e.g. Windows
        return True
    return True


def _merge_columns(header: Sequence[str], keys: Sequence[str]) -> list[str]:
    """Insert new columns before the trailing ideal_accuracy/seconds_per_image columns."""
    out = list(header)
    tail = [c for c in LAST_COLUMNS if c in out]
    body = [c for c in out if c not in tail]
    for k in keys:
        if k not in out:
            (tail.append(k) if k in LAST_COLUMNS else body.append(k))
            out = body + tail
    return body + [c for c in LAST_COLUMNS if c in tail] + [c for c in tail if c not in LAST_COLUMNS]
