"""Named, seeded, reproducible input families.

Every family draws in float64 and casts to the target format, so every value is exactly
representable there (the cast is the rounding; the audit then treats the cast values as exact).
The draws are the same on every machine: they use the generator, IEEE arithmetic and libm
(:func:`_libm`), never numpy's exp, log or power, whose results depend on the CPU (below); the
one exception is ``attention_causal``'s dot products, computed by BLAS, whose summation order
may depend on the CPU too (the same on the Zen 3 and Zen 5 machines compared).
A family is a function ``(rng, fmt, rows, n) -> float64 array of shape (rows, n)`` registered in
``FAMILIES`` with a one-line description; :func:`make` does the seeding and the cast.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from softmax_bench.formats import Format, format_of

__all__ = ["Family", "FAMILIES", "DEFAULT_FAMILIES", "make", "family_names", "parse_family", "read_inputs", "load_rows"]


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    draw: Callable[[np.random.Generator, Format, int, int], np.ndarray]
    #: the row lengths the family is about (None: any, the audit's --sizes)
    sizes: tuple | None = None


FAMILIES: dict[str, Family] = {}


def _family(name: str, description: str, sizes: tuple | None = None):
    def register(draw):
        FAMILIES[name] = Family(name, description, draw, sizes)
        return draw

    return register


def _libm(f, a):
    """``f`` (a function of :mod:`math`, libm's) on every element of the float64 array ``a``.
    numpy's own exp and power run SIMD code of numpy's on AVX-512 machines and libm elsewhere,
    and the two differ in the last bit: the default audit's float64 ``wide`` and ``vocab``
    records (and those inputs' cotangents) differed between a Zen 5 (AVX-512) and a Zen 3
    (AVX2) machine. libm is what the generator's own normal and gamma draws use."""
    return np.fromiter(map(f, a.ravel()), np.float64, a.size).reshape(a.shape)


def _exp(v):
    """libm's exp, +inf where it overflows (as numpy's)."""
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _normal(scale):
    return lambda rng, fmt, rows, n: rng.standard_normal((rows, n)) * scale


_family("normal1", "N(0, 1)")(_normal(1.0))
_family("normal10", "N(0, 10^2)")(_normal(10.0))
_family("normal100", "N(0, 100^2): spreads past every format's exp range")(_normal(100.0))


@_family("uniform", "U(-4, 4)")
def _uniform(rng, fmt, rows, n):
    return rng.uniform(-4.0, 4.0, (rows, n))


@_family("wide", "log-uniform magnitudes from 1e-3 to 2x the exp overflow edge, random signs")
def _wide(rng, fmt, rows, n):
    hi = math.log(2 * fmt.exp_overflow)
    return rng.choice([-1.0, 1.0], (rows, n)) * _libm(_exp, rng.uniform(math.log(1e-3), hi, (rows, n)))


@_family("far_positive", "N(0, 1) shifted to 0.9-1.5x the exp overflow edge (naive overflows)")
def _far_positive(rng, fmt, rows, n):
    shift = fmt.exp_overflow * rng.uniform(0.9, 1.5, (rows, 1))
    return shift + rng.standard_normal((rows, n))


@_family("far_negative", "N(0, 1) shifted to 0.9-1.5x the exp underflow edge (naive underflows)")
def _far_negative(rng, fmt, rows, n):
    shift = fmt.exp_underflow * rng.uniform(0.9, 1.5, (rows, 1))
    return shift + rng.standard_normal((rows, n))


@_family("ties", "N(0, 1) with k = 1..min(n, 8) entries tied at the row maximum")
def _ties(rng, fmt, rows, n):
    x = rng.standard_normal((rows, n))
    for row in x:
        k = rng.integers(1, min(n, 8) + 1)
        top = row.max() + 1.0
        row[rng.choice(n, size=k, replace=False)] = top
    return x


@_family("one_hot", "one entry larger by half the exp underflow range, the rest N(0, 1)")
def _one_hot(rng, fmt, rows, n):
    x = rng.standard_normal((rows, n))
    x[np.arange(rows), rng.integers(0, n, rows)] += 0.5 * -fmt.exp_underflow
    return x


@_family("masked", "N(0, 3^2) with about a quarter of the entries -inf (attention masks)")
def _masked(rng, fmt, rows, n):
    x = rng.standard_normal((rows, n)) * 3.0
    mask = rng.random((rows, n)) < 0.25
    mask[np.arange(rows), rng.integers(0, n, rows)] = False  # keep one finite entry per row
    x[mask] = -np.inf
    return x


@_family("posinf", "N(0, 1) with one or two +inf entries (reference: NaN row, see README)")
def _posinf(rng, fmt, rows, n):
    x = rng.standard_normal((rows, n))
    for row in x:
        row[rng.choice(n, size=min(n, rng.integers(1, 3)), replace=False)] = np.inf
    return x


@_family("classifier", "classifier logits: N(0, 1.5^2) with 1-3 dominant classes 4-12 above "
                       "(the output layer of a trained classifier; n = classes)")
def _classifier(rng, fmt, rows, n):
    x = rng.standard_normal((rows, n)) * 1.5
    for row in x:
        top = rng.choice(n, size=min(n, rng.integers(1, 4)), replace=False)
        row[top] += rng.uniform(4.0, 12.0, top.size)
    return x


@_family("temperature", "N(0, 1) scaled by 2^k, k uniform from -24 to the format's top: "
                        "seed property 5's sweep, from uniform (a -> 0) to one-hot (a -> inf)")
def _temperature(rng, fmt, rows, n):
    top = math.floor(math.log2(fmt.max_finite / 8.0))
    return rng.standard_normal((rows, n)) * np.ldexp(1.0, rng.integers(-24, top + 1, (rows, 1)))


@_family("vocab", "language-model vocabulary rows: Student-t(4) logits with 1-16 tokens 8-20 "
                  "above, at temperature 10^U(-1, 1) (n = vocabulary: Llama 2 32,000, Llama 3 "
                  "128,256 ~ 128,000, Gemma 256,000)", sizes=(32_000, 128_000, 256_000))
def _vocab(rng, fmt, rows, n):
    x = rng.standard_t(4, (rows, n)) * 1.5
    for row in x:
        top = rng.choice(n, size=min(n, rng.integers(1, 17)), replace=False)
        row[top] = rng.uniform(8.0, 20.0, top.size)
    return x / _libm(lambda u: math.pow(10.0, u), rng.uniform(-1.0, 1.0, (rows, 1)))


@_family("attention_causal", "attention scores q.k/sqrt(d) of N(0, 1) queries and keys, d = 64 "
                             "or 128, with a causal mask (-inf after the query's position); about "
                             "one row in eight fully masked (a padded query: the reference is NaN)",
         sizes=(128, 1024, 4096, 32_768))
def _attention_causal(rng, fmt, rows, n):
    d = int(rng.choice([64, 128]))
    keys = rng.standard_normal((n, d))
    x = rng.standard_normal((rows, d)) @ keys.T / np.sqrt(d)
    position = rng.integers(0, n, rows)
    x[np.arange(n)[None, :] > position[:, None]] = -np.inf
    x[rng.random(rows) < 0.125] = -np.inf
    return x


#: The default audit's families: every family of any size, and the sized ones at one size each.
DEFAULT_FAMILIES = [f.name for f in FAMILIES.values() if f.sizes is None] + ["vocab:32000", "attention_causal:1024"]


def family_names() -> list[str]:
    return list(FAMILIES)


def parse_family(text: str) -> tuple[str, list[int] | None]:
    """``"vocab:256000"`` -> ``("vocab", [256000])``; ``"vocab"`` -> ``("vocab", [its sizes])``;
    ``"normal1"`` -> ``("normal1", None)`` (the audit's --sizes). ValueError names the problem."""
    name, _, size = text.partition(":")
    if name not in FAMILIES:
        raise ValueError(f"unknown input family {name!r}: choose from {', '.join(FAMILIES)}")
    if size:
        if not size.isdigit() or int(size) < 1:
            raise ValueError(f"invalid family size {text!r}: write NAME:N with N >= 1, e.g. vocab:32000")
        return name, [int(size)]
    sizes = FAMILIES[name].sizes
    return name, None if sizes is None else list(sizes)


def make(family: str, dtype, rows: int, n: int, seed: int = 0) -> np.ndarray:
    """``rows`` x ``n`` inputs of ``family`` in ``dtype``, reproducible from ``seed``.

    The stream depends on (seed, family, dtype, n), so changing one case leaves the others'
    inputs as they were. In a format without infinities (float8_e4m3fn) values beyond its range,
    infinities included, saturate to its largest finite: a mask is then -448, as frameworks mask
    with ``finfo(dtype).min`` there (the cast alone would make them NaN)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown input family {family!r}: choose from {', '.join(FAMILIES)}")
    if rows < 1 or n < 1:
        raise ValueError(f"rows and n must be >= 1, got rows={rows}, n={n}")
    fmt = format_of(dtype)
    key = zlib.crc32(f"{family}/{fmt.name}/{n}".encode())
    rng = np.random.default_rng([seed, key])
    x = FAMILIES[family].draw(rng, fmt, rows, n)
    if not fmt.has_inf:
        x = np.clip(x, -fmt.max_finite, fmt.max_finite)  # NaN stays NaN
    with np.errstate(over="ignore"):
        return x.astype(fmt.dtype)


def cotangent(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The cotangent ``g`` a backward-pass case uses with inputs ``x``: standard normal values in
    ``x``'s dtype and shape (what a loss gradient looks like), reproducible from ``seed`` and
    ``x``'s bytes (so every process that holds ``x`` draws the same ``g``)."""
    fmt = format_of(x.dtype)
    key = zlib.crc32(np.ascontiguousarray(x).view(np.uint8).tobytes())
    rng = np.random.default_rng([seed, key, 0x6A])
    return rng.standard_normal(x.shape).astype(fmt.dtype)


# --- the user's own rows (--inputs) ----------------------------------------------------------

def read_inputs(path) -> list[dict]:
    """Every array of a ``.npy`` or ``.npz`` file as an input family: a list of JSON-ready dicts
    ``{"family", "path", "key", "dtype", "n", "rows", "sha256"}``. The last axis holds the rows;
    the family is named after the file (``logits`` for ``logits.npy``, ``acts.layer1`` for the
    array ``layer1`` of ``acts.npz``). ValueError names the file and what is wrong with it."""
    import hashlib
    import io
    from pathlib import Path

    path = Path(path)
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"--inputs {path}: give a .npy or .npz file")
    try:
        data = path.read_bytes()
        loaded = np.load(io.BytesIO(data), allow_pickle=False)  # one read: digest and arrays
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"--inputs {path}: cannot read it as a numpy file: {err}") from None
    arrays = dict(loaded.items()) if path.suffix == ".npz" else {None: loaded}
    if not arrays:
        raise ValueError(f"--inputs {path}: the file holds no arrays")
    digest = hashlib.sha256(data).hexdigest()
    found = []
    for key, a in arrays.items():
        where = f"--inputs {path}" + (f" (array {key!r})" if key else "")
        try:
            fmt = format_of(a.dtype)
        except TypeError as err:
            raise ValueError(f"{where}: {err}") from None
        if a.ndim == 0 or a.size == 0:
            raise ValueError(f"{where}: shape {a.shape} holds no row (the last axis holds the rows)")
        found.append({
            "family": path.stem if key is None else f"{path.stem}.{key}",
            "path": str(path.resolve()), "key": key, "dtype": fmt.name, "n": int(a.shape[-1]),
            "rows": int(a.size // a.shape[-1]), "sha256": digest,
        })
    return found


def load_rows(spec: dict, rows: int, seed: int = 0) -> np.ndarray:
    """``rows`` rows of a :func:`read_inputs` family, as they are in the file: all of them when
    there are no more, else a sample without replacement (seeded by ``seed`` and the family name),
    kept in file order."""
    loaded = np.load(spec["path"], allow_pickle=False)
    a = loaded[spec["key"]] if spec["key"] is not None else loaded
    a = np.asarray(a).reshape(-1, a.shape[-1])
    if a.shape[0] > rows:
        rng = np.random.default_rng([seed, zlib.crc32(spec["family"].encode())])
        a = a[np.sort(rng.choice(a.shape[0], size=rows, replace=False))]
    return np.ascontiguousarray(a)
