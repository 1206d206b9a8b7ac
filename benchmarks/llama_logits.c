// Last-position logits of a GGUF model through llama.cpp's C API, for the parity check of
// benchmarks/lm_peers.py (built by `make llamacpp` against the libllama it builds).
//
//     llama-logits MODEL.gguf OUT.f32 TOKEN [TOKEN ...]
//
// Runs the token ids as one batch from position 0 (no tokenizer involved) on one thread and
// writes the vocab-sized float32 logits of the last position to OUT.f32 (native byte order).
#include <stdio.h>
#include <stdlib.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char * text, void * data) {
    (void) data;
    if (level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf OUT.f32 TOKEN [TOKEN ...]\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mparams = llama_model_default_params();
    struct llama_model * model = llama_model_load_from_file(argv[1], mparams);
    if (model == NULL) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const int n_tokens = argc - 3;
    llama_token * tokens = malloc(sizeof(llama_token) * n_tokens);
    for (int i = 0; i < n_tokens; i++) {
        tokens[i] = (llama_token) atoi(argv[i + 3]);
    }
    struct llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = n_tokens < 64 ? 64 : n_tokens;
    cparams.n_batch = cparams.n_ctx;
    cparams.n_ubatch = cparams.n_ctx;
    cparams.n_threads = 1;
    cparams.n_threads_batch = 1;
    struct llama_context * ctx = llama_init_from_model(model, cparams);
    if (ctx == NULL || llama_decode(ctx, llama_batch_get_one(tokens, n_tokens)) != 0) {
        fprintf(stderr, "decode failed\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    const float * logits = llama_get_logits_ith(ctx, -1);
    FILE * out = fopen(argv[2], "wb");
    if (out == NULL || fwrite(logits, sizeof(float), n_vocab, out) != (size_t) n_vocab) {
        fprintf(stderr, "cannot write %s\n", argv[2]);
        return 1;
    }
    fclose(out);
    free(tokens);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
