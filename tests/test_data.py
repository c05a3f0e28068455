import numpy as np

from rpaccel.golden.data import CONTEXT_TABLES, TABLE_NAMES


def test_movielens_counts_and_split(ml):
    assert (ml.num_users, ml.num_items) == (943, 1682)
    assert len(ml.train_users) + ml.num_users == 100_000
    assert ml.table_rows == [943, 7, 2, 21, 1682, 19]
    assert len(TABLE_NAMES) == len(ml.table_rows) and set(CONTEXT_TABLES) == {0, 1, 2, 3}


def test_held_out_item_is_each_users_latest(ml):
    from rpaccel.golden.data import _read, fetch_ml100k

    _, rows = _read(fetch_ml100k() / "ml-100k.inter")
    latest = {}
    for k, (u, i, _, ts) in enumerate(rows):
        key = (int(float(ts)), k)
        if u not in latest or key > latest[u][0]:
            latest[u] = (key, int(i))
    users = sorted(latest, key=int)
    assert [latest[u][1] - 1 for u in users] == ml.test_items.tolist()  # ids are 1-based


def test_queries_hold_positive_and_unrated_negatives(ml):
    qs = ml.queries(1000, seed=3, users=range(50))
    for u, cands, pos in qs:
        assert cands[pos] == ml.test_items[u]
        assert len(set(cands.tolist())) == len(cands)
        negatives = np.delete(cands, pos)
        assert not np.isin(negatives, ml.rated[u]).any()
        assert len(cands) == min(1000, ml.num_items - len(ml.rated[u]) + 1)
    again = ml.queries(1000, seed=3, users=range(50))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(qs, again))
    assert not np.array_equal(qs[0][1], ml.queries(1000, seed=4, users=[0])[0][1])


def test_feature_batch(ml):
    b = ml.batch([0, 1], [0, 1])
    assert b.dense.shape == (2, 4) and len(b.indices) == 6
    assert b.indices[5].tolist() == ml.item_genres[0].tolist() + ml.item_genres[1].tolist()
    assert b.dense.min() >= -10 and b.dense.max() <= 10
