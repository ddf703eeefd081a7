"""Resume half-finished runs in a fresh process: restore, continue, write the final states.

Usage: python checkpoint_worker.py IN_DIR OUT_DIR NAME [NAME ...]
Reads IN_DIR/NAME.params and IN_DIR/NAME.state (gradtx checkpoints written at step K),
runs the remaining steps with the same jitted update, writes OUT_DIR/NAME.params/.state.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

from gradtx.checkpoint import state_from_bytes, state_to_bytes  # noqa: E402

from helpers import RESUME_PARAMS as PARAMS  # noqa: E402
from helpers import STOP_AT, TOTAL_STEPS, run_steps
from helpers import build_resumable as build


def main(in_dir, out_dir, names):
    for name in names:
        tx = build(name)
        with open(os.path.join(in_dir, name + ".params"), "rb") as f:
            params = state_from_bytes(PARAMS, f.read())
        with open(os.path.join(in_dir, name + ".state"), "rb") as f:
            state = state_from_bytes(tx.init(PARAMS), f.read())
        params, state = run_steps(tx, params, state, STOP_AT, TOTAL_STEPS)
        with open(os.path.join(out_dir, name + ".params"), "wb") as f:
            f.write(state_to_bytes(params))
        with open(os.path.join(out_dir, name + ".state"), "wb") as f:
            f.write(state_to_bytes(state))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
