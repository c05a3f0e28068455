"""One module per ``rpaccel`` command: each has ``add_parser(sub)`` (its arguments, with
``func=run``) and ``run(args) -> int`` (the exit status). `rpaccel.scripts.cli` only
dispatches."""

#: The commands in the order ``rpaccel --help`` lists them.
COMMANDS = ("fetch_data", "models", "score", "quantize", "quality", "generate", "lint",
            "verify", "synth", "board", "bench", "perf", "demo", "sim", "regress", "formal",
            "mutate", "dse", "fpga")
