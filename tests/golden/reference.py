"""A straightforward +-1 integer-matrix formulation of the spec, written apart from the golden
model: no packing, no popcount, one matrix product per step."""

import numpy as np


def pm(bits):
    """{0,1} -> {-1,+1} as int64."""
    return 2 * np.asarray(bits, dtype=np.int64) - 1


def linear(xbits, wbits):
    """y[t, n] = sum_k (+-1 x[t,k]) * (+-1 w[n,k])."""
    return pm(xbits) @ pm(wbits).T


def sat16(v):
    return np.clip(v, -32768, 32767)


def layer(x, d):
    """d: dict of the spec's names plus 'heads'."""
    x = np.asarray(x, dtype=np.int64)
    t_len, dm = x.shape
    h = d["heads"]
    dh = dm // h
    xb = (x >= d["th_attn"]).astype(np.int64)
    qb = (linear(xb, d["Wq"]) >= d["tq"]).astype(np.int64)
    kb = (linear(xb, d["Wk"]) >= d["tk"]).astype(np.int64)
    vb = (linear(xb, d["Wv"]) >= d["tv"]).astype(np.int64)
    c = np.zeros((t_len, dm), np.int64)
    for head in range(h):
        sl = slice(head * dh, (head + 1) * dh)
        s = pm(qb[:, sl]) @ pm(kb[:, sl]).T
        a = (s >= d["ta"][head]) & np.tril(np.ones((t_len, t_len), bool))
        c[:, sl] = a.astype(np.int64) @ pm(vb[:, sl])   # mdot(p, w) = sum_j p_j * w_j
    cb = (c >= d["tc"]).astype(np.int64)
    o = linear(cb, d["Wo"])
    x1 = sat16(x + ((o * d["so"]) // (1 << d["r"])))
    hb = (linear((x1 >= d["th_ffn"]).astype(np.int64), d["W1"]) >= d["t1"]).astype(np.int64)
    y = linear(hb, d["W2"])
    return sat16(x1 + ((y * d["s2"]) // (1 << d["r"])))


def model_logits(tokens, m):
    x = m["E"][np.asarray(tokens)].astype(np.int64)
    for layer_dict in m["layers"]:
        x = layer(x, layer_dict)
    return linear((x >= m["th_out"]).astype(np.int64), m["Wout"])
