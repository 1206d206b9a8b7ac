"""TFLite model metadata, the kind Android Studio's ML Model Binding, the TFLite Task Library and
MediaPipe Tasks read: name, version, author, input normalization and range, tensor descriptions,
and label files packed into the model (a zip appended after the flatbuffer).

    Metadata          what to write (a convert option, a recipe's convert keys, `tfopt metadata`);
                      its fields are the one list of metadata fields (fields.py)
    read(data)        the metadata and packed files of a .tflite, as a JSON-ready dict (or None)
    attach(data, m)   the model with `m` written in: existing metadata and files are kept and
                      only the fields `m` names change (write.py)
    parse.py          the user's text: KEY=VALUE pairs, MEAN,STD, label files
    edit.py           `tfopt metadata`: show, or write a changed copy

Only the flatbuffers package is needed (the generated schema is vendored beside this file).
"""

from tfopt.metadata.fields import OPTION_KEYS, Metadata
from tfopt.metadata.parse import parse_normalize, parse_sets, read_labels
from tfopt.metadata.reader import (
    FIELD,
    IDENTIFIER,
    TEXT_KEYS,
    app_caveats,
    io_tensors,
    metadata_buffer,
    packed_files,
    read,
)
from tfopt.metadata.write import PARSER_VERSION, attach, carry

__all__ = [
    "FIELD",
    "IDENTIFIER",
    "OPTION_KEYS",
    "PARSER_VERSION",
    "TEXT_KEYS",
    "Metadata",
    "app_caveats",
    "attach",
    "carry",
    "io_tensors",
    "metadata_buffer",
    "packed_files",
    "parse_normalize",
    "parse_sets",
    "read",
    "read_labels",
]
