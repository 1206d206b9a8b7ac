"""Token lookups as EMBEDDING_LOOKUP: the LM's constant-table gathers rewritten so the LiteRT
quantizer quantizes the embedding table (weight-only int4/int8), on the tiny keras-hub GPT-2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import GPT2_HIDDEN as HIDDEN
from tests.conftest import GPT2_VOCAB as VOCAB
from tfopt.conversion import convert
from tfopt.conversion.dedupe import dedupe_buffers
from tfopt.conversion.lookups import lookups_as_embedding
from tfopt.runtime.lm import LmRunner

MAX_LEN = 40
PROMPT = [5, 17, 42, 9, 100, 3, 77, 8]


@pytest.fixture(scope="module")
def float32(gpt2: tuple[Any, Path], tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The LM's float32 flatbuffer as the converter writes it (token lookups as GATHER)."""
    from converters.lm import lm_converter

    return bytes(lm_converter(gpt2[0], tmp_path_factory.mktemp("lm_work"), MAX_LEN).convert())


def written(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def lookup_tables(flatbuffer: bytes) -> dict[str, list[tuple[list[int], str]]]:
    """{op name: [(shape, type) of each table it looks rows up in]} for GATHER/EMBEDDING_LOOKUP,
    over every signature's subgraph; a table a DEQUANTIZE makes counts as the one it reads."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(flatbuffer)
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    found: dict[str, list[tuple[list[int], str]]] = {"GATHER": [], "EMBEDDING_LOOKUP": []}
    for subgraph in model.subgraphs:
        made = {}
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE:
                made[int(op.outputs[0])] = int(op.inputs[0])
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            table = {schema.BuiltinOperator.GATHER: 0, schema.BuiltinOperator.EMBEDDING_LOOKUP: 1}
            if builtin in table:
                name = "GATHER" if builtin == schema.BuiltinOperator.GATHER else "EMBEDDING_LOOKUP"
                index = int(op.inputs[table[builtin]])
                tensor = subgraph.tensors[made.get(index, index)]
                found[name].append(([int(d) for d in tensor.shape], types[tensor.type]))
    return found


def test_pass_keeps_float32_logits(float32: bytes, tmp_path: Path) -> None:
    rewritten = lookups_as_embedding(float32)
    tables = lookup_tables(rewritten)
    assert ([VOCAB, HIDDEN], "FLOAT32") in tables["EMBEDDING_LOOKUP"]
    assert ([VOCAB, HIDDEN], "FLOAT32") not in tables["GATHER"]
    before = LmRunner(written(tmp_path, "before.tflite", float32))
    after = LmRunner(written(tmp_path, "after.tflite", rewritten))
    np.testing.assert_allclose(after.prefill(PROMPT), before.prefill(PROMPT), rtol=1e-5, atol=1e-6)
    for position, token in enumerate([11, 200, 3], start=len(PROMPT)):
        a, b = after.decode(token, position), before.decode(token, position)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pass_leaves_a_file_without_lookups_alone() -> None:
    from tfopt import keras_worlds

    keras = keras_worlds.module(keras_worlds.World.KERAS3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    tf = keras_worlds.tf()
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert lookups_as_embedding(flatbuffer) == flatbuffer


@pytest.mark.parametrize(("precision", "stored"), [("w4b32", "INT4"), ("w8", "INT8")])
def test_aeq_lm_quantizes_its_embedding_table(
    gpt2: tuple[Any, Path], float32: bytes, tmp_path: Path, precision: str, stored: str
) -> None:
    from converters.aeq import quantize
    from tfopt.core import Precision

    out = tmp_path / f"gpt2_{precision}.tflite"
    result = convert(gpt2[1], out, precision, lm=True, max_length=MAX_LEN, quantizer="aeq")
    assert result.check["passed"]  # logits against Keras within the precision's thresholds
    tables = lookup_tables(out.read_bytes())
    token_tables = [t for t in tables["EMBEDDING_LOOKUP"] if t[0] == [VOCAB, HIDDEN]]
    assert token_tables and all(kind == stored for _, kind in token_tables)
    assert ([VOCAB, HIDDEN], "FLOAT32") not in tables["GATHER"] + tables["EMBEDDING_LOOKUP"]
    gather_only = dedupe_buffers(quantize(float32, Precision(precision)))
    print(f"{precision} LM: {len(gather_only)} -> {out.stat().st_size} bytes")
    assert out.stat().st_size < len(gather_only) - VOCAB * HIDDEN * 2  # float table gone
    if precision == "w4b32":  # the int4 lookup reads the head's own buffer (stored once)
        from tfopt.inspection import weight_bytes_per_run

        read = weight_bytes_per_run(out, "decode")  # EMBEDDING_LOOKUP's table is its 2nd input
        assert read["tied_table_bytes"] >= VOCAB * HIDDEN // 2


def agreeing(tokens: list[int], expected: list[int]) -> int:
    return next((i for i, (a, b) in enumerate(zip(tokens, expected, strict=True)) if a != b), len(expected))


def test_w4b32_greedy_tokens_stay_close_to_keras_hub(
    gpt2: tuple[Any, Path], float32: bytes, tmp_path: Path
) -> None:
    """test_lm holds int4 LMs to the convert check (logits against Keras), not to keras-hub's
    tokens; here the int4 table may not cut the run of tokens equal to keras-hub's short of
    where the file with a float table already parts from it."""
    from converters.aeq import quantize
    from tests.test_lm import keras_greedy
    from tfopt.core import Precision

    out = tmp_path / "gpt2_w4b32.tflite"
    convert(gpt2[1], out, "w4b32", lm=True, max_length=MAX_LEN, quantizer="aeq")
    before = written(tmp_path, "gather.tflite", quantize(float32, Precision.W4B32))
    expected = keras_greedy(gpt2[0], PROMPT, 12)
    tokens = LmRunner(str(out)).generate(PROMPT, 12)[0]
    float_table = LmRunner(before).generate(PROMPT, 12)[0]
    print("w4b32", tokens, "float table", float_table, "keras-hub", expected)
    assert agreeing(tokens, expected) >= agreeing(float_table, expected)


def test_a_quantized_table_stays_only_if_the_lm_check_passes(
    gpt2: tuple[Any, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Channelwise int4 (w4): the token lookup is rewritten and its table quantized, unless that
    costs the LM its check; then the lookup stays a float GATHER and a note says so. Either way
    the file written passes its check."""
    out = tmp_path / "gpt2_w4.tflite"
    with caplog.at_level("WARNING", logger="tfopt"):
        result = convert(gpt2[1], out, "w4", lm=True, max_length=MAX_LEN, quantizer="aeq")
    assert result.check["passed"]
    tables = lookup_tables(out.read_bytes())
    kept_float = ([VOCAB, HIDDEN], "FLOAT32") in tables["GATHER"]
    noted = any("token table fails the LM check" in r.getMessage() for r in caplog.records)
    assert kept_float == noted
    if not kept_float:
        assert ([VOCAB, HIDDEN], "INT4") in tables["EMBEDDING_LOOKUP"]
