"""What the simulator prices a model on a GPU at (VIDUR's tables plus the modelled parts),
part by part: a decode step, a batched verification and a prefill.

    python scripts/gpu_times.py llama-2-70b@h100:tp4 llama-2-7b@a40 [--context 500] [--json]

Each line splits the forward's time into the measured operators x layers, the all-reduces
(tensor parallelism > 1), the embedding, and the modelled attention and LM head
(``emulator.sim.gpu_model``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from emulator.sim.device_spec import parse_device_spec
from emulator.sim.gpu_model import GpuModel
from emulator.sim.vidur import VidurError
from runtime.arguments import positive_int

SHAPES = {
    "decode 1 row": lambda c: ([(1, c)], None),
    "verify 8 rows x 5": lambda c: ([(5, c)] * 8, None),
    "prefill 512": lambda c: ([(512, 0)], 1),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="+", help="MODEL@GPU[:tpK]")
    parser.add_argument("--context", type=positive_int, default=500, help="cached tokens a row")
    parser.add_argument("--json", action="store_true", help="last line: the times as JSON")
    args = parser.parse_args(argv)
    rows = []
    try:
        for text in args.specs:
            spec = parse_device_spec(text)
            if spec.gpu is None:
                raise ValueError(f"{text!r}: a GPU model is MODEL@GPU[:tpK]")
            model = GpuModel(spec.model, spec.gpu, spec.tp)
            for shape, make in SHAPES.items():
                forward = model.forward(*make(args.context))
                rows.append(
                    {"spec": text, "shape": shape, **asdict(forward), "total_ms": forward.total_ms}
                )
    except (ValueError, VidurError) as exc:
        print(f"gpu_times: error: {exc}", file=sys.stderr)
        return 2
    header = f"{'model':<30}{'forward':<20}{'total':>8}{'layers':>8}{'reduce':>8}"
    header += f"{'emb':>7}{'attn*':>7}{'head*':>7}"
    print(header)
    for row in rows:
        print(
            f"{row['spec']:<30}{row['shape']:<20}{row['total_ms']:>8.2f}{row['layers_ms']:>8.2f}"
            f"{row['all_reduce_ms']:>8.2f}{row['embedding_ms']:>7.2f}{row['attention_ms']:>7.2f}"
            f"{row['lm_head_ms']:>7.2f}"
        )
    print(f"ms; * modelled, not measured; rows over {args.context} cached tokens")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
