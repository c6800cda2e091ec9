/* Reads one Pascal VOC annotation file: a small XML tokenizer that follows the element path and keeps the few
 * fields detection needs. Real files carry more (pose, truncated, part boxes, tool-specific elements, attributes);
 * those are skipped, while anything that is not well-formed XML is an error naming the line. */
#include "voc_xml.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_TAG 64
#define MAX_TEXT 256

typedef struct parser {
    frcnn_ctx *ctx;
    const char *path;
    const char *p, *end;
    int line;
    char stack[MAX_DEPTH][MAX_TAG]; /* open elements, root first */
    int depth;
    char text[MAX_TEXT];            /* character data of the innermost element, entities decoded */
    size_t text_len;
    bool text_overflow;
    frcnn__voc_annotation *out;
    frcnn__voc_object cur;          /* the <object> being read */
    bool has_name, has_box[4];
} parser;

static frcnn_status fail(parser *ps, const char *what, const char *detail)
{
    return frcnn__error(ps->ctx, FRCNN_ERR_FORMAT, "%s: line %d: %s%s", ps->path, ps->line, what, detail);
}

/* fail() at a given line with a formatted problem. */
static frcnn_status failf(parser *ps, int line, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static frcnn_status failf(parser *ps, int line, const char *fmt, ...)
{
    char problem[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return frcnn__error(ps->ctx, FRCNN_ERR_FORMAT, "%s: line %d: %s", ps->path, line, problem);
}

/* Moves by n bytes, counting lines. */
static void advance(parser *ps, size_t n)
{
    for (size_t i = 0; i < n && ps->p < ps->end; i++, ps->p++)
        if (*ps->p == '\n')
            ps->line++;
}

static bool starts_with(const parser *ps, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(ps->end - ps->p) >= n && memcmp(ps->p, s, n) == 0;
}

/* Skips past the next occurrence of `terminator`; false when the file ends first. */
static bool skip_past(parser *ps, const char *terminator)
{
    while (ps->p < ps->end) {
        if (starts_with(ps, terminator)) {
            advance(ps, strlen(terminator));
            return true;
        }
        advance(ps, 1);
    }
    return false;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ':' || (unsigned char)c >= 0x80;
}

static void text_append(parser *ps, const char *s, size_t n)
{
    if (ps->text_len + n >= sizeof ps->text) {
        ps->text_overflow = true;
        return;
    }
    memcpy(ps->text + ps->text_len, s, n);
    ps->text_len += n;
    ps->text[ps->text_len] = '\0';
}

/* Decodes one entity at ps->p ('&' .. ';') into the text. */
static frcnn_status read_entity(parser *ps)
{
    static const struct { const char *name; char c; } named[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (starts_with(ps, named[i].name)) {
            text_append(ps, &named[i].c, 1);
            advance(ps, strlen(named[i].name));
            return FRCNN_OK;
        }
    if (starts_with(ps, "&#")) {
        const char *q = ps->p + 2;
        int base = 10;
        if (q < ps->end && (*q == 'x' || *q == 'X')) {
            base = 16;
            q++;
        }
        unsigned long v = 0;
        int digits = 0;
        for (; q < ps->end && *q != ';' && digits < 8; q++, digits++) {
            int d = (*q >= '0' && *q <= '9') ? *q - '0'
                    : base == 16 && (*q | 0x20) >= 'a' && (*q | 0x20) <= 'f' ? (*q | 0x20) - 'a' + 10
                                                                            : -1;
            if (d < 0)
                return fail(ps, "bad character reference", "");
            v = v * (unsigned long)base + (unsigned long)d;
        }
        if (q >= ps->end || *q != ';' || digits == 0 || v == 0)
            return fail(ps, "bad character reference", "");
        char c = v < 0x80 ? (char)v : '?'; /* class names and numbers are ASCII; keep others visible as '?' */
        text_append(ps, &c, 1);
        advance(ps, (size_t)(q + 1 - ps->p));
        return FRCNN_OK;
    }
    return fail(ps, "'&' that starts no entity (write &amp;)", "");
}

/* The text with surrounding white space removed, in place. */
static char *trimmed(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

static frcnn_status parse_number(parser *ps, const char *field, double *v)
{
    char *s = trimmed(ps->text), *endp;
    double d = strtod(s, &endp);
    if (ps->text_overflow || *s == '\0' || *endp != '\0' || !isfinite(d) || fabs(d) > 1e7) {
        return failf(ps, ps->line, "<%s> is '%.40s', not a number", field, ps->text_overflow ? "(too long)" : s);
    }
    *v = d;
    return FRCNN_OK;
}

/* Path tests: the open elements below the root <annotation> equal the given names. */
static bool at(const parser *ps, int n, const char *a, const char *b, const char *c)
{
    const char *want[3] = {a, b, c};
    if (ps->depth != n + 1)
        return false;
    for (int i = 0; i < n; i++)
        if (strcmp(ps->stack[i + 1], want[i]) != 0)
            return false;
    return true;
}

static frcnn_status push_object(parser *ps)
{
    frcnn__voc_annotation *a = ps->out;
    if (a->n_objects == a->capacity) {
        size_t cap = a->capacity ? 2 * a->capacity : 16, bytes;
        if (!frcnn__mul_size(cap, sizeof *a->objects, &bytes))
            return frcnn__error(ps->ctx, FRCNN_ERR_OVERFLOW, "%s: too many objects", ps->path);
        frcnn__voc_object *grown = frcnn__alloc(ps->ctx, bytes);
        if (!grown)
            return FRCNN_ERR_NO_MEMORY;
        if (a->n_objects)
            memcpy(grown, a->objects, a->n_objects * sizeof *a->objects);
        frcnn__free(ps->ctx, a->objects, a->capacity * sizeof *a->objects);
        a->objects = grown;
        a->capacity = cap;
    }
    a->objects[a->n_objects++] = ps->cur;
    return FRCNN_OK;
}

/* Called at each end tag, before the element is popped: stores what the element held. */
static frcnn_status end_element(parser *ps)
{
    static const char *coords[4] = {"xmin", "ymin", "xmax", "ymax"};
    frcnn_status st = FRCNN_OK;
    double v;
    if (at(ps, 2, "size", "width", NULL) || at(ps, 2, "size", "height", NULL)) {
        const bool w = strcmp(ps->stack[2], "width") == 0;
        if ((st = parse_number(ps, w ? "width" : "height", &v)) != FRCNN_OK)
            return st;
        if (v < 0 || v > FRCNN_IMAGE_MAX_SIDE || v != floor(v))
            return fail(ps, w ? "<width>" : "<height>", " is not a whole number of pixels in range");
        *(w ? &ps->out->width : &ps->out->height) = (int)v;
    } else if (at(ps, 1, "filename", NULL, NULL)) {
        const char *s = trimmed(ps->text);
        if (!ps->text_overflow && strlen(s) < sizeof ps->out->filename)
            strcpy(ps->out->filename, s);
    } else if (at(ps, 2, "object", "name", NULL)) {
        const char *s = trimmed(ps->text);
        if (ps->text_overflow || strlen(s) >= sizeof ps->cur.name)
            return fail(ps, "class name longer than 127 bytes", "");
        if (*s == '\0')
            return fail(ps, "empty <name>", "");
        strcpy(ps->cur.name, s);
        ps->has_name = true;
    } else if (at(ps, 2, "object", "difficult", NULL)) {
        if ((st = parse_number(ps, "difficult", &v)) != FRCNN_OK)
            return st;
        ps->cur.difficult = v != 0;
    } else if (ps->depth == 4 && at(ps, 3, "object", "bndbox", ps->stack[3])) {
        for (int k = 0; k < 4; k++)
            if (strcmp(ps->stack[3], coords[k]) == 0) {
                double *dst[4] = {&ps->cur.xmin, &ps->cur.ymin, &ps->cur.xmax, &ps->cur.ymax};
                if ((st = parse_number(ps, coords[k], dst[k])) != FRCNN_OK)
                    return st;
                ps->has_box[k] = true;
            }
    } else if (at(ps, 1, "object", NULL, NULL)) {
        const frcnn__voc_object *o = &ps->cur;
        if (!ps->has_name)
            return failf(ps, o->line, "<object> without <name>");
        for (int k = 0; k < 4; k++)
            if (!ps->has_box[k])
                return failf(ps, o->line, "<object> '%s' has no <bndbox><%s>", o->name, coords[k]);
        if (o->xmax < o->xmin || o->ymax < o->ymin)
            return failf(ps, o->line, "<object> '%s' has xmin %g ymin %g xmax %g ymax %g: a max is below its min",
                         o->name, o->xmin, o->ymin, o->xmax, o->ymax);
        st = push_object(ps);
    }
    return st;
}

static void start_element(parser *ps)
{
    if (at(ps, 1, "object", NULL, NULL)) {
        memset(&ps->cur, 0, sizeof ps->cur);
        ps->cur.line = ps->line;
        ps->has_name = false;
        memset(ps->has_box, 0, sizeof ps->has_box);
    }
}

/* A tag at ps->p ('<' not followed by '!' or '?'): start, end or empty-element. */
static frcnn_status read_tag(parser *ps)
{
    advance(ps, 1);
    const bool closing = ps->p < ps->end && *ps->p == '/';
    if (closing)
        advance(ps, 1);
    const char *name = ps->p;
    while (ps->p < ps->end && is_name_char(*ps->p))
        advance(ps, 1);
    size_t n = (size_t)(ps->p - name);
    if (n == 0)
        return fail(ps, "'<' not followed by an element name", "");
    if (n >= MAX_TAG)
        return fail(ps, "element name longer than 63 bytes", "");
    char tag[MAX_TAG];
    memcpy(tag, name, n);
    tag[n] = '\0';
    /* Attributes are skipped, quoted values included (they may contain '>'). */
    bool empty = false;
    while (ps->p < ps->end && *ps->p != '>') {
        if (*ps->p == '"' || *ps->p == '\'') {
            char q[2] = {*ps->p, '\0'};
            advance(ps, 1);
            if (!skip_past(ps, q))
                return fail(ps, "file ends inside an attribute value of <", tag);
            continue;
        }
        empty = *ps->p == '/';
        advance(ps, 1);
    }
    if (ps->p >= ps->end)
        return fail(ps, "file ends inside the tag <", tag);
    advance(ps, 1);
    if (closing) {
        if (ps->depth == 0)
            return fail(ps, "end tag without a start tag: </", tag);
        if (strcmp(ps->stack[ps->depth - 1], tag) != 0)
            return failf(ps, ps->line, "mismatched end tag: </%s> closes <%s>", tag, ps->stack[ps->depth - 1]);
        frcnn_status st = end_element(ps);
        ps->depth--;
        ps->text_len = 0;
        ps->text[0] = '\0';
        ps->text_overflow = false;
        return st;
    }
    if (ps->depth == 0 && strcmp(tag, "annotation") != 0)
        return frcnn__error(ps->ctx, FRCNN_ERR_FORMAT, "%s: line %d: the root element is <%s>, not <annotation>",
                            ps->path, ps->line, tag);
    if (ps->depth == MAX_DEPTH)
        return fail(ps, "elements nested deeper than 32", "");
    strcpy(ps->stack[ps->depth++], tag);
    ps->text_len = 0;
    ps->text[0] = '\0';
    ps->text_overflow = false;
    start_element(ps);
    if (empty) { /* <tag/> is a start and an end */
        frcnn_status st = end_element(ps);
        ps->depth--;
        return st;
    }
    return FRCNN_OK;
}

frcnn_status frcnn__voc_parse(frcnn_ctx *ctx, const char *path, const char *text, size_t len,
                              frcnn__voc_annotation *out)
{
    memset(out, 0, sizeof *out);
    parser *ps = frcnn__alloc(ctx, sizeof *ps);
    if (!ps)
        return FRCNN_ERR_NO_MEMORY;
    memset(ps, 0, sizeof *ps);
    ps->ctx = ctx;
    ps->path = path;
    ps->p = text;
    ps->end = text + len;
    ps->line = 1;
    ps->out = out;
    frcnn_status st = FRCNN_OK;
    bool seen_root = false;
    if (starts_with(ps, "\xEF\xBB\xBF")) /* UTF-8 byte order mark */
        advance(ps, 3);
    while (st == FRCNN_OK && ps->p < ps->end) {
        if (starts_with(ps, "<!--")) {
            if (!skip_past(ps, "-->"))
                st = fail(ps, "file ends inside a comment", "");
        } else if (starts_with(ps, "<![CDATA[")) {
            advance(ps, 9);
            const char *s = ps->p;
            if (!skip_past(ps, "]]>"))
                st = fail(ps, "file ends inside CDATA", "");
            else
                text_append(ps, s, (size_t)(ps->p - 3 - s));
        } else if (starts_with(ps, "<?") || starts_with(ps, "<!")) {
            if (!skip_past(ps, ">"))
                st = fail(ps, "file ends inside a declaration", "");
        } else if (*ps->p == '<') {
            if (seen_root && ps->depth == 0)
                st = fail(ps, "content after the end of <annotation>", "");
            else
                st = read_tag(ps);
            seen_root = true;
        } else if (*ps->p == '&') {
            st = read_entity(ps);
        } else {
            const char *s = ps->p;
            int line = ps->line;
            while (ps->p < ps->end && *ps->p != '<' && *ps->p != '&')
                advance(ps, 1);
            if (ps->depth == 0) {
                for (const char *q = s; q < ps->p && st == FRCNN_OK; q++) {
                    if (*q == '\n')
                        line++;
                    else if (*q != ' ' && *q != '\t' && *q != '\r')
                        st = failf(ps, line, "text outside the root element"); /* the line of the text */
                }
            } else {
                text_append(ps, s, (size_t)(ps->p - s));
            }
        }
    }
    if (st == FRCNN_OK && !seen_root)
        st = frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: no <annotation> element (empty or not XML)", path);
    if (st == FRCNN_OK && ps->depth > 0)
        st = fail(ps, "file ends inside <", ps->stack[ps->depth - 1]);
    frcnn__free(ctx, ps, sizeof *ps);
    return st;
}

void frcnn__voc_annotation_free(frcnn_ctx *ctx, frcnn__voc_annotation *a)
{
    if (!a)
        return;
    frcnn__free(ctx, a->objects, a->capacity * sizeof *a->objects);
    memset(a, 0, sizeof *a);
}
