/* saga_condition.c - a step's "when" (see saga_condition.h): a lexer, a
 * recursive-descent parser into a small tree, and its evaluation.
 * Hand-written: the language is a dozen tokens, and what a library would
 * add (a general expression engine) is what a condition must not have. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_condition.h"
#include "saga_shared.h"
#include "saga_template.h"

typedef enum { N_OR, N_AND, N_NOT, N_CMP, N_REF, N_LIT, N_EXISTS } node_kind;
typedef enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE } cmp_op;

typedef struct node {
    node_kind kind;
    cmp_op op;
    struct node *a, *b;
    const char *path; /* N_REF, N_EXISTS: into the condition's text */
    size_t len;
    int column;
    json_t *lit; /* N_LIT */
} node;

struct saga_condition {
    char *text;
    node *root;
};

typedef enum { T_END, T_REF, T_NUM, T_STR, T_WORD, T_OP, T_LP, T_RP, T_BAD } tok_kind;

typedef struct parser {
    const char *text;
    size_t pos;
    /* the current token */
    tok_kind tok;
    size_t start, end;   /* its bytes; for T_REF, T_STR the inside */
    size_t tstart, tend; /* the whole token, as written */
    int column;
    int depth;
    /* the first error */
    int err_column;
    char *why;
    size_t why_size;
    int failed, nomem;
} parser;

static void fail(parser *p, int column, const char *fmt, const char *found)
{
    if (p->failed)
        return;
    p->failed = 1;
    p->err_column = column;
    snprintf(p->why, p->why_size, fmt, found);
}

/* The token at the current position, as text for a message. */
static const char *found(const parser *p, char *buf, size_t size)
{
    if (p->tok == T_END)
        return "the end";
    snprintf(buf, size, "\"%.*s\"",
             (int)(p->tend - p->tstart < 40 ? p->tend - p->tstart : 40),
             p->text + p->tstart);
    return buf;
}

static void next(parser *p)
{
    const char *t = p->text;
    while (t[p->pos] == ' ' || t[p->pos] == '\t' || t[p->pos] == '\n' ||
           t[p->pos] == '\r')
        p->pos++;
    p->start = p->tstart = p->pos;
    p->column = (int)p->pos + 1;
    if (t[p->pos] == '\0') {
        p->tok = T_END;
        p->end = p->pos;
    } else if (t[p->pos] == '$' && t[p->pos + 1] == '{') {
        const char *close = strchr(t + p->pos + 2, '}');
        p->tok = close != NULL ? T_REF : T_BAD;
        p->start = p->pos + 2;
        p->end = close != NULL ? (size_t)(close - t) : strlen(t);
        p->pos = close != NULL ? p->end + 1 : p->end;
        if (close == NULL)
            fail(p, p->column, "unterminated %s (expected \"${...}\")", "\"${\"");
    } else if (t[p->pos] == '\'' || t[p->pos] == '"') {
        char q = t[p->pos++];
        p->start = p->pos;
        while (t[p->pos] != '\0' && t[p->pos] != q)
            p->pos += t[p->pos] == '\\' && t[p->pos + 1] != '\0' ? 2 : 1;
        p->tok = t[p->pos] == q ? T_STR : T_BAD;
        p->end = p->pos;
        if (t[p->pos] == q)
            p->pos++;
        else
            fail(p, p->column, "unterminated string (expected a closing %s)",
                 q == '"' ? "\"" : "'");
    } else if (isdigit((unsigned char)t[p->pos]) ||
               (t[p->pos] == '-' && isdigit((unsigned char)t[p->pos + 1]))) {
        p->pos++;
        while (isalnum((unsigned char)t[p->pos]) || t[p->pos] == '.' ||
               ((t[p->pos] == '-' || t[p->pos] == '+') &&
                (t[p->pos - 1] == 'e' || t[p->pos - 1] == 'E')))
            p->pos++;
        p->tok = T_NUM;
        p->end = p->pos;
    } else if (isalpha((unsigned char)t[p->pos]) || t[p->pos] == '_') {
        while (isalnum((unsigned char)t[p->pos]) || t[p->pos] == '_')
            p->pos++;
        p->tok = T_WORD;
        p->end = p->pos;
    } else if (strchr("=!<>", t[p->pos]) != NULL) {
        p->pos += t[p->pos + 1] == '=' ? 2 : 1;
        p->tok = T_OP;
        p->end = p->pos;
    } else if (t[p->pos] == '(' || t[p->pos] == ')') {
        p->tok = t[p->pos] == '(' ? T_LP : T_RP;
        p->end = ++p->pos;
    } else {
        p->tok = T_BAD;
        p->end = ++p->pos;
    }
    p->tend = p->pos;
}

static int is_word(const parser *p, const char *w)
{
    return p->tok == T_WORD && p->end - p->start == strlen(w) &&
           memcmp(p->text + p->start, w, p->end - p->start) == 0;
}

static node *mk(parser *p, node_kind kind)
{
    node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        p->nomem = 1;
        p->failed = 1;
        return NULL;
    }
    n->kind = kind;
    n->column = p->column;
    return n;
}

