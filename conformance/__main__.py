"""Run the OCI runtime conformance suite, or compare two reports.

    OCI_RUNTIME=/usr/bin/runc python -m conformance [--report PATH] [pytest args...]
    python -m conformance --compare report-runc.json report-ocipy.json

Run from the repository root, as root.  Exit status: 0 when every test
passed, was skipped for a host reason, or failed as an expected runc deviation.
"""

import os
import sys


def main(argv):
    if argv[:1] == ["--compare"]:
        if len(argv) != 3:
            sys.exit("usage: python -m conformance --compare A.json B.json")
        from .report import compare
        compare(argv[1], argv[2])
        return 0
    import pytest
    here = os.path.dirname(os.path.abspath(__file__))
    # explicit test paths (conformance/test_x.py, ...::test_y) replace the default
    paths = [a for a in argv if not a.startswith("-")
             and ("::" in a or a.endswith(".py") or os.path.isdir(a))]
    args = ([] if paths else [here]) + ["-p", "no:cacheprovider", "-q", "-rfE", *argv]
    return pytest.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
