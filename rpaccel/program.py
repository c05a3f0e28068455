"""Host side of the MLP engine: compile an int8 stage into the engine's load image.

`compile_stage` turns a `QuantizedStage` (or a plain list of `QLayer`) into the beats of
the engine's ``load`` stream (weights tiled for the partition, bias / requantization rows,
the program and the pair parameters); `sub_batch_beats` turns a sub-batch of items into
the activation words the program reads. Both follow the buffer geometry of
`rpaccel.interface`, which is derived from the same `RPAccelConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import RPAccelConfig, require

__all__ = ["ProgramError", "StageProgram", "compile_layers", "compile_stage",
           "sub_batch_beats", "layers_macs", "pack_lanes"]


class ProgramError(ValueError):
    """A model that does not fit the engine; the message names the limit and the value."""


def _iface():
    from . import interface  # Amaranth is needed only for the layouts

    return interface


@dataclass
class StageProgram:
    """A compiled program for one engine.

    Attributes
    ----------
    beats : list of (target, addr, data)
        The model load image for the engine's ``load`` stream.
    steps : list of dict
        The program (for reports).
    weight_rows, param_rows : int
        Buffer rows used.
    outputs : int
        Output tiles of the final layer (beats per item on ``out``).
    """

    config: RPAccelConfig
    width: int
    pcols: int
    beats: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    weight_rows: int = 0
    param_rows: int = 0
    outputs: int = 1
    dense_dim: int = 0
    features: int = 0
    emb_dim: int = 0


def _check(ok, what, rule, value):
    require(ok, what, rule, value, ProgramError)


def pack_lanes(values, bits: int) -> int:
    """Pack integers into one word, lane 0 in the low bits, each ``bits`` wide."""
    out = 0
    mask = (1 << bits) - 1
    for j, v in enumerate(values):
        out |= (int(v) & mask) << (j * bits)
    return out


class _Builder:
    def __init__(self, config: RPAccelConfig, width: int, mode: int):
        iface = _iface()
        self.iface = iface
        self.cfg = config
        self.width = width
        self.pcols = config.array_cols >> mode
        _check(self.pcols <= width, "the partition width (array_cols >> mode)",
               f"at most the engine width {width}", self.pcols)
        self.geo = iface.EngineGeometry(config)
        lay = iface.engine_layouts(config, width)
        self.desc_l, self.lane_l, self.pair_l, self.load_l = lay.desc, lay.lane, lay.pair, lay.load
        self.prog = StageProgram(config, width, self.pcols)

    def layer(self, layer, src, dst, final):
        cfg, R, P = self.cfg, self.cfg.array_rows, self.pcols
        w = np.asarray(layer.w, np.int64)
        n, k = w.shape
        _check(k <= cfg.max_width, "layer input width", f"at most max_width {cfg.max_width}", k)
        _check(n <= cfg.max_width, "layer output width", f"at most max_width {cfg.max_width}",
               n)
        kt, nt = -(-k // R), -(-n // P)
        wbase, pbase = self.prog.weight_rows, self.prog.param_rows
        _check(wbase + kt * nt * R <= cfg.weight_rows, "weight rows of the model",
               f"at most weight_rows {cfg.weight_rows}", wbase + kt * nt * R)
        _check(pbase + nt <= cfg.param_rows, "parameter rows of the model",
               f"at most param_rows {cfg.param_rows}", pbase + nt)
        pad = np.zeros((nt * P, kt * R), np.int64)
        pad[:n, :k] = w
        addr = wbase
        for j in range(nt):
            for i in range(kt):
                tile = pad[j * P:(j + 1) * P, i * R:(i + 1) * R].T  # [R, P]
                for r in range(R):
                    row = list(tile[r]) + [0] * (self.width - P)
                    self.prog.beats.append((self.iface.EngineTarget.WEIGHT, addr,
                                            pack_lanes(row, 8)))
                    addr += 1
        bias = np.zeros(nt * P, np.int64)
        bias[:n] = layer.bias
        mult = np.zeros(nt * P, np.int64)
        shift = np.zeros(nt * P, np.int64)
        if layer.mult is not None:
            mult[:n], shift[:n] = layer.mult, layer.shift
        lane_bits = self.lane_l.size
        for j in range(nt):
            word = 0
            for c in range(P):
                v = self.lane_l.const({"bias": int(bias[j * P + c]), "mult": int(mult[j * P + c]),
                                       "shift": int(shift[j * P + c])}).as_value().value
                word |= v << (c * lane_bits)
            self.prog.beats.append((self.iface.EngineTarget.PARAM, pbase + j, word))
        self.prog.weight_rows = addr
        self.prog.param_rows = pbase + nt
        self.step(kind=self.iface.StepKind.MLP, relu=int(bool(layer.relu)), final=int(final),
                  src=src, dst=dst, k=k, n=n, ktiles=kt, ntiles=nt, wbase=wbase, pbase=pbase)
        if final:
            self.prog.outputs = nt

    def step(self, **fields):
        fields = {f: 0 for f, _ in self.desc_l} | fields
        _check(len(self.prog.steps) < self.cfg.max_steps, "program steps",
               f"at most max_steps {self.cfg.max_steps}", len(self.prog.steps) + 1)
        self.prog.beats.append((self.iface.EngineTarget.PROG, len(self.prog.steps),
                                self.desc_l.const(fields).as_value().value))
        self.prog.steps.append(fields)

    def end(self):
        self.step(kind=self.iface.StepKind.END)
        return self.prog


def compile_layers(config: RPAccelConfig, width: int, mode: int, layers) -> StageProgram:
    """Program a plain MLP: every layer but the last requantized (ping-pong buffers), the
    last one's int32 ``acc + bias`` streamed out. The input goes in region A."""
    b = _Builder(config, width, mode)
    reg = b.iface.Region
    src = reg.A
    for i, layer in enumerate(layers):
        final = i == len(layers) - 1
        dst = reg.B if src == reg.A else reg.A
        b.layer(layer, src, dst, final)
        src = dst
    b.prog.dense_dim = np.asarray(layers[0].w).shape[1]
    return b.end()