static void free_node(node *n)
{
    if (n == NULL)
        return;
    free_node(n->a);
    free_node(n->b);
    json_decref(n->lit);
    free(n);
}

static node *parse_or(parser *p);

/* A string literal's inside, its escapes undone. */
static json_t *string_value(const parser *p)
{
    size_t n = p->end - p->start, o = 0;
    char *buf = malloc(n + 1);
    json_t *j;
    if (buf == NULL)
        return NULL;
    for (size_t i = p->start; i < p->end; i++)
        buf[o++] = p->text[i] == '\\' && i + 1 < p->end ? p->text[++i] : p->text[i];
    j = json_stringn(buf, o);
    free(buf);
    return j;
}

static node *parse_value(parser *p)
{
    char buf[64];
    node *n = NULL;
    if (p->failed)
        return NULL;
    if (++p->depth > SAGA_CONDITION_MAX_DEPTH) {
        fail(p, p->column, "nested deeper than 32 levels at %s",
             found(p, buf, sizeof buf));
        return NULL;
    }
    if (p->tok == T_LP) {
        int column = p->column;
        next(p);
        n = parse_or(p);
        if (!p->failed && p->tok != T_RP)
            fail(p, p->tok == T_END ? column : p->column,
                 p->tok == T_END ? "unclosed \"(\" (expected \")\")"
                                 : "expected \")\", found %s",
                 found(p, buf, sizeof buf));
        next(p);
    } else if (p->tok == T_REF) {
        if ((n = mk(p, N_REF)) != NULL) {
            n->path = p->text + p->start;
            n->len = p->end - p->start;
        }
        next(p);
    } else if (p->tok == T_NUM) {
        char num[64], *end;
        double d;
        size_t len = p->end - p->start;
        memcpy(num, p->text + p->start, len < sizeof num ? len : sizeof num - 1);
        num[len < sizeof num ? len : sizeof num - 1] = '\0';
        d = strtod(num, &end);
        /* Decimal only: strtod would also take "0x10" and "inf". */
        if (*end != '\0' || len >= sizeof num || !isfinite(d) ||
            strspn(num, "-+0123456789.eE") != strlen(num)) {
            fail(p, p->column, "%s is not a number", found(p, buf, sizeof buf));
        } else if ((n = mk(p, N_LIT)) != NULL && (n->lit = json_real(d)) == NULL) {
            p->nomem = 1;
            p->failed = 1;
        }
        next(p);
    } else if (p->tok == T_STR) {
        if ((n = mk(p, N_LIT)) != NULL && (n->lit = string_value(p)) == NULL) {
            p->nomem = 1;
            p->failed = 1;
        }
        next(p);
    } else if (is_word(p, "true") || is_word(p, "false") || is_word(p, "null")) {
        if ((n = mk(p, N_LIT)) != NULL)
            n->lit = is_word(p, "null") ? json_null() : json_boolean(is_word(p, "true"));
        next(p);
    } else if (is_word(p, "exists")) {
        int column = p->column;
        next(p);
        if (p->tok != T_LP) {
            fail(p, p->column, "expected \"(\" after exists, found %s",
                 found(p, buf, sizeof buf));
        } else {
            next(p);
            if (p->tok != T_REF) {
                fail(p, p->column, "exists( takes a ${reference}, found %s",
                     found(p, buf, sizeof buf));
            } else if ((n = mk(p, N_EXISTS)) != NULL) {
                n->path = p->text + p->start;
                n->len = p->end - p->start;
                n->column = p->column;
                next(p);
                if (p->tok != T_RP)
                    fail(p, p->tok == T_END ? column : p->column,
                         "expected \")\" to close exists(, found %s",
                         found(p, buf, sizeof buf));
                next(p);
            }
        }
    } else if (!p->failed) {
        fail(p, p->column,
             "expected a value (a ${reference}, a number, a 'string', true, false, null, "
             "exists(...) or \"(\"), found %s",
             found(p, buf, sizeof buf));
    }
    p->depth--;
    return n;
}

static node *parse_compare(parser *p)
{
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    node *a = parse_value(p), *n;
    char buf[64];
    if (p->failed || p->tok != T_OP)
        return a;
    for (int i = 0; i < 6; i++)
        if (p->end - p->start == strlen(ops[i]) &&
            memcmp(p->text + p->start, ops[i], p->end - p->start) == 0) {
            if ((n = mk(p, N_CMP)) == NULL) {
                free_node(a);
                return NULL;
            }
            n->op = (cmp_op)i;
            n->a = a;
            next(p);
            n->b = parse_value(p);
            return n;
        }
    fail(p, p->column, "%s is not a comparison (==, !=, <, <=, >, >=)",
         found(p, buf, sizeof buf));
    return a;
}

static node *parse_not(parser *p)
{
    node *n;
    if (!is_word(p, "not"))
        return parse_compare(p);
    if ((n = mk(p, N_NOT)) == NULL)
        return NULL;
    next(p);
    if (++p->depth > SAGA_CONDITION_MAX_DEPTH)
        fail(p, p->column, "nested deeper than 32 levels at %s", "not");
    else
        n->a = parse_not(p);
    p->depth--;
    return n;
}

