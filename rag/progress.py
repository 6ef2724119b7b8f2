"""Progress of long commands: a bar with rate and ETA on a terminal, log lines elsewhere.

    with bar("encode", total=len(store), unit="passage", enabled=progress) as b:
        for chunk in chunks:
            ...
            b.update(len(chunk))
    with stage("train IVF"):        # a step without counts: started / done lines only
        ...

On a terminal (stderr is a tty) and with `enabled`, `bar` is a tqdm bar: count, rate and ETA. Elsewhere (CI, nohup,
`2> log`), or with enabled=False (--no-progress), nothing is drawn and each stage logs to the `rag.progress` logger:

    encode: started (111,266 passages)
    encode: done, 111,266 passages in 57.0 s (1,952 passages/s)
    encode: interrupted after 50,000 of 111,266 passages (25.6 s)        (an exception or Ctrl-C left the block)

plus, in a stage that runs for long, a line at most every LOG_EVERY seconds with the count, rate and ETA. The CLI
shows the `rag.progress` logger at INFO; a library caller sees these lines only if it configures logging so.
"""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("rag.progress")

LOG_EVERY = 300.0  # seconds between progress lines of a long stage when no bar is drawn


def on_terminal() -> bool:
    """Whether bars can be drawn: stderr is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def draw_bars(enabled: bool = True) -> bool:
    """For code that draws its own tqdm bars: draw them only when enabled and on a terminal."""
    return enabled and on_terminal()


def _amount(n: float, unit: str, scale: bool) -> str:
    if scale:
        from tqdm import tqdm

        return f"{tqdm.format_sizeof(n, divisor=1024 if unit == 'B' else 1000)}{unit}"
    return f"{n:,.0f} {unit}" + ("" if unit.endswith("s") or unit == "B" or n == 1 else "s")


def _of(n: float, total: float | None, unit: str, scale: bool) -> str:
    """"300 of 1,000 passages", "1.00MB of 3.00MB", or without a total "300 passages"."""
    if not total:
        return _amount(n, unit, scale)
    if scale:
        return f"{_amount(n, unit, scale)} of {_amount(total, unit, scale)}"
    return f"{n:,.0f} of {_amount(total, unit, scale)}"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


class LineBar:
    """tqdm's interface where no bar is drawn: started / progress / done lines on the `rag.progress` logger."""

    def __init__(self, desc: str, total: float | None = None, unit: str = "it", unit_scale: bool = False,
                 initial: float = 0, log_every: float | None = None):
        self.desc, self.total, self.unit, self.scale = desc, total, unit, unit_scale
        self.n = self.initial = initial
        self.postfix: dict = {}
        self.log_every = LOG_EVERY if log_every is None else log_every
        self.t0 = self.last = time.perf_counter()
        self.closed = False
        already = f", {_amount(initial, unit, unit_scale)} done before" if initial else ""
        log.info("%s: started%s", desc, f" ({_amount(total, unit, unit_scale)}{already})" if total else already)

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.log_every:
            self.last = now
            log.info("%s: %s", self.desc, self._where(now))

    def _where(self, now: float) -> str:
        done = self.n - self.initial
        rate = done / max(now - self.t0, 1e-9)
        text = _of(self.n, self.total, self.unit, self.scale)
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        text += f", {_amount(rate, self.unit, self.scale)}/s"
        if self.total and rate > 0:
            text += f", ETA {_seconds((self.total - self.n) / rate)}"
        return text

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def write(self, s: str, file=None, end: str = "\n") -> None:
        log.info("%s", s)

    def close(self, error: BaseException | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        secs = time.perf_counter() - self.t0
        if error is not None:
            why = "" if isinstance(error, KeyboardInterrupt) else f" by {type(error).__name__}"
            log.info("%s: interrupted%s after %s (%s)", self.desc, why, _of(self.n, self.total, self.unit, self.scale),
                     _seconds(secs))
            return
        done = self.n - self.initial
        rate = f" ({_amount(done / secs, self.unit, self.scale)}/s)" if secs > 0 and done else ""
        extra = "; " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in self.postfix.items()) \
            if self.postfix else ""
        log.info("%s: done, %s in %s%s%s", self.desc, _amount(done, self.unit, self.scale), _seconds(secs), rate, extra)

    def __enter__(self) -> "LineBar":
        return self

    def __exit__(self, kind, error, tb) -> None:
        self.close(error)


class _TqdmBar:
    """A tqdm bar whose context exit takes the same arguments as LineBar's close."""

    def __init__(self, **options):
        from tqdm import tqdm

        self._bar = tqdm(**options)

    def __getattr__(self, name):
        return getattr(self._bar, name)

    def close(self, error: BaseException | None = None) -> None:
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb) -> None:
        self._bar.close()


def bar(desc: str, total: float | None = None, unit: str = "it", enabled: bool = True, unit_scale: bool = False,
        initial: float = 0, **tqdm_options):
    """A progress bar (tqdm on a terminal when enabled) or its log-line stand-in; use it as a context manager, or
    call close(error) yourself. `tqdm_options` go to tqdm only."""
    if draw_bars(enabled):
        options = dict(desc=desc, total=total, unit=unit, unit_scale=unit_scale, initial=initial, file=sys.stderr,
                       dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
        options.update(tqdm_options)
        return _TqdmBar(**options)
    return LineBar(desc, total=total, unit=unit, unit_scale=unit_scale, initial=initial)


def note(message: str, *args) -> None:
    """One line of a long command's progress that is neither a bar nor a stage (e.g. what a resumed run reuses)."""
    log.info(message, *args)


@contextmanager
def stage(desc: str, what: str = "") -> Iterator[dict]:
    """A step without a bar: logs `desc: started` and `desc: done in T s` (or `interrupted`), on a terminal too.
    The yielded dict's items are added to the done line (e.g. counts known only at the end)."""
    info: dict = {}
    t0 = time.perf_counter()
    log.info("%s: started%s", desc, f" ({what})" if what else "")
    try:
        yield info
    except BaseException as e:
        why = "" if isinstance(e, KeyboardInterrupt) else f" by {type(e).__name__}"
        log.info("%s: interrupted%s (%s)", desc, why, _seconds(time.perf_counter() - t0))
        raise
    extra = "; " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in info.items()) if info else ""
    log.info("%s: done in %s%s", desc, _seconds(time.perf_counter() - t0), extra)
