"""The top level's bus blocks in the Amaranth simulator: the AXI4-Lite CSR bank (register
writes, read-back, write pulses, DECERR on unmapped or read-only / write-only addresses)
and the AXI4 read arbiter (one grant held until its AR handshake, round robin, ids
carrying the manager, R routed by id)."""

from rpaccel.hw.bus import AxiReadArbiter, CsrBank

from .amaranth_bench import run_bench

REGS = {"A": (0x00, "rw", 16), "B": (0x04, "ro", 32), "C": (0x08, "wo", 32),
        "D": (0x0C, "wr", 8)}


async def _write(ctx, dut, addr, data):
    """One AXI4-Lite write; returns (bresp, cycles the C pulse was high during it); the
    data every pulse (C or D) carried goes to ``dut.pulses``."""
    b = dut.bus

    def pulse():
        for name in ("C", "D"):
            if ctx.get(getattr(dut, name)):
                dut.pulses.append((name, ctx.get(getattr(dut, name + "_data"))))
        return ctx.get(dut.C)

    ctx.set(b.awaddr, addr)
    ctx.set(b.wdata, data)
    ctx.set(b.awvalid, 1)
    ctx.set(b.wvalid, 1)
    ctx.set(b.wstrb, 0xF)
    pulses = 0
    while not ctx.get(b.awready):
        await ctx.tick()
    pulses += pulse()
    await ctx.tick()
    ctx.set(b.awvalid, 0)
    ctx.set(b.wvalid, 0)
    ctx.set(b.bready, 1)
    while not ctx.get(b.bvalid):
        pulses += pulse()
        await ctx.tick()
    resp = ctx.get(b.bresp)
    pulses += pulse()
    await ctx.tick()
    ctx.set(b.bready, 0)
    return resp, pulses


