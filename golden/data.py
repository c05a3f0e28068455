"""Real data (MovieLens-100k) and a Criteo-shaped synthetic generator.

MovieLens-100k is fetched at set-up from the ``recbole==1.2.1`` wheel on PyPI into a cache
outside git (GroupLens terms: research use, no redistribution). Nothing here imports
recbole.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .model import Batch

__all__ = [
    "data_dir",
    "fetch_ml100k",
    "MovieLens",
    "load_ml100k",
    "TABLE_NAMES",
    "CONTEXT_TABLES",
    "HISTORY",
    "HOLDOUT",
    "criteo_synthetic",
]

WHEEL = "recbole==1.2.1"
WHEEL_DIR = "recbole/dataset_example/ml-100k/"
SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
#: Sparse features of the MovieLens stage models, in table order. ``history`` is a bag of
#: the user's latest rated items before the rating being predicted (a pad row when none).
TABLE_NAMES = ("user", "age", "gender", "occupation", "item", "genres", "history")
#: Tables whose ids are shared by every candidate of a query.
CONTEXT_TABLES = (0, 1, 2, 3, 6)
#: Items in the history bag, and ratings per user held out for evaluation.
HISTORY = 10
HOLDOUT = 5
DENSE_NAMES = ("item_popularity", "item_year", "user_activity", "user_age")
AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens-1M age groups


def data_dir() -> Path:
    """Cache directory of data sets: ``$RPACCEL_DATA`` or ``~/.cache/rpaccel``."""
    return Path(os.environ.get("RPACCEL_DATA", Path.home() / ".cache" / "rpaccel"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_ml100k(dest: Path | None = None, quiet: bool = False) -> Path:
    """Download MovieLens-100k (inside the recbole wheel) once and check its hashes.

    Returns
    -------
    Path
        Directory holding ``ml-100k.inter``, ``.user`` and ``.item``.
    """
    dest = Path(dest or data_dir() / "ml-100k")
    if all((dest / f).exists() and _sha(dest / f) == h for f, h in SHA256.items()):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if not quiet:
            print(f"fetching MovieLens-100k from the {WHEEL} wheel into {dest}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--disable-pip-version-check", WHEEL, "-d", tmp], check=True)
        (wheel,) = Path(tmp).glob("recbole-*.whl")
        with zipfile.ZipFile(wheel) as z:
            for f in SHA256:
                (dest / f).write_bytes(z.read(WHEEL_DIR + f))
    for f, h in SHA256.items():
        if _sha(dest / f) != h:
            raise RuntimeError(f"{dest / f}: sha256 mismatch, the download is corrupt")
    return dest


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text(encoding="latin-1").splitlines()
    header = [h.split(":")[0] for h in lines[0].split("\t")]
    return header, [ln.split("\t") for ln in lines[1:] if ln]


@dataclass
class MovieLens:
    """MovieLens-100k with the features, split and queries of the stage models.

    Users and items are renumbered 0..n-1 in the order of their original ids. The split is
    temporal leave-last-``holdout``-out: each user's latest ``holdout`` ratings (ties: the
    later line of the file) are held out, the latest of them being ``test_items``; the rest
    is training data. All ratings count as positives.
    """

    user_age: np.ndarray  # [U] years
    user_gender: np.ndarray  # [U] 0/1
    user_occ: np.ndarray  # [U]
    item_year: np.ndarray  # [I] (0 when unknown)
    item_genres: list[np.ndarray]  # per item: genre ids
    train_users: np.ndarray
    train_items: np.ndarray
    test_items: np.ndarray  # [U]: held-out positive of each user
    num_genres: int
    num_occupations: int
    train_time: np.ndarray | None = None  # timestamp of each training rating
    held_out: np.ndarray | None = None  # [U, holdout] held-out items, oldest first

    def __post_init__(self):
        if self.held_out is None:
            self.held_out = self.test_items[:, None]

    @property
    def num_users(self) -> int:
        return len(self.user_age)

    @property
    def num_items(self) -> int:
        return len(self.item_year)

    @property
    def table_rows(self) -> list[int]:
        return [self.num_users, len(AGE_EDGES) + 1, 2, self.num_occupations, self.num_items,
                self.num_genres, self.num_items + 1]

    @property
    def history_pad(self) -> int:
        """Row of the history table that stands for "no earlier rating"."""
        return self.num_items

    @cached_property
    def item_popularity(self) -> np.ndarray:
        return np.bincount(self.train_items, minlength=self.num_items)

    @cached_property
    def user_activity(self) -> np.ndarray:
        return np.bincount(self.train_users, minlength=self.num_users)

    @cached_property
    def rated(self) -> list[np.ndarray]:
        """Sorted item ids each user rated (train and test)."""
        order = np.argsort(self.train_users, kind="stable")
        groups = np.split(self.train_items[order],
                          np.cumsum(np.bincount(self.train_users, minlength=self.num_users))[:-1])
        return [np.unique(np.append(g, t)) for g, t in zip(groups, self.held_out, strict=True)]

    @cached_property
    def _sequence(self):
        """Training ratings by user, then time (then file order): ``(order, starts)`` with
        ``order`` indexing the training arrays and ``starts[u]`` user ``u``'s first."""
        key = self.train_time if self.train_time is not None else np.zeros(len(self.train_users))
        order = np.lexsort((np.arange(len(self.train_users)), key, self.train_users))
        starts = np.searchsorted(self.train_users[order], np.arange(self.num_users + 1))
        return order, starts

    @cached_property
    def sequence_position(self) -> np.ndarray:
        """Per training rating: how many of its user's training ratings come before it."""
        order, starts = self._sequence
        pos = np.empty(len(order), np.int64)
        pos[order] = np.arange(len(order)) - starts[self.train_users[order]]
        return pos

    def history(self, user: int, n: int | None = None) -> np.ndarray:
        """The user's training items, oldest first (the last ``n`` with ``n``)."""
        order, starts = self._sequence
        items = self.train_items[order[starts[user]:starts[user + 1]]]
        return items if n is None else items[max(0, len(items) - n):]

    def history_bags(self, users, ends=None):
        """``(ids, offsets)`` of the history table for rows of ``users``: the last
        `HISTORY` training items before position ``ends`` of each user's sequence (all of
        them: the query-time history), the pad row where there are none."""
        order, starts = self._sequence
        users = np.asarray(users, np.int64)
        total = starts[users + 1] - starts[users]
        ends = total if ends is None else np.minimum(np.asarray(ends, np.int64), total)
        lengths = np.minimum(ends, HISTORY)
        begin = starts[users] + ends - lengths
        n_ids = np.maximum(lengths, 1)
        offsets = np.concatenate([[0], np.cumsum(n_ids)[:-1]]).astype(np.int64)
        ids = np.full(int(n_ids.sum()), self.history_pad, np.int64)
        row = np.repeat(np.arange(len(users)), lengths)
        within = np.arange(len(row)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        seq_items = self.train_items[order]
        ids[offsets[row] + within] = seq_items[begin[row] + within]
        return ids, offsets

    def batch(self, users, items, history_ends=None) -> Batch:
        """Feature batch of (user, item) pairs; ``history_ends`` (training rows) limits each
        row's history bag to the ratings before that position (`sequence_position`)."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        pop = np.log1p(self.item_popularity[items]) / np.log1p(self.item_popularity.max())
        act = np.log1p(self.user_activity[users]) / np.log1p(self.user_activity.max())
        year = np.where(self.item_year[items] > 0, (self.item_year[items] - 1990) / 10.0, 0.0)
        dense = np.stack([pop, year, act, self.user_age[users] / 50.0], axis=1)
        n = len(users)
        ones = np.arange(n, dtype=np.int64)
        age_bucket = np.searchsorted(AGE_EDGES, self.user_age[users], side="right")
        genre_lists = [self.item_genres[i] for i in items]
        lengths = np.array([len(g) for g in genre_lists], np.int64)
        genre_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        genre_idx = (np.concatenate(genre_lists) if n else np.zeros(0)).astype(np.int64)
        hist_idx, hist_offsets = self.history_bags(users, history_ends)
        indices = [users, age_bucket.astype(np.int64), self.user_gender[users],
                   self.user_occ[users], items, genre_idx, hist_idx]
        offsets = [ones, ones, ones, ones, ones, genre_offsets, hist_offsets]
        return Batch(dense.astype(np.float32), indices, offsets)

    def training_samples(self, negatives: int, rng: np.random.Generator,
                         positions: bool = False):
        """Training pairs and labels: every training positive plus ``negatives`` sampled
        items per positive that the user has not rated; with ``positions`` also each
        pair's `sequence_position` (a negative shares its positive's), for ``batch``'s
        ``history_ends``."""
        u_pos, i_pos = self.train_users, self.train_items
        u_neg = np.repeat(u_pos, negatives)
        i_neg = rng.integers(0, self.num_items, len(u_neg))
        key = set((self.train_users * self.num_items + self.train_items).tolist())
        bad = np.array([k in key for k in (u_neg * self.num_items + i_neg).tolist()])
        while bad.any():  # resample the few that hit a rated item
            i_neg[bad] = rng.integers(0, self.num_items, int(bad.sum()))
            bad[bad] = [k in key for k in (u_neg[bad] * self.num_items + i_neg[bad]).tolist()]
        users = np.concatenate([u_pos, u_neg])
        items = np.concatenate([i_pos, i_neg])
        labels = np.concatenate([np.ones(len(u_pos)), np.zeros(len(u_neg))]).astype(np.float32)
        if positions:
            pos = self.sequence_position
            return users, items, labels, np.concatenate([pos, np.repeat(pos, negatives)])
        return users, items, labels

    def queries(self, n_candidates: int = 1000, seed: int = 0, users=None,
                every_held_out: bool = False):
        """Ranking queries: a held-out positive plus ``n_candidates - 1`` unrated items.

        One query per user for its latest held-out item, or with ``every_held_out`` one per
        held-out item (``holdout`` per user, each with its own negatives). Candidates are
        shuffled (seeded), so ties do not favour the positive. A user with fewer unrated
        items than ``n_candidates - 1`` gets all of them (a shorter query).

        Returns
        -------
        list of (user, candidate item ids, position of the positive)
        """
        if n_candidates < 2:
            raise ValueError(f"n_candidates must be at least 2, not {n_candidates}")
        rng = np.random.default_rng(seed)
        users = range(self.num_users) if users is None else users
        out = []
        for u in users:
            unrated = np.setdiff1d(np.arange(self.num_items), self.rated[u], assume_unique=True)
            k = min(n_candidates - 1, len(unrated))
            for positive in (self.held_out[u] if every_held_out else self.test_items[u:u + 1]):
                cands = np.append(rng.choice(unrated, k, replace=False), positive)
                rng.shuffle(cands)
                out.append((int(u), cands.astype(np.int64),
                            int(np.flatnonzero(cands == positive)[0])))
        return out


def load_ml100k(path: Path | None = None, holdout: int = HOLDOUT) -> MovieLens:
    """Load MovieLens-100k (fetching it if needed) with features and the temporal
    leave-last-``holdout``-out split (every user has at least 20 ratings)."""
    if not isinstance(holdout, int) or not 1 <= holdout <= 10:
        raise ValueError(f"holdout must be an integer from 1 to 10, not {holdout!r}")
    path = fetch_ml100k(path)
    _, urows = _read(path / "ml-100k.user")
    _, irows = _read(path / "ml-100k.item")
    _, rrows = _read(path / "ml-100k.inter")
    uid = {r[0]: k for k, r in enumerate(sorted(urows, key=lambda r: int(r[0])))}
    urows = sorted(urows, key=lambda r: int(r[0]))
    irows = sorted(irows, key=lambda r: int(r[0]))
    iid = {r[0]: k for k, r in enumerate(irows)}
    occs = sorted({r[3] for r in urows})
    genres = sorted({g for r in irows for g in r[3].split(" ") if g})
    user_age = np.array([int(r[1]) for r in urows], np.int64)
    user_gender = np.array([r[2] == "F" for r in urows], np.int64)
    user_occ = np.array([occs.index(r[3]) for r in urows], np.int64)
    item_year = np.array([int(r[2]) if r[2].isdigit() else 0 for r in irows], np.int64)
    item_genres = [np.array(sorted(genres.index(g) for g in r[3].split(" ") if g), np.int64)
                   for r in irows]
    users = np.array([uid[r[0]] for r in rrows], np.int64)
    items = np.array([iid[r[1]] for r in rrows], np.int64)
    ts = np.array([int(float(r[3])) for r in rrows], np.int64)
    line = np.arange(len(rrows))
    order = np.lexsort((line, ts, users))  # by user, then time, then file line
    su = users[order]
    ends = np.searchsorted(su, np.arange(len(urows)), side="right")
    rank_from_end = ends[su] - 1 - np.arange(len(su))  # 0: the user's latest
    held = order[rank_from_end < holdout]
    train_mask = np.ones(len(rrows), bool)
    train_mask[held] = False
    held_out = items[held].reshape(len(urows), holdout)  # by user, oldest first
    test_items = held_out[:, -1].copy()
    return MovieLens(user_age=user_age, user_gender=user_gender, user_occ=user_occ,
                     item_year=item_year, item_genres=item_genres,
                     train_users=users[train_mask], train_items=items[train_mask],
                     test_items=test_items, num_genres=len(genres),
                     num_occupations=len(occs), train_time=ts[train_mask], held_out=held_out)


def criteo_synthetic(n_items: int, table_rows=(1000,) * 26, dense_dim: int = 13,
                     zipf_a: float = 1.1, bag_size: int = 1, seed: int = 0,
                     hot_seed: int = 0) -> Batch:
    """Criteo-shaped random items: ``dense_dim`` dense features (log-normal, as the
    log-transformed Criteo counts) and one bag per table with Zipf-distributed ids.

    Ids follow ``p(rank r) ~ 1 / r**zipf_a`` over the table, with a fixed random permutation
    per table so hot ids are scattered across rows (as hashed Criteo ids are).
    """
    if n_items < 0:
        raise ValueError(f"n_items must be non-negative, not {n_items}")
    if zipf_a <= 0:
        raise ValueError(f"zipf_a must be positive, not {zipf_a}")
    rng = np.random.default_rng(seed)
    perm_rng = np.random.default_rng(hot_seed + 1_000_003)
    dense = np.log1p(rng.lognormal(0.0, 1.5, (n_items, dense_dim))).astype(np.float32)
    indices, offsets = [], []
    for rows in table_rows:
        p = 1.0 / np.arange(1, rows + 1) ** zipf_a
        perm = perm_rng.permutation(rows)
        ids = perm[rng.choice(rows, n_items * bag_size, p=p / p.sum())]
        indices.append(ids.astype(np.int64))
        offsets.append(np.arange(0, n_items * bag_size, bag_size, dtype=np.int64))
    return Batch(dense, indices, offsets)
