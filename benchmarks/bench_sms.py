"""How fast encode_sms and count_segments are, per kind of text and on a mix.

    python benchmarks/bench_sms.py            # about 1 s per row
    python benchmarks/bench_sms.py --seconds 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from omnirelay.core.sms import count_segments, encode_sms

# (what, text, autoconvert); lengths, encodings and part counts are printed from the result.
CASES = [
    ("short OTP", "Your code is 482913. It expires in 5 min", "on"),
    ("short, look-alikes replaced", "“Your code” — it’s 482913…", "on"),  # noqa: RUF001
    ("long GSM with escapes", "Dear customer, your parcel {ref} is on its way [eta: 14:00]. " * 10, "on"),
    ("long GSM with €", "Your order of 12,50€ has shipped; track it at the usual place. " * 5, "on"),
    ("long UCS-2 with emoji", "Ваша посылка в пути 🚚 " * 14, "on"),
    ("full mode, Polish + emoji", "Zażółć gęślą jaźń 😀 " * 15, "full"),
]
MIX = [CASES[0]] * 6 + [CASES[2]] * 2 + [CASES[4]] * 2


def rate(call: Callable[[], object], seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        for _ in range(100):
            call()
        calls += 100
    return calls / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per row")
    seconds = parser.parse_args().seconds

    print(f"{'encode_sms':56} {'per second':>12}")
    for what, text, mode in CASES:
        sms = encode_sms(text, autoconvert=mode)
        label = f"{what} ({len(text)} chars, {sms.encoding}, {sms.segment_count} parts)"
        per_second = rate(lambda text=text, mode=mode: encode_sms(text, autoconvert=mode), seconds)
        print(f"{label:56} {per_second:12,.0f}")

    def encode_mix() -> None:
        for _, text, mode in MIX:
            encode_sms(text, autoconvert=mode)

    def count_mix() -> None:
        for _, text, mode in MIX:
            count_segments(text, autoconvert=mode)

    print(f"{'mix 6 short : 2 long GSM : 2 long UCS-2':56} {rate(encode_mix, seconds) * len(MIX):12,.0f}")
    print(f"{'count_segments, same mix':56} {rate(count_mix, seconds) * len(MIX):12,.0f}")


if __name__ == "__main__":
    main()
