"""The output formats by name: file extension and sink (see formats/sink.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdmodel.errors import ConversionError
from sdmodel.formats.base import TensorInfo
from sdmodel.formats.ckpt_writer import CkptSink
from sdmodel.formats.gguf_writer import GGUFSink
from sdmodel.formats.safetensors_writer import SafetensorsSink
from sdmodel.formats.sink import Sink
from sdmodel.i18n import Msg, OneOf

SinkFactory = Callable[[list[TensorInfo], dict[str, Any] | None], Sink]

# format name -> (file extension, how to make its sink)
SINKS: dict[str, tuple[str, SinkFactory]] = {
    "safetensors": (".safetensors", SafetensorsSink),
    "ckpt": (".ckpt", lambda tensors, metadata: CkptSink(tensors)),
    "gguf": (".gguf", GGUFSink.from_plan),
}
OUTPUT_FORMATS: dict[str, str] = {name: ext for name, (ext, _make) in SINKS.items()}


def make_sink(fmt: str, tensors: list[TensorInfo], metadata: dict[str, Any] | None) -> Sink:
    """The sink writing ``tensors`` in format ``fmt``; ``metadata`` where the format keeps it."""
    if fmt not in SINKS:
        raise ConversionError(Msg("unknown output format {fmt!r} ({sinks})", fmt=fmt, sinks=OneOf(tuple(SINKS))))
    return SINKS[fmt][1](tensors, metadata)
