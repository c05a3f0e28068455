import numpy as np
import pytest

from rpaccel.golden.data import CONTEXT_TABLES, HISTORY, HOLDOUT, TABLE_NAMES, load_ml100k


def test_movielens_counts_and_split(ml):
    assert (ml.num_users, ml.num_items) == (943, 1682)
    assert len(ml.train_users) + HOLDOUT * ml.num_users == 100_000
    assert ml.table_rows == [943, 7, 2, 21, 1682, 19, 1683]
    assert len(TABLE_NAMES) == len(ml.table_rows) and set(CONTEXT_TABLES) == {0, 1, 2, 3, 6}


def test_held_out_items_are_each_users_latest(ml):
    from rpaccel.golden.data import _read, fetch_ml100k

    _, rows = _read(fetch_ml100k() / "ml-100k.inter")
    by_user = {}
    for k, (u, i, _, ts) in enumerate(rows):
        by_user.setdefault(u, []).append(((int(float(ts)), k), int(i) - 1))  # ids 1-based
    users = sorted(by_user, key=int)
    latest = [[i for _, i in sorted(by_user[u])[-HOLDOUT:]] for u in users]
    assert ml.held_out.tolist() == latest
    assert ml.test_items.tolist() == [h[-1] for h in latest]
    for u in (0, 17, 942):  # no held-out rating is in the training split
        train = ml.train_items[ml.train_users == u]
        assert not np.isin(ml.held_out[u], train).any()
        assert len(train) + HOLDOUT == len(by_user[users[u]])


def test_history_bags_hold_only_earlier_ratings(ml):
    """Query time: the user's last HISTORY training items; training time: the items before
    the rating itself (the pad row for a user's first rating), never the item itself."""
    rng = np.random.default_rng(5)
    b = ml.batch([3, 3, 200], [10, 11, 12])
    ids, offs = b.indices[6], b.offsets[6]
    assert offs.tolist() == [0, HISTORY, 2 * HISTORY]
    assert ids[:HISTORY].tolist() == ml.history(3, HISTORY).tolist()
    assert ids[HISTORY:2 * HISTORY].tolist() == ids[:HISTORY].tolist()
    assert ids[2 * HISTORY:].tolist() == ml.history(200)[-HISTORY:].tolist()
    users, items, labels, ends = ml.training_samples(2, rng, positions=True)
    pick = rng.choice(len(users), 300, replace=False)
    b = ml.batch(users[pick], items[pick], history_ends=ends[pick])
    ids, offs = b.indices[6], np.append(b.offsets[6], len(b.indices[6]))
    for r, k in enumerate(pick):
        bag = ids[offs[r]:offs[r + 1]].tolist()
        seq = ml.history(users[k])
        want = seq[:ends[k]][-HISTORY:].tolist() or [ml.history_pad]
        assert bag == want
        if labels[k] == 1:
            assert seq[ends[k]] == items[k] and items[k] not in bag
    first = np.flatnonzero(ends == 0)[0]
    assert ml.batch(users[first:first + 1], items[first:first + 1],
                    history_ends=ends[first:first + 1]).indices[6].tolist() == [ml.history_pad]


def test_every_held_out_query(ml):
    qs = ml.queries(1000, seed=2, users=[5, 6], every_held_out=True)
    assert [u for u, _, _ in qs] == [5] * HOLDOUT + [6] * HOLDOUT
    assert [c[p] for _, c, p in qs] == ml.held_out[5].tolist() + ml.held_out[6].tolist()
    for u, cands, pos in qs:
        assert not np.isin(np.delete(cands, pos), ml.rated[u]).any()
    with pytest.raises(ValueError, match="holdout must be an integer from 1 to 10, not 0"):
        load_ml100k(holdout=0)


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
    assert b.dense.shape == (2, 4) and len(b.indices) == 7
    assert b.indices[5].tolist() == ml.item_genres[0].tolist() + ml.item_genres[1].tolist()
    assert b.dense.min() >= -10 and b.dense.max() <= 10
