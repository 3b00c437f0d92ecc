"""TensorFlow without its start-up chatter on the terminal.

TensorFlow's native code prints to file descriptor 2 as it loads: oneDNN and CPU-feature
notices, absl's "All log messages before absl::InitializeLog()" preamble, and later
ERROR-level noise such as "NodeDef mentions attribute use_unbounded_threadpool". These
lines break progress bars and bury the one line that matters.

- ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set a level) drops native INFO, WARNING and
  ERROR logs once TensorFlow's logging is up; errors still reach Python as exceptions.
- A few notices are printed before that setting is read, whatever it says. They are
  caught by pointing descriptor 2 at a temp file while ``tensorflow`` is imported; every
  captured line that is not such a notice is written back, so a real error is not lost.
  (``TF_ENABLE_ONEDNN_OPTS=0`` also silences the oneDNN notice, but halves MobileNetV2's
  throughput on CPU.)
- Python-side absl and ``tensorflow`` loggers are set to ERROR.

``install()`` runs when the ``models`` package is imported: that is before any module
here imports Keras or TensorFlow, and it imports neither (planning a run needs no TF).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

# A native log line (``I0000 00:00:1795876281.206761   12258 port.cc:153] ...``) at
# INFO or WARNING, or absl's preamble before its logging is initialised.
# LiteRT adds one notice of its own when it first allocates tensors.
_NOISE = re.compile(
    r"^(?:[IW]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)"
)
_QUIET_LEVEL = "3"


def install() -> None:
    """Quiet the first ``import tensorflow`` of this process (no-op once TF is loaded)."""
    explicit = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _QUIET_LEVEL)
    if explicit and os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("0", "1"):
        return  # someone asked to see TensorFlow's logs
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _TensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowFinder())


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the normal path finder does, with a loader that quiets it."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # only the first import loads the native code
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner) -> None:
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self._inner.exec_module(module)
        quiet_python_loggers()

    def __getattr__(self, name):  # resource readers and the like: the real loader's
        return getattr(self._inner, name)


def quiet_python_loggers() -> None:
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Descriptor 2 goes to a temp file; on exit, every line but TensorFlow's start-up
    notices is written back to the real stderr, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                if not _NOISE.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
