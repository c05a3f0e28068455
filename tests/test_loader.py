"""Model loader (`rpaccel.hw.loader.ModelLoader`): load images fetched over AXI4 from
cocotbext-axi's AXI RAM on Verilator (the top-level tests load real models with it)."""

import pickle
import random

from amaranth import unsigned
from amaranth.lib import data

from rpaccel.config import get_config
from rpaccel.hw.loader import ModelLoader, load_image, load_words
from rpaccel.sim.runner import build, run

CFG = get_config("default")
#: three targets: narrower than a word, a few words (like an engine slot's), not a multiple
WIDTHS = (40, 235, 130)


def loader_for_test(cfg):
    return ModelLoader(cfg, WIDTHS, id_bits=2)


def test_load_words_and_image():
    layout = data.StructLayout({"target": 3, "addr": unsigned(5), "data": unsigned(100)})
    img = load_image(layout, [(1, 2, 3), (7, 31, (1 << 100) - 1)], 64)
    assert load_words(layout.size, 64) == 2 and len(img) == 32
    assert int.from_bytes(img[:16], "little") == 1 | 2 << 3 | 3 << 8
    assert int.from_bytes(img[16:], "little") == 7 | 31 << 3 | ((1 << 100) - 1) << 8


def test_verilator_loader_images(tmp_path):
    """Three loads (one per target) at addresses that are not 4 KiB aligned, lengths that
    force bursts to split at page ends, a stalling DRAM and backpressure on ``out``: every
    beat arrives in order with its target, bursts obey AXI's 4 KiB rule, a start while
    busy is ignored."""
    rng = random.Random(5)
    D = CFG.axi_data_bits
    loads, blobs, addr = [], [], 0
    for target, (w, n) in enumerate(zip(WIDTHS, (700, 300, 450), strict=True)):
        addr += 4096 - 3 * D // 8 if target == 0 else rng.randrange(1, 200) * D // 8
        beats = [rng.getrandbits(w) for _ in range(n)]
        raw = data.StructLayout({"target": 0, "addr": 0, "data": unsigned(w)})
        blob = load_image(raw, [(0, 0, b) for b in beats], D)
        loads.append((addr, target, beats))
        blobs.append((addr, blob))
        addr += len(blob)
    dram = bytearray(addr + 4096)
    for a, blob in blobs:
        dram[a:a + len(blob)] = blob
    jobs = tmp_path / "job.pkl"
    jobs.write_bytes(pickle.dumps({"dram": bytes(dram), "loads": loads}))
    sb = build(loader_for_test, CFG, "loader")
    tests, failed = run(sb, "rpaccel.sim.tb_loader", tmp_path,
                        {"jobs": str(jobs), "data_bits": D, "widths": WIDTHS,
                         "max_words": max(load_words(w, D) for w in WIDTHS),
                         "dram_stall": 0.3, "backpressure": 0.3, "seed": 3})
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]
