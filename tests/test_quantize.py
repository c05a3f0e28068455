import numpy as np
import pytest

from rpaccel.golden.data import criteo_synthetic
from rpaccel.golden.model import ModelError, save_model
from rpaccel.golden.numerics import requantize
from rpaccel.golden.quantize import load_quantized, quantize_model, save_quantized
from rpaccel.golden.zoo import random_model

ROWS = [40, 30, 20, 10]


def literal_int8_forward(q, batch, item):
    """docs/numerics.md followed step by step for one item, with Python integers."""
    def rq(acc, m, s, relu):
        return int(requantize(acc, 0, m, s, relu))

    x = [int(v) for v in np.clip(np.rint(batch.dense[item] / q.dense_scale), -128, 127)]
    for layer in q.bot:
        x = [rq(sum(int(w) * v for w, v in zip(layer.w[o], x)) + int(layer.bias[o]),
                int(layer.mult[o]), int(layer.shift[o]), True) for o in range(len(layer.bias))]
    feats = [x]
    for t, (ind, off) in enumerate(zip(batch.indices, batch.offsets)):
        end = off[item + 1] if item + 1 < len(off) else len(ind)
        pooled = [sum(int(q.emb[t][i][k]) for i in ind[off[item]:end]) for k in range(len(x))]
        feats.append([rq(v, int(q.pool_mult[t]), int(q.pool_shift[t]), False) for v in pooled])
    if q.interaction == "dot":
        r, p = list(feats[0]), 0
        for i in range(len(feats)):
            for j in range(i):
                z = sum(a * b for a, b in zip(feats[i], feats[j]))
                r.append(rq(z, int(q.pair_mult[p]), int(q.pair_shift[p]), False))
                p += 1
    else:
        r = [v for f in feats for v in f]
    for k, layer in enumerate(q.top):
        accs = [sum(int(w) * v for w, v in zip(layer.w[o], r)) + int(layer.bias[o])
                for o in range(len(layer.bias))]
        if k == len(q.top) - 1:
            return accs[0]
        r = [rq(a, int(layer.mult[o]), int(layer.shift[o]), True) for o, a in enumerate(accs)]


@pytest.mark.parametrize("interaction", ["dot", "cat"])
def test_int8_forward_equals_literal_spec(interaction):
    model = random_model("medium", 5, ROWS, interaction, seed=2)
    calib = criteo_synthetic(500, ROWS, dense_dim=5, bag_size=3, seed=1)
    q = quantize_model(model, calib)
    batch = criteo_synthetic(12, ROWS, dense_dim=5, bag_size=3, seed=7)
    fast = q.forward(batch)
    assert [literal_int8_forward(q, batch, i) for i in range(12)] == fast.tolist()


def test_int8_tracks_float():
    model = random_model("large", 13, ROWS, seed=4)
    calib = criteo_synthetic(2000, ROWS, seed=1)
    q = quantize_model(model, calib)
    batch = criteo_synthetic(500, ROWS, seed=9)
    f = model.forward(batch)
    i8 = q.forward(batch) * q.score_scale
    assert np.corrcoef(f, i8)[0, 1] > 0.98
    assert np.all(np.abs(q.bot[0].w) <= 127) and all(np.abs(e).max() <= 127 for e in q.emb)


def test_quantized_round_trip(tmp_path):
    model = random_model("small", 13, ROWS, seed=4)
    q = quantize_model(model, criteo_synthetic(300, ROWS, seed=1))
    save_quantized(tmp_path / "q.npz", q)
    back = load_quantized(tmp_path / "q.npz")
    batch = criteo_synthetic(50, ROWS, seed=3)
    np.testing.assert_array_equal(back.forward(batch), q.forward(batch))


def test_float_only_file_is_refused_for_int8(tmp_path):
    save_model(tmp_path / "f.npz", random_model("small", 13, ROWS))
    with pytest.raises(ModelError, match="holds no int8 parameters"):
        load_quantized(tmp_path / "f.npz")