static node *parse_chain(parser *p, const char *word, node_kind kind,
                         node *(*sub)(parser *))
{
    node *n = sub(p);
    while (!p->failed && is_word(p, word)) {
        node *m = mk(p, kind);
        if (m == NULL)
            break;
        next(p);
        m->a = n;
        m->b = sub(p);
        n = m;
    }
    return n;
}

static node *parse_and(parser *p)
{
    return parse_chain(p, "and", N_AND, parse_not);
}

static node *parse_or(parser *p)
{
    return parse_chain(p, "or", N_OR, parse_and);
}

int saga_condition_parse(const char *text, saga_condition **out, int *column, char *why,
                         size_t why_size)
{
    parser p = {.why = why, .why_size = why_size};
    saga_condition *c;
    char buf[64];
    *out = NULL;
    *column = 0;
    if (why_size > 0)
        why[0] = '\0';
    if (strlen(text) > SAGA_CONDITION_MAX_BYTES) {
        *column = SAGA_CONDITION_MAX_BYTES + 1;
        snprintf(why, why_size, "longer than %d bytes", SAGA_CONDITION_MAX_BYTES);
        return SAGA_EDEF;
    }
    if ((c = calloc(1, sizeof *c)) == NULL || (c->text = strdup(text)) == NULL) {
        free(c);
        return SAGA_ENOMEM;
    }
    p.text = c->text;
    next(&p);
    c->root = parse_or(&p);
    if (!p.failed && p.tok != T_END)
        fail(&p, p.column, "expected and, or or the end, found %s",
             found(&p, buf, sizeof buf));
    if (p.failed) {
        *column = p.err_column;
        saga_condition_free(c);
        return p.nomem ? SAGA_ENOMEM : SAGA_EDEF;
    }
    *out = c;
    return SAGA_OK;
}

void saga_condition_free(saga_condition *c)
{
    if (c == NULL)
        return;
    free_node(c->root);
    free(c->text);
    free(c);
}

static int refs(const node *n, saga_condition_ref_fn fn, void *arg)
{
    int rc;
    if (n == NULL)
        return 0;
    if ((n->kind == N_REF || n->kind == N_EXISTS) &&
        (rc = fn(n->path, n->len, n->column, arg)) != 0)
        return rc;
    if ((rc = refs(n->a, fn, arg)) != 0)
        return rc;
    return refs(n->b, fn, arg);
}

int saga_condition_refs(const saga_condition *c, saga_condition_ref_fn fn, void *arg)
{
    return c != NULL ? refs(c->root, fn, arg) : 0;
}

/* ---- evaluation ---- */

/* A value (borrowed), or NULL for missing. */
static const json_t *value(const node *n, const json_t *ctx, json_t **made)
{
    *made = NULL;
    if (n->kind == N_LIT)
        return n->lit;
    if (n->kind == N_REF)
        return saga_template_lookup(ctx, n->path, n->len);
    /* A boolean sub-expression compared as a value: (a > 1) == true. */
    *made = json_boolean(saga_condition_eval(&(saga_condition){NULL, (node *)n}, ctx));
    return *made;
}

static int compare(cmp_op op, const json_t *a, const json_t *b)
{
    if (a == NULL || b == NULL)
        return op == OP_NE;
    if (op == OP_EQ || op == OP_NE) {
        int eq = json_is_number(a) && json_is_number(b)
                     ? json_number_value(a) == json_number_value(b)
                     : json_equal((json_t *)a, (json_t *)b);
        return op == OP_EQ ? eq : !eq;
    }
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        return op == OP_LT ? x < y : op == OP_LE ? x <= y : op == OP_GT ? x > y : x >= y;
    }
    if (json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        if (c == 0)
            c = la < lb ? -1 : la > lb;
        return op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
    }
    return 0;
}

static int eval(const node *n, const json_t *ctx)
{
    switch (n->kind) {
    case N_OR:
        return eval(n->a, ctx) || eval(n->b, ctx);
    case N_AND:
        return eval(n->a, ctx) && eval(n->b, ctx);
    case N_NOT:
        return !eval(n->a, ctx);
    case N_EXISTS: {
        const json_t *v = saga_template_lookup(ctx, n->path, n->len);
        return v != NULL && !json_is_null(v);
    }
    case N_CMP: {
        json_t *ma, *mb;
        const json_t *a = value(n->a, ctx, &ma), *b = value(n->b, ctx, &mb);
        int r = compare(n->op, a, b);
        json_decref(ma);
        json_decref(mb);
        return r;
    }
    case N_REF:
        return json_is_true(saga_template_lookup(ctx, n->path, n->len));
    case N_LIT:
        return json_is_true(n->lit);
    }
    return 0;
}

int saga_condition_eval(const saga_condition *c, const json_t *ctx)
{
    return c != NULL && c->root != NULL ? eval(c->root, ctx) : 1;
}
