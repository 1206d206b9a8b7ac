"""The runtime that times a `.tflite` model: on this machine, and on a device.

It imports only the standard library, numpy, ai_edge_litert and (for `.litertlm` bundles)
litert_lm (never TensorFlow, never the rest of tfopt), so it travels to an ssh device as one
zipapp and runs there with the device's python; local runs use the very same zipapp. Modules:
`feeding` (interpreter, I/O, quantization, inputs), `stats` (percentiles, memory, machine,
pinning), `cpu` (Interpreter timing), `gpu` (CompiledModel timing and LiteRT's GPU verdict), `lm`
(prefill/verify/decode generation on CompiledModel, TTFT and tokens/s), `lookup` (prompt-lookup
drafts), `weightcache` (XNNPACK weights packed once), `litertlm` (LiteRT-LM's own engine) and
`__main__` (the command line; one JSON document out).
"""
