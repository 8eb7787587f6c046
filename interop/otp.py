"""The OTP runtimes of the interop matrix (moved to :mod:`pynode.testing.otp`; re-exported)."""

from __future__ import annotations

from pynode.testing.otp import (  # noqa: F401
    OTP28_WHEEL,
    Otp,
    all_otps,
    cache_dir,
    fetch_otp28,
    otp25,
    otp28,
)

if __name__ == "__main__":
    for o in all_otps():
        print(o.name, o.erl)