async def _read(ctx, dut, addr):
    b = dut.bus
    ctx.set(b.araddr, addr)
    ctx.set(b.arvalid, 1)
    while not ctx.get(b.arready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(b.arvalid, 0)
    ctx.set(b.rready, 1)
    while not ctx.get(b.rvalid):
        await ctx.tick()
    out = ctx.get(b.rdata), ctx.get(b.rresp)
    await ctx.tick()
    ctx.set(b.rready, 0)
    return out


def test_csr_bank_registers_pulses_and_decerr():
    dut = CsrBank(REGS)
    dut.pulses = []
    got = {}

    async def bench(ctx):
        b = dut
        ctx.set(dut.B, 0x12345678)
        got["wA"] = await _write(ctx, b, 0x00, 0x1BEEF)          # 16-bit register
        got["A"] = ctx.get(dut.A)
        got["rA"] = await _read(ctx, b, 0x00)
        got["rB"] = await _read(ctx, b, 0x04)
        got["wC"] = await _write(ctx, b, 0x08, 0xCAFE)
        got["C_data_idle"] = ctx.get(dut.C)
        got["wB"] = await _write(ctx, b, 0x04, 1)                 # read-only: refused
        got["rC"] = await _read(ctx, b, 0x08)                     # write-only: DECERR
        got["w_unmapped"] = await _write(ctx, b, 0x40, 7)
        got["r_unmapped"] = await _read(ctx, b, 0x40)
        got["A_after"] = ctx.get(dut.A)
        # write-strobed, read from the design: the pulse carries the data, a read sees D_rd
        ctx.set(dut.D_rd, 0x5A)
        got["wD"] = await _write(ctx, b, 0x0C, 0x77)
        got["rD"] = await _read(ctx, b, 0x0C)

    run_bench(dut, bench)
    assert got["wA"] == (0, 0) and got["A"] == 0xBEEF
    assert got["rA"] == (0xBEEF, 0)
    assert got["rB"] == (0x12345678, 0)
    assert got["wC"] == (0, 1), "a write-only register pulses exactly once"
    assert got["C_data_idle"] == 0
    assert got["wB"][0] == 3 and got["rC"] == (0, 3)
    assert got["w_unmapped"][0] == 3 and got["r_unmapped"] == (0, 3)
    assert got["A_after"] == 0xBEEF, "refused writes change nothing"
    assert got["wD"][0] == 0 and got["rD"] == (0x5A, 0), "a wr register reads its _rd input"
    assert dut.pulses == [("C", 0xCAFE), ("D", 0x77)], "each pulse carries its write's data"


def test_read_arbiter_holds_grants_round_robin_and_routes_r():
    n, id_bits = 3, 2
    dut = AxiReadArbiter(n, 32, 64, id_bits)
    grants = []
    held = []
    routed = []
    rotation = []
    readies = []

    async def bench(ctx):
        o = dut.out
        ms = [getattr(dut, f"m{i}") for i in range(n)]
        for i, mi in enumerate(ms):
            ctx.set(mi.araddr, 0x1000 * (i + 1))
            ctx.set(mi.arid, i + 1)
            ctx.set(mi.arvalid, 1)
            ctx.set(mi.rready, 1)
        pending = set(range(n))
        stall = 3  # the port holds arready low for a while: the grant must not move
        for _ in range(40):
            if not pending:
                break
            who = ctx.get(o.arid) >> id_bits
            ctx.set(o.arready, stall == 0)
            if stall:
                held.append((who, ctx.get(o.araddr)))
                stall -= 1
            elif ctx.get(o.arvalid):
                await ctx.delay(1e-9)
                # the handshake reaches the granted manager alone
                readies.append([ctx.get(mi.arready) for mi in ms] == [int(j == who)
                                                                      for j in range(n)])
                grants.append((who, ctx.get(o.araddr), ctx.get(o.arid) & 3))
                ctx.set(ms[who].arvalid, 0)
                pending.discard(who)
                stall = 2
            await ctx.tick()
        ctx.set(o.arready, 0)
        # every manager requesting all the time: each handshake passes the grant on
        for mi in ms:
            ctx.set(mi.arvalid, 1)
        for c in range(30):
            ctx.set(o.arready, c % 3 != 1)
            await ctx.delay(1e-9)
            if ctx.get(o.arvalid) and ctx.get(o.arready):
                rotation.append(ctx.get(o.arid) >> id_bits)
            await ctx.tick()
        for mi in ms:
            ctx.set(mi.arvalid, 0)
        ctx.set(o.arready, 0)
        # R beats for each manager's id: only that manager sees them, and only its rready
        # answers (the others' are the opposite)
        for i in range(n):
            for ready in (1, 0):
                for j, mi in enumerate(ms):
                    ctx.set(mi.rready, ready if j == i else 1 - ready)
                ctx.set(o.rvalid, 1)
                ctx.set(o.rid, (i << id_bits) | (i + 1))
                ctx.set(o.rdata, 0xAB00 + i)
                ctx.set(o.rresp, (i + ready) % 4)
                ctx.set(o.rlast, ready)
                await ctx.delay(1e-9)
                routed.append(([ctx.get(mi.rvalid) for mi in ms], ctx.get(ms[i].rid),
                               ctx.get(ms[i].rdata), ctx.get(o.rready), ready,
                               ctx.get(ms[i].rresp), ctx.get(ms[i].rlast)))
                await ctx.tick()
        ctx.set(o.rvalid, 0)

    run_bench(dut, bench)
    assert sorted(g[0] for g in grants) == [0, 1, 2], grants
    assert all(addr == 0x1000 * (who + 1) and mid == who + 1 for who, addr, mid in grants)
    # while the port stalls the AR stays with one manager and its address
    assert len({h for h in held[:3]}) == 1, held
    # round robin: each grant goes to the nearest requester after the previous one
    order = [g[0] for g in grants]
    assert order in ([0, 1, 2], [1, 2, 0], [2, 0, 1]), order
    assert len(rotation) >= 15 and all(b == (a + 1) % n for a, b in
                                       zip(rotation, rotation[1:])), rotation
    assert len(readies) == n and all(readies), readies
    for k, (valids, rid, rdata, rready, ready, rresp, rlast) in enumerate(routed):
        i = k // 2
        assert valids == [int(j == i) for j in range(n)]
        assert rid == i + 1 and rdata == 0xAB00 + i and rready == ready
        assert (rresp, rlast) == ((i + ready) % 4, ready)
