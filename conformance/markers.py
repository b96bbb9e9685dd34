"""Markers shared by the test modules.

    @requirement("runtime.md#start", "quote of the MUST")  spec sentence checked
    @runc_deviation("why")  expected failure when the runtime's basename is runc
"""

import pytest

requirement = pytest.mark.requirement
runc_deviation = pytest.mark.runc_deviation
