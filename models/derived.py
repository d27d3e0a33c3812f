"""Files derived from a resolved model, made once per box into the model cache and never committed.

Two kinds:

* ``any_size_model``: a copy whose input height and width are symbolic. OSNet and YOLOX-nano are
  fully convolutional, but their exports fix one input size (256x128, 416x416); with the two dims
  renamed to ``height``/``width`` the same weights run at any size the network's strides allow, and
  YOLOX's output grows with the grid. On the way YOLOX's Focus stem is folded into one convolution
  (``gridwatch.models.focus``: the same arithmetic, 7-8 % less inference time on this CPU) and its
  SPP pools are chained (``gridwatch.models.sppf``: the same maxima, about 1 % less).
* ``optimised_model``: where onnxruntime saves the graph it optimised (``SessionOptions.
  optimized_model_filepath``), so the next start loads it instead of optimising again. Keyed by the
  onnxruntime version and the providers: a graph optimised for one is not valid for another.

Derived files go beside the resolved models (``<cache>/derived``), or into the temp dir when the
cache is read-only (a container without a writable home). Each is keyed by the source file's name
and size, so a replaced model is derived again.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from gridwatch.models.resolver import cache_dir


def derived_dirs() -> tuple[Path, Path]:
    """Where derived files live, in order of preference."""
    return cache_dir() / "derived", Path(tempfile.gettempdir()) / "gridwatch-derived"


# Bumped whenever a derivation changes, so a cache holding an older copy derives it again
# (2: YOLOX's Focus stem folded; 3: its SPP pools chained).
DERIVATION = 3


def _key(path: Path) -> str:
    return f"{path.stem}.{path.stat().st_size}"


def find_derived(name: str) -> Path | None:
    for folder in derived_dirs():
        if (folder / name).is_file():
            return folder / name
    return None


def writable_derived_dir() -> Path:
    """The first derived folder that can be written, created if needed."""
    for folder in derived_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise OSError("no writable folder for derived models (tried the model cache and the temp dir)")


def any_size_model(path: Path) -> Path:
    """A copy of ``path`` with symbolic input height and width (dims 2 and 3 of the first input), and
    YOLOX's Focus stem folded and SPP pools chained where the graph has them."""
    name = f"{_key(path)}.anysize.v{DERIVATION}.onnx"
    if found := find_derived(name):
        return found
    import onnx  # only needed once per box, to derive the copy

    from gridwatch.models.focus import fold_focus
    from gridwatch.models.sppf import chain_spp

    model = onnx.load(str(path))
    fold_focus(model)
    chain_spp(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    del model.graph.value_info[:]  # shapes inferred for the export's size would contradict other sizes
    for output in model.graph.output:  # a detector's anchor axis (its longest: 3549 at 416x416) follows the size
        out_dims = output.type.tensor_type.shape.dim
        if len(out_dims) == 3:
            max(out_dims[1:], key=lambda d: d.dim_value).dim_param = "anchors"
    folder = writable_derived_dir()
    partial = folder / f"{name}.{os.getpid()}.{threading.get_ident()}.partial"  # cameras may race
    onnx.save(model, str(partial))
    return partial.replace(folder / name)


def optimised_model(path: Path, onnxruntime_version: str, providers: tuple[str, ...]) -> tuple[Path, bool]:
    """Where the onnxruntime-optimised graph of ``path`` for this runtime and these providers is kept,
    and whether it is already there (else the caller's session writes it there)."""
    tag = "-".join(p.removesuffix("ExecutionProvider").lower() for p in providers)
    name = f"{_key(path)}.ort{onnxruntime_version}.{tag}.optimised.onnx"
    found = find_derived(name)
    return (found, True) if found else (writable_derived_dir() / name, False)
