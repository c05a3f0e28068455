import json

import pytest

from rpaccel.config import CONFIGS, ConfigError, RPAccelConfig, get_config


def test_named_configs_are_valid_and_distinct():
    assert set(CONFIGS) >= {"default", "baseline", "fpga-ecp5", "paper", "three-stage"}
    digests = {c.digest() for c in CONFIGS.values()}
    assert len(digests) == len(CONFIGS)
    for name, cfg in CONFIGS.items():
        assert cfg.name == name
        assert RPAccelConfig(**json.loads(cfg.to_json())) == cfg


def test_frozen():
    with pytest.raises(AttributeError):
        get_config("default").array_rows = 4


@pytest.mark.parametrize("changes, message", [
    ({"array_rows": 0}, "array_rows must be a positive integer, not 0"),
    ({"array_rows": 6}, "array_rows must be a multiple of block (4), not 6"),
    ({"array_cols": 10}, "array_cols must be a multiple of block (4), not 10"),
    ({"block": 2.0}, "block must be a positive integer, not 2.0"),
    ({"partitions": 3}, "partitions must be 1, 2 or 4, not 3"),
    ({"partitions": 4}, "partitions must be a divisor of the number of block columns (2), not 4"),
    ({"stages": 4}, "stages must be an integer from 1 to 3, not 4"),
    ({"topk_impl": "sort"}, "topk_impl must be 'queue' or 'heap', not 'sort'"),
    ({"topk_banks": 3}, "topk_banks must be 1 or 2, not 3"),
    ({"topk_banks": 2.0}, "topk_banks must be 1 or 2, not 2.0"),
    ({"topk_banks": 1, "topk_impl": "heap"}, "topk_banks must be 2 with topk_impl 'heap', not 1"),
    ({"tile_modules": 1}, "tile_modules must be True or False, not 1"),
    ({"stages": 2, "partitions": 1}, "stages must be at most partitions (1): each stage runs "
                                     "on its own partition, not 2"),
    ({"engines": 1}, "engines must be 0 (one per stage) or an integer from stages (2) to "
                     "partitions (2), not 1"),
    ({"engines": 4}, "engines must be 0 (one per stage) or an integer from stages (2) to "
                     "partitions (2), not 4"),
    ({"engines": 2.0}, "engines must be 0 (one per stage) or an integer from stages (2) to "
                       "partitions (2), not 2.0"),
    ({"topk_k": 256}, "topk_k must be at most max_items (128): a stage cannot keep more "
                      "items than a query has, not 256"),
    ({"static_rows": 16384}, "static_rows must be at most emb_map_rows (8192): the static "
                             "cache cannot be larger than the tables it maps, not 16384"),
    ({"max_items": 100}, "max_items must be a power of two from 1 to 65536, not 100"),
    ({"max_items": 8192}, "max_items must be at most 2**topk_id_bits (4096), not 8192"),
    ({"cand_beats": 0}, "cand_beats must be a power of two from 1 to 256, not 0"),
    ({"sub_batch": 0}, "sub_batch must be an integer from 1 to 4096, not 0"),
    ({"max_steps": 1}, "max_steps must be an integer from 2 to 256, not 1"),
    ({"weight_rows": 2.5}, "weight_rows must be an integer from 1 to 16777216, not 2.5"),
    ({"stages": 3}, "stages must be at most partitions (2): each stage runs on its own "
                    "partition, not 3"),
    ({"act_bits": 16}, "act_bits must be 8 (RPAccel is an int8 design), not 16"),
    ({"acc_bits": 40}, "acc_bits must be an integer from 17 to 32, not 40"),
    ({"mult_bits": 17}, "mult_bits must be an integer from 2 to 16, not 17"),
    ({"shift_bits": 7}, "shift_bits must be an integer from 1 to 6, not 7"),
    ({"score_bits": 8}, "score_bits must be an integer from 16 to 32, not 8"),
    ({"requant_lanes": -1}, "requant_lanes must be a positive integer, not -1"),
    ({"emb_requant_lanes": 12}, "emb_requant_lanes must be 0 (all emb_dim) or a power of two "
                                "up to emb_dim (32), not 12"),
    ({"emb_requant_lanes": 64}, "emb_requant_lanes must be 0 (all emb_dim) or a power of two "
                                "up to emb_dim (32), not 64"),
    ({"emb_units": 0}, "emb_units must be an integer from 1 to min(8, emb_tables) (8), not 0"),
    ({"emb_units": 3, "emb_tables": 2},
     "emb_units must be an integer from 1 to min(8, emb_tables) (2), not 3"),
    ({"emb_units": 4, "axi_ports": 3}, "axi_ports must be a divisor of emb_units (4), not 3"),
    ({"axi_ports": 0}, "axi_ports must be a divisor of emb_units (1), not 0"),
    ({"axi_ports": 2}, "axi_ports must be a divisor of emb_units (1), not 2"),
    ({"topk_lanes": 0}, "topk_lanes must be an integer from 1 to 16, not 0"),
    ({"topk_k": 0}, "topk_k must be an integer from 1 to 1024, not 0"),
    ({"topk_id_bits": 17}, "topk_id_bits must be an integer from 1 to 16, not 17"),
    ({"fclk_mhz": 0}, "fclk_mhz must be a positive number, not 0"),
    ({"name": ""}, "name must be a non-empty string, not ''"),
    ({"inter_pairs": 9}, "inter_pairs must be an integer from 1 to 8 (at most the activation "
                         "word's lanes, lcm(array_rows, array_cols)), not 9"),
    ({"inter_pairs": 2, "inter_slots": 8},
     "inter_slots must be a power of two dividing the activation word's lanes (8) with "
     "inter_pairs x inter_slots at most 8 (pairs leave a byte each per cycle; inter_pairs "
     "2), not 8"),
    ({"inter_slots": 3}, "inter_slots must be a power of two dividing the activation word's "
                         "lanes (8) with inter_pairs x inter_slots at most 8 (pairs leave a "
                         "byte each per cycle; inter_pairs 1), not 3"),
    ({"array_cols": 12, "block": 4, "partitions": 1, "stages": 1, "inter_slots": 16},
     "inter_slots must be a power of two dividing the activation word's lanes (24) with "
     "inter_pairs x inter_slots at most 24 (pairs leave a byte each per cycle; inter_pairs "
     "1), not 16"),
    ({"inter_banks": 3}, "inter_banks must be a power of two from 2 to 64, not 3"),
    ({"inter_banks": 1}, "inter_banks must be a power of two from 2 to 64, not 1"),
])
def test_invalid_values_name_parameter_rule_and_value(changes, message):
    with pytest.raises(ConfigError) as e:
        get_config("default").replace(**changes)
    assert str(e.value) == message


def test_unknown_config_name():
    with pytest.raises(ConfigError, match="config must be one of .* not 'nope'"):
        get_config("nope")


def test_a_later_field_at_its_old_behaviour_keeps_the_digest():
    """Runs recorded before `topk_banks` existed (the FPGA calibration's Yosys runs, keyed
    by config digest) still match the configurations that build the same hardware."""
    from rpaccel.fpga import CALIBRATED_FPGA_ECP5

    assert CALIBRATED_FPGA_ECP5.digest() == "dc273c19cd"
    cfg = get_config("default")
    assert cfg.digest() == "3e754b8aff"  # as before the field existed
    assert cfg.replace(topk_banks=1).digest() != cfg.digest()
    assert get_config("fpga-ecp5").digest() == "9df06abd6b"  # as before axi_ports existed
    wide = get_config("wide-lookup")
    assert wide.replace(axi_ports=2).digest() != wide.digest()
