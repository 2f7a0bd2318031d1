"""All profiled streams of one network: :class:`ProfileStore` (manual 9.4, 9.6).

One :class:`~adc_calibration.collectors.StreamingHistogram` per ADC input
stream (layer, weight bit slice, input bit) and per MVM layer's input
activations, in bounded memory; optionally a raw dump of every value to disk
(CrossSim's profiling output) and reservoir samples. ``save`` / ``load``
write and read the whole store as one ``.npz``.
"""
from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from adc_calibration.collectors import ReservoirSample, StreamingHistogram, to_numpy

__all__ = ["ProfileStore"]

# ---------------------------------------------------------------------------
Key = tuple[str, int, Optional[int]]


def _norm_key(key: Any) -> Key:
    if isinstance(key, str):
        return (key, 0, None)
    if not isinstance(key, tuple) or not 1 <= len(key) <= 3:
        raise KeyError(f"profile keys are (layer, slice, input_bit) tuples, got {key!r}")
    layer = str(key[0])
    sl = int(key[1]) if len(key) > 1 and key[1] is not None else 0
    ib = key[2] if len(key) > 2 else None
    return (layer, sl, None if ib is None or int(ib) < 0 else int(ib))


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s) or "_"


class ProfileStore(Mapping):
    """Profiled ADC inputs and activations of one network, in bounded memory.

    A read-only mapping ``(layer, slice, input_bit) -> StreamingHistogram`` of
    ADC inputs (``input_bit`` is ``None`` when input bits are not resolved;
    ``slice`` is 0 without weight bit slicing), plus :attr:`activations`, a
    dict ``layer -> StreamingHistogram`` of each MVM layer's input activations.

    Parameters
    ----------
    nbins:
        Bins of every histogram.
    raw_dir:
        If given, every value passed to :meth:`add_adc` / :meth:`add_activation`
        is also appended (float32) to a file in this folder, like CrossSim's
        profiling output; :meth:`load_raw` reads one back (memory-mapped) and
        :meth:`export_raw_npy` converts them to ``.npy`` files. Off by default.
    reservoir_k:
        If > 0, also keep a :class:`ReservoirSample` of this size per key.
    seed:
        Seed of the reservoir samples.
    """

    def __init__(self, nbins: int = 4096, raw_dir: Optional[os.PathLike | str] = None,
                 reservoir_k: int = 0, seed: Optional[int] = 0) -> None:
        self.nbins = int(nbins)
        self.adc: dict[Key, StreamingHistogram] = {}
        self.activations: dict[str, StreamingHistogram] = {}
        self.reservoirs: dict[Any, ReservoirSample] = {}
        self.reservoir_k = int(reservoir_k)
        self.seed = seed
        self.raw_dir = Path(raw_dir) if raw_dir is not None else None
        self._raw_files: dict[Any, str] = {}
        if self.raw_dir is not None:
            self.raw_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------- Mapping
    def __getitem__(self, key: Any) -> StreamingHistogram:
        return self.adc[_norm_key(key)]

    def __iter__(self) -> Iterator[Key]:
        return iter(sorted(self.adc, key=lambda k: (k[0], k[1], -1 if k[2] is None else k[2])))

    def __len__(self) -> int:
        return len(self.adc)

    def __contains__(self, key: Any) -> bool:
        try:
            return _norm_key(key) in self.adc
        except KeyError:
            return False

    # ------------------------------------------------------------- updates
    def add_adc(self, layer: str, values: Any, slice: int = 0, input_bit: Optional[int] = None) -> None:
        """Add ADC inputs of ``layer``'s weight bit slice ``slice`` (and input bit ``input_bit``)."""
        key = _norm_key((layer, slice, input_bit))
        x = to_numpy(values)
        h = self.adc.get(key)
        if h is None:
            h = self.adc[key] = StreamingHistogram(self.nbins)
        h.update(x)
        self._side(("adc",) + key, x)

    def add_activation(self, layer: str, values: Any) -> None:
        """Add input activations (DAC inputs) of ``layer``."""
        x = to_numpy(values)
        h = self.activations.get(layer)
        if h is None:
            h = self.activations[layer] = StreamingHistogram(self.nbins)
        h.update(x)
        self._side(("act", layer), x)

    def _side(self, rkey: tuple, x: np.ndarray) -> None:
        if self.reservoir_k > 0:
            r = self.reservoirs.get(rkey)
            if r is None:
                seed = None if self.seed is None else zlib.crc32(repr((self.seed,) + rkey).encode())
                r = self.reservoirs[rkey] = ReservoirSample(self.reservoir_k, seed)
            r.update(x)
        if self.raw_dir is not None:
            fname = self._raw_files.get(rkey)
            if fname is None:
                parts = [rkey[0], _safe_name(rkey[1])]
                if rkey[0] == "adc":
                    parts.append(f"s{rkey[2]}")
                    if rkey[3] is not None:
                        parts.append(f"b{rkey[3]}")
                fname = "__".join(parts) + ".f32"
                self._raw_files[rkey] = fname
                self._write_raw_index()
            with open(self.raw_dir / fname, "ab") as f:
                x.astype(np.float32).tofile(f)

    def _write_raw_index(self) -> None:
        entries = [list(k) + [v] for k, v in self._raw_files.items()]
        tmp = self.raw_dir / "index.json.tmp"
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, self.raw_dir / "index.json")

    # ------------------------------------------------------------- queries
    def layers(self) -> list[str]:
        """Layer names with ADC or activation data, sorted."""
        return sorted({k[0] for k in self.adc} | set(self.activations))

    def slices(self, layer: str) -> list[int]:
        return sorted({k[1] for k in self.adc if k[0] == layer})

    def input_bits(self, layer: str, slice: int = 0) -> list[Optional[int]]:
        return sorted({k[2] for k in self.adc if k[0] == layer and k[1] == slice},
                      key=lambda b: -1 if b is None else b)

    def adc_histogram(self, layer: str, slice: Optional[int] = 0) -> StreamingHistogram:
        """ADC inputs of ``layer``/``slice`` merged over input bits (they share one ADC range,
        manual 9.3); ``slice=None`` merges all slices too."""
        keys = [k for k in self.adc if k[0] == layer and (slice is None or k[1] == slice)]
        if not keys:
            raise KeyError(f"no profiled ADC inputs for layer {layer!r}" + ("" if slice is None else f", slice {slice}"))
        h = StreamingHistogram(self.nbins)
        for k in keys:
            h.merge(self.adc[k])
        return h

    def slice_histograms(self, layer: str) -> list[StreamingHistogram]:
        """One histogram per weight bit slice of ``layer`` (input bits merged), slice 0 first."""
        return [self.adc_histogram(layer, s) for s in self.slices(layer)]

    def merge(self, other: "ProfileStore") -> "ProfileStore":
        """Add all histograms of ``other`` (e.g. from another worker). Returns ``self``."""
        for k, h in other.adc.items():
            if k in self.adc:
                self.adc[k].merge(h)
            else:
                self.adc[k] = h.copy()
        for k, h in other.activations.items():
            if k in self.activations:
                self.activations[k].merge(h)
            else:
                self.activations[k] = h.copy()
        return self

    @property
    def nbytes(self) -> int:
        n = sum(h.nbytes for h in self.adc.values()) + sum(h.nbytes for h in self.activations.values())
        return n + sum(r.nbytes for r in self.reservoirs.values())

    # -------------------------------------------------------------- raw data
    def raw_files(self) -> dict[Any, Path]:
        """``{("adc", layer, slice, input_bit) | ("act", layer): path}`` of the raw dumps."""
        if self.raw_dir is None:
            return {}
        return {k: self.raw_dir / v for k, v in self._raw_files.items()}

    def load_raw(self, key: Any, activation: bool = False) -> np.ndarray:
        """Memory-mapped float32 raw values of an ADC key (or of an activation layer)."""
        if self.raw_dir is None:
            raise KeyError("raw values were not recorded (create the ProfileStore with raw_dir=...)")
        rkey = ("act", str(key)) if activation else ("adc",) + _norm_key(key)
        fname = self._raw_files.get(rkey)
        if fname is None:
            raise KeyError(f"no raw values recorded for {key!r}")
        path = self.raw_dir / fname
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=np.float32)
        return np.memmap(path, dtype=np.float32, mode="r")

    def export_raw_npy(self, chunk: int = 1 << 22) -> list[Path]:
        """Convert every raw dump to a ``.npy`` file next to it (chunked, bounded memory)."""
        out = []
        for rkey, fname in self._raw_files.items():
            src = self.raw_dir / fname
            n = src.stat().st_size // 4
            dst = src.with_suffix(".npy")
            arr = np.lib.format.open_memmap(dst, mode="w+", dtype=np.float32, shape=(n,))
            with open(src, "rb") as f:
                for start in range(0, n, chunk):
                    m = min(chunk, n - start)
                    arr[start : start + m] = np.fromfile(f, dtype=np.float32, count=m)
            arr.flush()
            del arr
            out.append(dst)
        return out

    # --------------------------------------------------------- persistence
    _SCALARS = ("nbins", "exponent", "offset", "min", "max", "count", "sum", "sumsq", "nonfinite")

    def _entries(self) -> list[tuple[dict, np.ndarray]]:
        ents = []
        for k in self:
            d = self.adc[k].to_dict()
            meta = {"kind": "adc", "layer": k[0], "slice": k[1], "input_bit": -1 if k[2] is None else k[2]}
            meta.update({s: d[s] for s in self._SCALARS})
            ents.append((meta, d["counts"]))
        for layer in sorted(self.activations):
            d = self.activations[layer].to_dict()
            meta = {"kind": "act", "layer": layer}
            meta.update({s: d[s] for s in self._SCALARS})
            ents.append((meta, d["counts"]))
        return ents

    def save(self, path: os.PathLike | str) -> Path:
        """Save all histograms to ``path``: HDF5 (``.h5``/``.hdf5``) or ``.npz``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ents = self._entries()
        header = {"format": "xbarsim-profile", "version": 1, "nbins": self.nbins}
        tmp = path.with_name(path.name + ".tmp")
        if path.suffix.lower() == ".npz":
            arrays = {f"counts_{i}": c for i, (_, c) in enumerate(ents)}
            arrays["meta"] = np.array(json.dumps({"header": header, "entries": [m for m, _ in ents]}))
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        else:
            import h5py

            with h5py.File(tmp, "w") as f:
                for k, v in header.items():
                    f.attrs[k] = v
                for i, (m, c) in enumerate(ents):
                    ds = f.create_dataset(f"h{i:05d}", data=c, compression="gzip", compression_opts=4)
                    for k, v in m.items():
                        ds.attrs[k] = v
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: os.PathLike | str) -> "ProfileStore":
        """Load a store written by :meth:`save`."""
        path = Path(path)
        ents: list[tuple[dict, np.ndarray]] = []
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                header = meta["header"]
                for i, m in enumerate(meta["entries"]):
                    ents.append((m, z[f"counts_{i}"]))
        else:
            import h5py

            with h5py.File(path, "r") as f:
                header = {k: f.attrs[k] for k in f.attrs}
                for name in sorted(f.keys()):
                    ds = f[name]
                    m = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in ds.attrs.items()}
                    ents.append((m, ds[()]))
        if str(header.get("format")) != "xbarsim-profile":
            raise ValueError(f"{path}: not an xbarsim profile file")
        store = cls(nbins=int(header["nbins"]))
        for m, c in ents:
            d = {s: m[s] for s in cls._SCALARS}
            d["counts"] = c
            h = StreamingHistogram.from_dict(d)
            if str(m["kind"]) == "adc":
                store.adc[_norm_key((str(m["layer"]), int(m["slice"]), int(m["input_bit"])))] = h
            else:
                store.activations[str(m["layer"])] = h
        return store

    def __repr__(self) -> str:
        return f"ProfileStore({len(self.adc)} ADC histograms, {len(self.activations)} activation histograms)"
