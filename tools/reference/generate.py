"""Regenerates every checkpoint and golden file of the Python reference, then
checks that both layouts reproduce the goldens. Byte-identical on rerun.

    .venv/bin/python tools/reference/generate.py
"""

import chain
import check_layouts
import checkpoints
import golden


def main():
    """Checkpoints, then tensor goldens, then chain goldens, then the check."""
    checkpoints.main(list(checkpoints.CASES) + ["lora"])
    golden.main()
    chain.main()
    check_layouts.main()


if __name__ == "__main__":
    main()
