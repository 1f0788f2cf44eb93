"""How a product ``Y = X W^T`` is cut to a device's stores (``ProductPlan``, ``plan_product``).

The stores bound each RUN: ``t_block`` tokens fit the activation store (and ``max_t``),
``n_block`` outputs fit ``max_n``, the weight store, the result store and the threshold store.
Beyond that the plan keeps as many outputs' weights (and thresholds) resident as the weight and
threshold stores hold (a ``group`` of RUNs at different bases), and picks the loop order that
moves fewer words over the link: weight groups outside (each weight row sent once, activations
once per group) or token blocks outside (activations sent once, weights once per token block).
A product whose weights fit the store sends every weight and every activation exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .device_config import DeviceConfig

__all__ = ["ProductPlan", "plan_product"]


@dataclass(frozen=True)
class ProductPlan:
    """A product's tiling.

    Members
    -------
    t_block : int
        Tokens per activation load (and per RUN).
    n_block : int
        Outputs per RUN.
    group : int
        Outputs whose weight rows are resident together (a multiple of ``n_block``, or all).
    weights_outer : bool
        Loop over weight groups outside token blocks (else token blocks outside).
    link_words : int
        Activation and weight words the plan sends (thresholds and results not counted).
    """

    t_block: int
    n_block: int
    group: int
    weights_outer: bool
    link_words: int


def plan_product(dev: DeviceConfig, t: int, n: int, k: int, levels: int,
                 bits: int = 1) -> ProductPlan:
    """Tile ``t`` tokens x ``n`` outputs x ``k`` elements (``k <= max_k_at(bits)``) for
    ``dev``; ``levels`` threshold sets per output (0 for integer results); activations of
    ``bits`` bits (a row is that many planes of words). ``ValueError`` if one tile cannot
    fit."""
    c = dev.core
    if not (1 <= bits <= c.max_bits and 0 < k <= c.max_k_at(bits) and t > 0 and n > 0
            and levels >= 0):
        raise ValueError(f"plan_product needs 1 <= bits <= {c.max_bits}, 0 < k <= "
                         f"max_k_at(bits), t, n > 0 and levels >= 0, not t={t}, n={n}, k={k}, "
                         f"levels={levels}, bits={bits}")
    kw = -(-k // c.lanes)
    t_block = min(t, c.max_t, dev.act_words // (bits * kw))
    if t_block < 1:
        raise ValueError(f"the device's activation store ({dev.act_words} words) cannot hold "
                         f"one row of {bits} planes of {kw} words")
    per_tile = -(-t_block // c.rows) if levels else t_block
    rows_fit = dev.weight_words // kw
    thr_fit = dev.thresh_words // levels if levels else rows_fit
    n_block = min(n, c.max_n, rows_fit, (dev.result_beats // per_tile) * c.cols, thr_fit)
    if n_block < 1:
        raise ValueError(f"the device's stores cannot hold one tile of {t_block} tokens of "
                         f"{k} bits with {levels} threshold sets (result store "
                         f"{dev.result_beats} beats, threshold store {dev.thresh_words})")
    fit = min(rows_fit, thr_fit)
    group = n if fit >= n else (fit // n_block) * n_block
    groups, t_blocks = -(-n // group), -(-t // t_block)
    x_words, w_words = t * bits * kw, n * kw
    outer_w = w_words + groups * x_words
    outer_t = x_words + t_blocks * w_words
    weights_outer = outer_w <= outer_t
    return ProductPlan(t_block, n_block, group, weights_outer,
                       outer_w if weights_outer else outer_t)
