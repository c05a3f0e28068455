import numpy as np
import pytest

from rpaccel.golden.data import criteo_synthetic
from rpaccel.golden.model import (
    Batch,
    BatchError,
    ModelError,
    StageModel,
    load_batch,
    load_model,
    save_batch,
    save_model,
)
from rpaccel.golden.zoo import random_model

torch = pytest.importorskip("torch")

CRITEO_ROWS = [50 + 7 * t for t in range(26)]


def multi_hot_batch(n, rows, rng, dense_dim=13, max_bag=4):
    """Random bags of 0..max_bag ids per item (empty bags included)."""
    idx, offs = [], []
    for r in rows:
        lengths = rng.integers(0, max_bag + 1, n)
        offs.append(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
        idx.append(rng.integers(0, r, int(lengths.sum())).astype(np.int64))
    return Batch(rng.normal(size=(n, dense_dim)).astype(np.float32), idx, offs)


@pytest.mark.parametrize("size", ["small", "medium", "large"])
@pytest.mark.parametrize("interaction", ["dot", "cat"])
def test_float_forward_equals_pytorch_dlrm(size, interaction):
    from rpaccel.golden.train import to_torch, torch_batch

    rng = np.random.default_rng(0)
    model = random_model(size, 13, CRITEO_ROWS, interaction, seed=3)
    batch = multi_hot_batch(64, CRITEO_ROWS, rng)
    ours = model.forward(batch)
    with torch.no_grad():
        ref = to_torch(model)(*torch_batch(batch)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_dot_interaction_order_is_dlrm_lower_triangle():
    # Embeddings that make Z[i][j] = 10*i + j recognisable in the output.
    d = 2
    bot = [(np.zeros((d, 1), np.float32), np.array([1.0, 0.0], np.float32))]
    emb = [np.array([[float(t + 2), 0.0]], np.float32) for t in range(3)]
    width = d + 6
    top = [(np.eye(width, dtype=np.float32), np.zeros(width, np.float32)),
           (np.ones((1, width), np.float32), np.zeros(1, np.float32))]
    m = StageModel(bot=bot, top=top, emb=emb)
    from rpaccel.golden.model import interact

    x = np.array([[1.0, 0.0]], np.float32)
    pooled = [np.array([[t + 2.0, 0.0]], np.float32) for t in range(3)]
    r = interact(x, pooled, "dot")
    # features f0=1, f1=2, f2=3, f3=4 -> pairs (1,0),(2,0),(2,1),(3,0),(3,1),(3,2)
    assert r[0].tolist() == [1, 0, 2, 3, 6, 4, 8, 12]
    assert m.interaction_width == width


def test_state_dict_round_trip_npz_and_pt(tmp_path):
    model = random_model("medium", 4, [10, 20, 30], "cat", context_tables=(0,), seed=1)
    batch = criteo_synthetic(16, [10, 20, 30], dense_dim=4, seed=2)
    for ext in ("npz", "pt"):
        save_model(tmp_path / f"m.{ext}", model)
        back = load_model(tmp_path / f"m.{ext}")
        assert back.interaction == "cat" and back.context_tables == (0,)
        np.testing.assert_array_equal(back.forward(batch), model.forward(batch))


def test_dlrm_checkpoint_without_metadata_defaults_to_dot(tmp_path):
    model = random_model("small", 13, CRITEO_ROWS, "dot", seed=5)
    sd = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "dlrm.pt")
    back = load_model(tmp_path / "dlrm.pt")
    assert back.interaction == "dot" and back.context_tables == ()
    batch = criteo_synthetic(8, CRITEO_ROWS, seed=1)
    np.testing.assert_array_equal(back.forward(batch), model.forward(batch))


def _sd():
    return random_model("small", 13, CRITEO_ROWS, "dot", seed=5).state_dict()


@pytest.mark.parametrize("mutate, message", [
    (lambda sd: sd.update({"bot_l.2.weight": np.zeros((4, 60), np.float32)}),
     r"bot_l.2.weight has shape \(4, 60\) but bot_l.0.weight has shape \(64, 13\)"),
    (lambda sd: sd.update({"emb_l.3.weight": np.zeros((57, 5), np.float32)}),
     r"emb_l.3.weight has shape \(57, 5\) but bot_l.2.weight has shape \(4, 64\)"),
    (lambda sd: sd.update({"top_l.0.weight": np.zeros((64, 30), np.float32)}),
     r"top_l.0.weight has shape \(64, 30\) but the dot interaction of 27 features of dim 4 "
     r"gives width 355"),
    (lambda sd: sd.update({"top_l.0.bias": np.zeros(63, np.float32)}),
     r"top_l.0.bias has shape \(63,\) but top_l.0.weight has shape \(64, 355\)"),
    (lambda sd: sd.update({"top_l.2.weight": np.zeros((2, 64), np.float32),
                           "top_l.2.bias": np.zeros(2, np.float32)}),
     r"top_l.2.weight has shape \(2, 64\): the last layer must have 1 output"),
    (lambda sd: sd.pop("bot_l.0.bias"), r"bot_l.0.bias is missing"),
    (lambda sd: sd.update({"bot_l.1.weight": np.zeros((1, 1), np.float32)}),
     r"unexpected tensors .*bot_l.1.weight"),
])
def test_mismatched_shapes_are_refused_naming_tensors(mutate, message):
    sd = _sd()
    mutate(sd)
    with pytest.raises(ModelError, match=message):
        StageModel.from_state_dict(sd)


def test_criteo_shapes_match_recpipe_widths():
    # RecPipe's RM-small/med/large top MLP inputs on Criteo: 355, 367, 383 (ANCHORS.md)
    for size, width in (("small", 355), ("medium", 367), ("large", 383)):
        assert random_model(size, 13, CRITEO_ROWS).top[0][0].shape[1] == width


@pytest.mark.parametrize("mutate, message", [
    (lambda b: Batch(b.dense[:, :5], b.indices, b.offsets),
     r"dense must have shape \[B, 13\], not \(8, 5\)"),
    (lambda b: Batch(b.dense, [b.indices[0] + 1000] + b.indices[1:], b.offsets),
     r"indices_0 must be in \[0, 50\), found 10"),
    (lambda b: Batch(b.dense, b.indices, [b.offsets[0][::-1].copy()] + b.offsets[1:]),
     r"offsets_0 must start at 0"),
    (lambda b: Batch(b.dense, b.indices,
                     [np.array([0, 2, 1, 3, 4, 5, 6, 7])] + b.offsets[1:]),
     r"offsets_0 must be non-decreasing: offsets_0\[1\]=2 > offsets_0\[2\]=1"),
    (lambda b: Batch(b.dense, b.indices[:3], b.offsets[:3]),
     r"batch must have indices_t and offsets_t for 26 tables, has 3 and 3"),
])
def test_bad_batches_get_clear_errors(mutate, message):
    model = random_model("small", 13, CRITEO_ROWS)
    batch = criteo_synthetic(8, CRITEO_ROWS, seed=0)
    with pytest.raises(BatchError, match=message):
        model.forward(mutate(batch))


def test_batch_file_round_trip_and_take(tmp_path):
    rng = np.random.default_rng(0)
    batch = multi_hot_batch(10, [5, 6], rng, dense_dim=3)
    save_batch(tmp_path / "b.npz", batch)
    back = load_batch(tmp_path / "b.npz")
    model = random_model("small", 3, [5, 6], seed=1)
    np.testing.assert_array_equal(model.forward(back), model.forward(batch))
    sub = batch.take([7, 2])
    np.testing.assert_allclose(model.forward(sub), model.forward(batch)[[7, 2]], rtol=1e-6)


def test_criteo_synthetic_is_zipf_skewed():
    b = criteo_synthetic(20000, [1000] * 2, zipf_a=1.1, seed=0)
    counts = np.sort(np.bincount(b.indices[0], minlength=1000))[::-1]
    assert counts[:10].sum() > 0.2 * counts.sum()  # hot ids dominate
    assert b.dense.shape == (20000, 13) and len(b.indices) == 2
