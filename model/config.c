/* config.c: see config.h. */
#include "config.h"

#include <stdio.h>
#include <string.h>

static const char *attn_names[ATTN_COUNT] = {"path", "path-fox", "fox", "rope", "nope", "learned"};

ModelConfig model_config_make(AttnType attn, int n_layer, int n_head, int n_embd, int vocab_size, int max_seq_len) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.max_seq_len = max_seq_len;
    c.vocab_size = vocab_size;
    c.padded_vocab_size = (vocab_size + 127) / 128 * 128;
    c.n_layer = n_layer;
    c.n_head = n_head;
    c.n_embd = n_embd;
    c.w_rank = 32;
    c.conv_size = 3;
    c.attn = attn;
    c.doc_token = -1;
    c.rope_theta = 10000.0f;
    return c;
}

int model_config_check(const ModelConfig *c, char *why, size_t n) {
    why[0] = '\0';
    if (c->attn < 0 || c->attn >= ATTN_COUNT) snprintf(why, n, "unknown attention type %d", (int)c->attn);
    else if (c->n_layer < 1) snprintf(why, n, "n_layer %d must be at least 1", c->n_layer);
    else if (c->n_head < 1 || c->n_embd < 1) snprintf(why, n, "n_head %d and n_embd %d must be positive", c->n_head, c->n_embd);
    else if (c->n_embd % c->n_head != 0) snprintf(why, n, "n_head %d does not divide n_embd %d", c->n_head, c->n_embd);
    else if (c->attn == ATTN_ROPE && (c->n_embd / c->n_head) % 2 != 0) snprintf(why, n, "rope needs an even head dim, got %d", c->n_embd / c->n_head);
    else if (c->vocab_size < 2) snprintf(why, n, "vocab_size %d must be at least 2", c->vocab_size);
    else if (c->padded_vocab_size < c->vocab_size || c->padded_vocab_size % 128 != 0)
        snprintf(why, n, "padded_vocab_size %d must be a multiple of 128 and >= vocab_size %d", c->padded_vocab_size, c->vocab_size);
    else if (c->max_seq_len < 1) snprintf(why, n, "max_seq_len %d must be positive", c->max_seq_len);
    else if (attn_uses_path(c->attn) && (c->w_rank < 1 || c->conv_size < 1))
        snprintf(why, n, "w_rank %d and conv_size %d must be positive", c->w_rank, c->conv_size);
    else if (c->doc_token < -1 || c->doc_token >= c->vocab_size) snprintf(why, n, "doc_token %d is not -1 or a token id below %d", c->doc_token, c->vocab_size);
    else if (!(c->rope_theta > 0.0f)) snprintf(why, n, "rope_theta must be positive");
    return why[0] ? -1 : 0;
}

const char *attn_type_name(AttnType a) { return (a >= 0 && a < ATTN_COUNT) ? attn_names[a] : "?"; }

int attn_type_parse(const char *name, AttnType *out) {
    for (int a = 0; a < ATTN_COUNT; a++)
        if (strcmp(name, attn_names[a]) == 0) { *out = (AttnType)a; return 0; }
    return -1;
}

int attn_uses_path(AttnType a) { return a == ATTN_PATH || a == ATTN_PATH_FOX; }
int attn_uses_gate(AttnType a) { return a == ATTN_PATH_FOX || a == ATTN_FOX; }

float attn_gate_scale(AttnType a, float scale) {
    if (a == ATTN_PATH_FOX) return scale;
    if (a == ATTN_FOX) return 1.0f;
    return 0.0f;
}

double model_config_flops_per_token(const ModelConfig *c, int T) {
    double L = c->n_layer, C = c->n_embd, NH = c->n_head, R = c->w_rank, K = c->conv_size;
    double per_layer = 12.0 * C * C; /* qkvw 3C^2 + attprojw C^2 + fcw 4C^2 + fcprojw 4C^2 */
    if (attn_uses_path(c->attn)) per_layer += 2.0 * R * C + C * K + NH * C; /* wdown, wup, wconv, betaw */
    if (attn_uses_gate(c->attn)) per_layer += NH * C;                      /* gatew */
    double n_mm = L * per_layer + (double)c->padded_vocab_size * C;        /* + the tied LM head */
    return 6.0 * n_mm + 6.0 * L * C * T;
}
