"""How well each gradient aggregator keeps its promise, against torchjd on the same matrices.

    python benchmarks/guarantees.py [--per-k 30]

Random (K, 64) Jacobians, K = 2..6, rows scaled so that the gradient norms span 1, 10² or 10⁴,
in float32 and float64. For each method, the worst case over the matrices of the quantity its
promise is about (measured in float64 on the Jacobian itself):

* upgrad, dualproj — no conflict: min cos(gₖ, d) (≥ 0 promised);
* mgda — common descent: min (gₖᵀd − ‖d‖²)/(‖gₖ‖‖d‖) (≥ 0);
* cagrad (rescale 0) — the ball: max (‖d − g₀‖ − c‖g₀‖)/(c‖g₀‖) (≤ 0);
* nash-mtl (no clipping) — the bargaining condition: max |αₖgₖᵀd / mean − 1| (0);
* imtl-g — equal projections onto the unit gradients: max |uₖᵀd − mean| / ‖d‖ (0);
* config — equal cosines: max |cosₖ − mean| / mean (0).

torchjd (a dev dependency) is optional: its column reads "n/a" without it.
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from mtlkit.balancing import create

Measure = Callable[[Tensor, Tensor, Tensor], float]


def _jacobians(exponent: int, dtype: torch.dtype, per_k: int) -> Iterator[Tensor]:
    gen = torch.Generator().manual_seed(0)
    for k in range(2, 7):
        scales = torch.logspace(-exponent, exponent, k, dtype=torch.float64)
        for _ in range(per_k):
            jac = torch.randn(k, 64, generator=gen, dtype=torch.float64) * scales[:, None]
            yield jac.to(dtype)


def _min_cos(jac: Tensor, w: Tensor, d: Tensor) -> float:
    return float(((jac @ d) / (jac.norm(dim=1) * d.norm())).min())


def _descent(jac: Tensor, w: Tensor, d: Tensor) -> float:
    size = d.norm()
    return 0.0 if size == 0 else float(((jac @ d - size**2) / (jac.norm(dim=1) * size)).min())


def _ball(jac: Tensor, w: Tensor, d: Tensor, c: float = 0.4) -> float:
    g0 = jac.mean(0)
    return float(((d - g0).norm() - c * g0.norm()) / (c * g0.norm()))


def _bargaining(jac: Tensor, w: Tensor, d: Tensor) -> float:
    products = w * (jac @ d)
    return float((products / products.mean() - 1).abs().max())


def _projections(jac: Tensor, w: Tensor, d: Tensor) -> float:
    p = (jac / jac.norm(dim=1, keepdim=True)) @ d
    return float((p - p.mean()).abs().max() / d.norm())


def _cosines(jac: Tensor, w: Tensor, d: Tensor) -> float:
    cos = (jac @ d) / (jac.norm(dim=1) * d.norm())
    return float((cos - cos.mean()).abs().max() / cos.mean().abs())


# name -> (our options, torchjd weighting factory name or None, measure, worst-case reduction)
METHODS: dict[str, tuple[dict, str | None, Measure, Callable]] = {
    "upgrad": ({}, "UPGradWeighting", _min_cos, min),
    "dualproj": ({}, "DualProjWeighting", _min_cos, min),
    "mgda": ({}, "MGDAWeighting", _descent, min),
    "cagrad": ({"rescale": 0}, "CAGradWeighting", _ball, max),
    "nash-mtl": ({"max_norm": 0.0}, None, _bargaining, max),
    "imtl-g": ({}, "IMTLGWeighting", _projections, max),
    "config": ({}, None, _cosines, max),
}


def _torchjd(name: str | None) -> Callable[[Tensor], Tensor] | None:
    if name is None:
        return None
    try:
        import torchjd.aggregation as tja
    except ImportError:
        return None
    kwargs = {"c": 0.4} if name == "CAGradWeighting" else {}
    try:
        weighting = getattr(tja, name)(**kwargs)
    except ImportError:  # an optional solver of torchjd is missing
        return None
    return weighting


def _worst(
    weigh: Callable[[Tensor], Tensor], measure: Measure, reduce, jacobians, *, reference: bool
) -> float:
    """The worst measured value; a *reference* solver that fails on a matrix counts as not
    measured there (ours must never fail: its errors propagate)."""
    values = []
    for jac in jacobians:
        try:
            w = weigh(jac @ jac.T).double()
        except Exception:
            if not reference:
                raise
            values.append(math.nan)
            continue
        true = jac.double()
        values.append(measure(true, w, w @ true))
    finite = [v for v in values if math.isfinite(v)]
    return reduce(finite) if finite else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-k", type=int, default=30, help="matrices per K (default 30)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    columns = ("float32 mtlkit", "float32 torchjd", "float64 mtlkit", "float64 torchjd")
    print("| method | spread | " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|")
    for name, (options, reference, measure, reduce) in METHODS.items():
        ours = create(name, **options).weights_from_gramian
        theirs = _torchjd(reference)
        for exponent in (0, 1, 2):
            cells = []
            for dtype in (torch.float32, torch.float64):
                matrices = _jacobians(exponent, dtype, args.per_k)
                cells.append(_worst(ours, measure, reduce, matrices, reference=False))
                cells.append(
                    math.nan
                    if theirs is None
                    else _worst(
                        theirs,
                        measure,
                        reduce,
                        _jacobians(exponent, dtype, args.per_k),
                        reference=True,
                    )
                )
            text = " | ".join("n/a" if math.isnan(v) else f"{v:+.2e}" for v in cells)
            print(f"| {name} | 1e{2 * exponent} | {text} |", flush=True)


if __name__ == "__main__":
    main()