def compile_stage(config: RPAccelConfig, width: int, mode: int, q) -> StageProgram:
    """Program a whole `QuantizedStage`: bottom MLP (input region A, output into the
    feature region), interaction (``dot`` or ``cat``, into region A), top MLP (the last
    layer's int32 score out).

    Raises
    ------
    ProgramError
        When the model does not fit the engine's buffers.
    """
    b = _Builder(config, width, mode)
    reg, kind = b.iface.Region, b.iface.StepKind
    geo = b.geo
    src = reg.A
    for i, layer in enumerate(q.bot):
        dst = reg.FEAT if i == len(q.bot) - 1 else (reg.B if src == reg.A else reg.A)
        b.layer(layer, src, dst, final=False)
        src = dst
    d = q.float_model.emb_dim
    feats = q.float_model.num_features
    dw = -(-d // geo.lanes)
    pack = b.iface.feature_pack(d, geo.lanes)
    fwords = b.iface.feature_words(d, geo.lanes, feats - 1)
    _check(fwords <= geo.words, "feature region words (bottom output and pooled vectors)",
           f"at most {geo.words}", fwords)
    # the interaction unit's register file holds every feature unpacked
    _check(feats * dw <= geo.words, "interaction register-file words (features x words per "
           "feature)", f"at most {geo.words}", feats * dw)
    _check(feats <= 64, "number of features", "at most 64", feats)
    if q.interaction == "dot":
        pairs = feats * (feats - 1) // 2
        _check(pairs <= config.max_pairs, "interaction pairs",
               f"at most max_pairs {config.max_pairs}", pairs)
        per = b.iface.pair_row_len(config)  # a row per cycle's most pairs
        for row in range(-(-pairs // per)):
            lanes = [{"mult": int(q.pair_mult[p]), "shift": int(q.pair_shift[p])}
                     if p < pairs else {"mult": 0, "shift": 0}
                     for p in range(row * per, (row + 1) * per)]
            b.prog.beats.append((b.iface.EngineTarget.PAIR, row,
                                 b.pair_l.const(lanes).as_value().value))
        b.step(kind=kind.DOT, feats=feats, d=d, dw=dw, pack=pack, dst=reg.A)
    else:
        b.step(kind=kind.CAT, feats=feats, d=d, dw=dw, pack=pack, dst=reg.A)
    src = reg.A
    for i, layer in enumerate(q.top):
        final = i == len(q.top) - 1
        dst = reg.B if src == reg.A else reg.A
        b.layer(layer, src, dst, final)
        src = dst
    b.prog.dense_dim = np.asarray(q.bot[0].w).shape[1]
    b.prog.features, b.prog.emb_dim = feats, d
    return b.end()


def sub_batch_beats(prog: StageProgram, dense_q, pooled=None) -> list:
    """Activation-buffer beats of one sub-batch: int8 dense inputs into region A, and for
    a stage the pooled int8 embeddings (one [items, d] array per table) into the feature
    region after the bottom MLP's output, placed as `rpaccel.interface.feature_place` says
    (several to a word when they fit)."""
    iface = _iface()
    cfg = prog.config
    geo = iface.EngineGeometry(cfg)
    A = geo.lanes
    dense_q = np.asarray(dense_q, np.int64)
    items = dense_q.shape[0]
    _check(1 <= items <= cfg.sub_batch, "items of a sub-batch",
           f"from 1 to sub_batch {cfg.sub_batch}", items)
    beats = []

    def put(region, item, values):
        for w in range(-(-len(values) // A)):
            chunk = list(values[w * A:(w + 1) * A])
            chunk += [0] * (A - len(chunk))
            beats.append((iface.EngineTarget.ACT, geo.act_addr(region, item, w),
                          pack_lanes(chunk, 8)))

    for i in range(items):
        put(iface.Region.A, i, dense_q[i])
    if pooled is not None:
        d = prog.emb_dim
        for i in range(items):
            words = {}
            for t, p in enumerate(pooled):
                word, lane = iface.feature_place(d, A, t)
                for w in range(-(-d // A)):
                    n = min(A, d - w * A)
                    words.setdefault(word + w, np.zeros(A, np.int64))[lane:lane + n] = \
                        p[i][w * A:w * A + n]
            for word in sorted(words):
                beats.append((iface.EngineTarget.ACT, geo.act_addr(iface.Region.FEAT, i, word),
                              pack_lanes(words[word], 8)))
    return beats


def layers_macs(layers, items: int) -> int:
    """Useful MACs of running ``layers`` on ``items`` items."""
    return items * sum(int(np.prod(np.asarray(lay.w).shape)) for lay in layers)
