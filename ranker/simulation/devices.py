"""Devices as data: each simulated device has a traffic share and an examination curve.

`--devices` entries are `name[:share[:eta]]`. A device's examination at position k is
P·(1/k)^η (P = `--top-examination`), or the explicit curve an `--examination-curve` JSON file
gives it ({device: [e1, e2, …]}, at least NUM_SHOWN values in (0, 1], used as given). Plain names
keep the built-in defaults (desktop 0.5 / η 0.5, mobile 0.35 / η 1.5, tablet 0.15 / η 1.0); any
other name gets the weight 1/len(devices) and η = 1. Shares are renormalised to sum to 1.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np

from ranker import storage
from ranker.errors import RankerError
from ranker.features.spec import JUDGED_DEVICE
from ranker.simulation.options import NUM_SHOWN

DEVICE_ETA = {"desktop": 0.5, "tablet": 1.0, "mobile": 1.5}
DEVICE_SHARE = {"desktop": 0.5, "mobile": 0.35, "tablet": 0.15}
UNKNOWN_ETA = 1.0
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    share: float  # renormalised traffic share
    eta: float | None  # exponent of (1/k)^η; None where an explicit curve is given
    examination: tuple[float, ...]  # absolute p(seen | k, device), k = 1..NUM_SHOWN

    @property
    def propensity(self) -> list[float]:
        """Examination relative to position 1."""
        return [v / self.examination[0] for v in self.examination]


def parse_devices(entries, top_examination: float = 1.0,
                  curve_path: str | None = None) -> list[Device]:
    """Validated devices from `name[:share[:eta]]` entries (a list, or one comma-separated string)."""
    if isinstance(entries, str):
        entries = [e for e in entries.split(",") if e]
    entries = list(entries or [])
    if not entries:
        raise RankerError("--devices: give at least one device, e.g. desktop,mobile,tablet")
    parsed = [_parse_entry(e) for e in entries]
    names = [name for name, _, _ in parsed]
    if len(set(names)) != len(names):
        raise RankerError(f"--devices: duplicate device in {','.join(names)}")
    curves = load_curves(curve_path, names) if curve_path else {}
    weights = np.array([share if share is not None else DEVICE_SHARE.get(name, 1.0 / len(names))
                        for name, share, _ in parsed])
    weights = weights / weights.sum()
    devices = []
    for (name, _, eta), weight in zip(parsed, weights):
        if name in curves:
            if eta is not None:
                raise RankerError(f"--devices: {name} has both an η and an --examination-curve; "
                                  "give one")
            devices.append(Device(name, float(weight), None, curves[name]))
            continue
        eta = DEVICE_ETA.get(name, UNKNOWN_ETA) if eta is None else eta
        curve = top_examination * (1.0 / np.arange(1, NUM_SHOWN + 1)) ** eta
        devices.append(Device(name, float(weight), float(eta), tuple(float(v) for v in curve)))
    return devices


def _parse_entry(entry) -> tuple[str, float | None, float | None]:
    if not isinstance(entry, str):
        raise RankerError(f"--devices: {entry!r} is not a device entry (name[:share[:eta]])")
    parts = entry.split(":")
    name = parts[0]
    if not _DEVICE_NAME.match(name):
        raise RankerError(f"--devices: {name!r} is not a device name (letters, digits, _ . -)")
    if name == JUDGED_DEVICE:
        raise RankerError(f"--devices: '{JUDGED_DEVICE}' is reserved for judged lists")
    if len(parts) > 3:
        raise RankerError(f"--devices: {entry!r} has more than name:share:eta")
    share = _number(entry, parts[1], "share") if len(parts) > 1 and parts[1] else None
    eta = _number(entry, parts[2], "eta") if len(parts) > 2 and parts[2] else None
    if share is not None and share <= 0:
        raise RankerError(f"--devices: {entry!r}: share must be > 0")
    if eta is not None and not 0 <= eta <= 10:
        raise RankerError(f"--devices: {entry!r}: eta must be in [0, 10]")
    return name, share, eta


def _number(entry: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RankerError(f"--devices: {entry!r}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise RankerError(f"--devices: {entry!r}: {what} must be finite")
    return value


def load_curves(path: str, names: list[str]) -> dict[str, tuple[float, ...]]:
    """{device: first NUM_SHOWN values} of an --examination-curve file, validated."""
    where = f"--examination-curve {path}"
    try:
        obj = json.loads(storage.read_bytes(path).decode("utf-8"))
    except OSError as err:
        raise RankerError(f"{where}: cannot read ({err.strerror})") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise RankerError(f"{where}: not valid JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(obj, dict) or not obj:
        raise RankerError(f"{where}: expected a JSON object {{device: [e1, e2, ...]}}")
    curves = {}
    for name, curve in obj.items():
        if name not in names:
            raise RankerError(f"{where}: device {name!r} is not in --devices ({','.join(names)})")
        if not isinstance(curve, list) or len(curve) < NUM_SHOWN:
            raise RankerError(f"{where}: {name}: a list of at least {NUM_SHOWN} probabilities")
        for v in curve:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
            if not ok:
                raise RankerError(f"{where}: {name}: {v!r} is not a probability in (0, 1]")
        curves[name] = tuple(float(v) for v in curve[:NUM_SHOWN])
    return curves


def examination_matrix(devices: list[Device]) -> np.ndarray:
    """[devices, NUM_SHOWN] absolute examination probabilities."""
    return np.array([d.examination for d in devices], dtype=np.float64)
