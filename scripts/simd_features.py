"""Print the numpy SIMD features to disable to run on an older CPU's code paths.

``python scripts/simd_features.py avx512`` prints the AVX-512 features that numpy dispatches
to on this machine; ``avx2`` adds AVX2 and FMA3.  The result is meant for
``NPY_DISABLE_CPU_FEATURES``, so a test run takes the kernels another CPU of this kind would
take (SIMD paths round differently).  ``--check`` instead verifies that the features named in
``NPY_DISABLE_CPU_FEATURES`` are really off in this process.

Usage: python scripts/simd_features.py avx512 | avx2 | --check
"""

from __future__ import annotations

import os
import sys

LEVELS = {"avx512": ("AVX512",), "avx2": ("AVX512", "AVX2", "FMA3")}


def _features() -> tuple[list[str], dict[str, bool]]:
    from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return list(__cpu_dispatch__), dict(__cpu_features__)


def main() -> int:
    arg = sys.argv[1] if len(sys.argv) > 1 else ""
    dispatch, features = _features()
    if arg == "--check":
        wanted = os.environ.get("NPY_DISABLE_CPU_FEATURES", "").split()
        still_on = [name for name in wanted if features.get(name)]
        if still_on:
            print(f"still enabled: {' '.join(still_on)}", file=sys.stderr)
            return 1
        return 0
    if arg not in LEVELS:
        print(__doc__, file=sys.stderr)
        return 2
    names = [f for f in dispatch if f.startswith(LEVELS[arg]) and features.get(f)]
    print(" ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
