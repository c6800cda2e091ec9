/* Pascal VOC data (lib/data/voc_xml.c, voc.c, prepare.c, sample.c): the annotation parser on real VOC2007/2012
 * files verbatim and on what annotation tools write (decimal coordinates, attributes, missing <difficult>), every
 * kind of malformed file giving FRCNN_ERR_FORMAT with the path and the line, truncations and bit flips that never
 * crash or leak; frcnn_voc_open on small trees written into a fresh folder (both root forms, split files with CRLF
 * and a second column, .png images, clipping, class lists, missing and duplicate files, sizes from the image,
 * fingerprints, allocation failures); the prepared size and the prepared pixels against hand-computed bilinear
 * values (PyTorch F.interpolate, align_corners=False); and training samples with their scaled and flipped boxes,
 * inclusive and continuous. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "../lib/data/voc_xml.h"

/* ---------------------------------------------------------------------------------------------------------------
 * Helpers: a context on the checking allocator (leak check and failure injection), a log capture, files and trees
 * ------------------------------------------------------------------------------------------------------------- */

static char g_tmp[128];

static int group_setup(void **state)
{
    (void)state;
    return tu_make_tmpdir(g_tmp, sizeof g_tmp, "voc");
}

static int group_teardown(void **state)
{
    (void)state;
    return tu_remove_tree(g_tmp);
}

static char g_log[8192];

static void capture_log(void *user, frcnn_log_level level, const char *line)
{
    (void)user;
    size_t len = strlen(g_log);
    snprintf(g_log + len, sizeof g_log - len, "%d %s\n", (int)level, line);
}

/* A context on the checking allocator (testutil's tu_alloc), one thread, logging into g_log. */
typedef struct env {
    tu_alloc_state ca;
    frcnn_ctx *ctx;
    tu_alloc_mark base; /* right after creation: the context's own blocks */
} env;

static void env_open(env *e)
{
    tu_alloc_init(&e->ca, 0);
    frcnn_ctx_params p = frcnn_ctx_params_default();
    p.log = capture_log;
    p.log_level = FRCNN_LOG_INFO;
    p.n_threads = 1;
    e->ctx = tu_alloc_ctx(&e->ca, &p);
    e->base = tu_alloc_mark_now(&e->ca);
    g_log[0] = '\0';
}

/* Fails if anything allocated since env_open is still live. */
static void env_close(env *e)
{
    tu_alloc_assert_since(&e->ca, e->base);
    frcnn_ctx_free(e->ctx);
    tu_alloc_assert_clean(&e->ca);
}

/* mkdir -p of the folder holding `path` (or of path itself when dir_too). */
static void make_parents(const char *path, bool dir_too)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    if (dir_too)
        mkdir(buf, 0755);
}

static const char *joinp(char *buf, size_t cap, const char *a, const char *b)
{
    int n = snprintf(buf, cap, "%s/%s", a, b);
    assert_true(n > 0 && (size_t)n < cap);
    return buf;
}

static void put_bytes(const char *dir, const char *rel, const void *data, size_t n)
{
    char path[1024];
    joinp(path, sizeof path, dir, rel);
    make_parents(path, false);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void put_text(const char *dir, const char *rel, const char *text)
{
    put_bytes(dir, rel, text, strlen(text));
}

/* The test pattern of every image written here: pixel (x, y) channel c. */
static uint8_t pattern(int x, int y, int c)
{
    return (uint8_t)(x * 37 + y * 11 + c * 71 + 5);
}

static void put_image(const char *dir, const char *rel, int w, int h)
{
    char path[1024];
    joinp(path, sizeof path, dir, rel);
    make_parents(path, false);
    uint8_t *px = malloc((size_t)w * h * 3);
    assert_non_null(px);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                px[((size_t)y * w + x) * 3 + c] = pattern(x, y, c);
    size_t n = strlen(path);
    int ok = n > 4 && strcmp(path + n - 4, ".png") == 0 ? stbi_write_png(path, w, h, 3, px, w * 3)
                                                        : stbi_write_jpg(path, w, h, 3, px, 90);
    free(px);
    assert_true(ok != 0);
}

/* An object of a generated annotation; difficult -1 leaves <difficult> out. */
typedef struct tobj {
    const char *name;
    double xmin, ymin, xmax, ymax;
    int difficult;
} tobj;

/* Writes <voc>/Annotations/<id>.xml in VOC's layout (tabs, one element a line). w < 0 leaves <size> out;
 * filename NULL leaves <filename> out. lines[k] receives the line of object k's <object> tag. */
static void put_annotation(const char *voc, const char *id, const char *filename, int w, int h, const tobj *o,
                           size_t n, int *lines)
{
    char text[8192], rel[256];
    size_t len = 0;
    int line = 1;
#define EMIT(...)                                                                                                  \
    do {                                                                                                           \
        len += (size_t)snprintf(text + len, sizeof text - len, __VA_ARGS__);                                       \
        assert_true(len < sizeof text);                                                                            \
        line++;                                                                                                    \
    } while (0)
    EMIT("<annotation>\n");
    EMIT("\t<folder>VOC2007</folder>\n");
    if (filename)
        EMIT("\t<filename>%s</filename>\n", filename);
    if (w >= 0) {
        EMIT("\t<size>\n");
        EMIT("\t\t<width>%d</width>\n", w);
        EMIT("\t\t<height>%d</height>\n", h);
        EMIT("\t\t<depth>3</depth>\n");
        EMIT("\t</size>\n");
    }
    for (size_t k = 0; k < n; k++) {
        if (lines)
            lines[k] = line;
        EMIT("\t<object>\n");
        EMIT("\t\t<name>%s</name>\n", o[k].name);
        if (o[k].difficult >= 0)
            EMIT("\t\t<difficult>%d</difficult>\n", o[k].difficult);
        EMIT("\t\t<bndbox>\n");
        EMIT("\t\t\t<xmin>%.9g</xmin>\n", o[k].xmin);
        EMIT("\t\t\t<ymin>%.9g</ymin>\n", o[k].ymin);
        EMIT("\t\t\t<xmax>%.9g</xmax>\n", o[k].xmax);
        EMIT("\t\t\t<ymax>%.9g</ymax>\n", o[k].ymax);
        EMIT("\t\t</bndbox>\n");
        EMIT("\t</object>\n");
    }
    EMIT("</annotation>\n");
#undef EMIT
    snprintf(rel, sizeof rel, "Annotations/%s.xml", id);
    put_text(voc, rel, text);
}

/* g_tmp/<name>/VOCdevkit into root and root/VOC2007 into voc, both created. */
static void new_tree(const char *name, char *root, size_t root_cap, char *voc, size_t voc_cap)
{
    int n = snprintf(root, root_cap, "%s/%s/VOCdevkit", g_tmp, name);
    assert_true(n > 0 && (size_t)n < root_cap);
    n = snprintf(voc, voc_cap, "%s/VOC2007", root);
    assert_true(n > 0 && (size_t)n < voc_cap);
    make_parents(voc, true);
}

/* Fails unless the context's message contains every needle (a NULL-terminated list); does not clear it. */
static void expect_msg_has(frcnn_ctx *ctx, const char *const *needles)
{
    const char *msg = frcnn_ctx_last_error(ctx);
    for (size_t i = 0; needles[i]; i++)
        if (!strstr(msg, needles[i])) {
            print_error("message \"%s\" does not contain \"%s\"\n", msg, needles[i]);
            fail();
        }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------------------------------------------- */

#define XML_PATH "VOC2007/Annotations/000005.xml"

/* VOC2007 Annotations/000005.xml, verbatim (tabs, LF). */
static const char VOC2007_000005[] =
    "<annotation>\n"
    "\t<folder>VOC2007</folder>\n"
    "\t<filename>000005.jpg</filename>\n"
    "\t<source>\n"
    "\t\t<database>The VOC2007 Database</database>\n"
    "\t\t<annotation>PASCAL VOC2007</annotation>\n"
    "\t\t<image>flickr</image>\n"
    "\t\t<flickrid>325991873</flickrid>\n"
    "\t</source>\n"
    "\t<owner>\n"
    "\t\t<flickrid>archintent louisville</flickrid>\n"
    "\t\t<name>?</name>\n"
    "\t</owner>\n"
    "\t<size>\n"
    "\t\t<width>500</width>\n"
    "\t\t<height>375</height>\n"
    "\t\t<depth>3</depth>\n"
    "\t</size>\n"
    "\t<segmented>0</segmented>\n"
    "\t<object>\n"
    "\t\t<name>chair</name>\n"
    "\t\t<pose>Rear</pose>\n"
    "\t\t<truncated>0</truncated>\n"
    "\t\t<difficult>0</difficult>\n"
    "\t\t<bndbox>\n"
    "\t\t\t<xmin>263</xmin>\n"
    "\t\t\t<ymin>211</ymin>\n"
    "\t\t\t<xmax>324</xmax>\n"
    "\t\t\t<ymax>339</ymax>\n"
    "\t\t</bndbox>\n"
    "\t</object>\n"
    "\t<object>\n"
    "\t\t<name>chair</name>\n"
    "\t\t<pose>Unspecified</pose>\n"
    "\t\t<truncated>0</truncated>\n"
    "\t\t<difficult>0</difficult>\n"
    "\t\t<bndbox>\n"
    "\t\t\t<xmin>165</xmin>\n"
    "\t\t\t<ymin>264</ymin>\n"
    "\t\t\t<xmax>253</xmax>\n"
    "\t\t\t<ymax>372</ymax>\n"
    "\t\t</bndbox>\n"
    "\t</object>\n"
    "\t<object>\n"
    "\t\t<name>chair</name>\n"
    "\t\t<pose>Unspecified</pose>\n"
    "\t\t<truncated>1</truncated>\n"
    "\t\t<difficult>1</difficult>\n"
    "\t\t<bndbox>\n"
    "\t\t\t<xmin>5</xmin>\n"
    "\t\t\t<ymin>244</ymin>\n"
    "\t\t\t<xmax>67</xmax>\n"
    "\t\t\t<ymax>374</ymax>\n"
    "\t\t</bndbox>\n"
    "\t</object>\n"
    "\t<object>\n"
    "\t\t<name>chair</name>\n"
    "\t\t<pose>Unspecified</pose>\n"
    "\t\t<truncated>0</truncated>\n"
    "\t\t<difficult>0</difficult>\n"
    "\t\t<bndbox>\n"
    "\t\t\t<xmin>241</xmin>\n"
    "\t\t\t<ymin>194</ymin>\n"
    "\t\t\t<xmax>295</xmax>\n"
    "\t\t\t<ymax>299</ymax>\n"
    "\t\t</bndbox>\n"
    "\t</object>\n"
    "\t<object>\n"
    "\t\t<name>chair</name>\n"
    "\t\t<pose>Unspecified</pose>\n"
    "\t\t<truncated>1</truncated>\n"
    "\t\t<difficult>1</difficult>\n"
    "\t\t<bndbox>\n"
    "\t\t\t<xmin>277</xmin>\n"
    "\t\t\t<ymin>186</ymin>\n"
    "\t\t\t<xmax>312</xmax>\n"
    "\t\t\t<ymax>220</ymax>\n"
    "\t\t</bndbox>\n"
    "\t</object>\n"
    "</annotation>\n";

/* VOC2012 Annotations/2007_000027.xml, verbatim: one person with person-layout <part> boxes. */
static const char VOC2012_2007_000027[] =
    "<annotation>\n"
    "\t<folder>VOC2012</folder>\n"
    "\t<filename>2007_000027.jpg</filename>\n"
    "\t<source>\n"
    "\t\t<database>The VOC2007 Database</database>\n"
    "\t\t<annotation>PASCAL VOC2007</annotation>\n"
    "\t\t<image>flickr</image>\n"
    "\t</source>\n"
    "\t<size>\n"
    "\t\t<width>486</width>\n"
    "\t\t<height>500</height>\n"
    "\t\t<depth>3</depth>\n"
    "\t</size>\n"
    "\t<segmented>0</segmented>\n"
    "\t<object>\n"
    "\t\t<name>person</name>\n"
    "\t\t<pose>Unspecified</pose>\n"
    "\t\t<truncated>0</truncated>\n"
    "\t\t<difficult>0</difficult>\n"
    "\t\t<bndbox>\n"
    "\t\t\t<xmin>174</xmin>\n"
    "\t\t\t<ymin>101</ymin>\n"
    "\t\t\t<xmax>349</xmax>\n"
    "\t\t\t<ymax>351</ymax>\n"
    "\t\t</bndbox>\n"
    "\t\t<part>\n"
    "\t\t\t<name>head</name>\n"
    "\t\t\t<bndbox>\n"
    "\t\t\t\t<xmin>169</xmin>\n"
    "\t\t\t\t<ymin>104</ymin>\n"
    "\t\t\t\t<xmax>209</xmax>\n"
    "\t\t\t\t<ymax>146</ymax>\n"
    "\t\t\t</bndbox>\n"
    "\t\t</part>\n"
    "\t\t<part>\n"
    "\t\t\t<name>hand</name>\n"
    "\t\t\t<bndbox>\n"
    "\t\t\t\t<xmin>278</xmin>\n"
    "\t\t\t\t<ymin>210</ymin>\n"
    "\t\t\t\t<xmax>297</xmax>\n"
    "\t\t\t\t<ymax>233</ymax>\n"
    "\t\t\t</bndbox>\n"
    "\t\t</part>\n"
    "\t\t<part>\n"
    "\t\t\t<name>foot</name>\n"
    "\t\t\t<bndbox>\n"
    "\t\t\t\t<xmin>273</xmin>\n"
    "\t\t\t\t<ymin>333</ymin>\n"
    "\t\t\t\t<xmax>297</xmax>\n"
    "\t\t\t\t<ymax>354</ymax>\n"
    "\t\t\t</bndbox>\n"
    "\t\t</part>\n"
    "\t\t<part>\n"
    "\t\t\t<name>foot</name>\n"
    "\t\t\t<bndbox>\n"
    "\t\t\t\t<xmin>319</xmin>\n"
    "\t\t\t\t<ymin>307</ymin>\n"
    "\t\t\t\t<xmax>340</xmax>\n"
    "\t\t\t\t<ymax>326</ymax>\n"
    "\t\t\t</bndbox>\n"
    "\t\t</part>\n"
    "\t</object>\n"
    "</annotation>\n";

/* VOC2012 Annotations/2008_003483.xml (a person-layout image), verbatim: decimal coordinates, <occluded>,
 * <difficult> after <bndbox>, parts. */
static const char VOC2012_2008_003483[] =
    "<annotation>\n"
    "\t<folder>VOC2008</folder>\n"
    "\t<filename>2008_003483.jpg</filename>\n"
    "\t<source>\n"
    "\t\t<database>The VOC2008 Database</database>\n"
    "\t\t<annotation>PASCAL VOC2008</annotation>\n"
    "\t\t<image>flickr</image>\n"
    "\t\t<flickrid>n/a</flickrid>\n"
    "\t</source>\n"
    "\t<owner>\n"
    "\t\t<flickrid>n/a</flickrid>\n"
    "\t\t<name>n/a</name>\n"
    "\t</owner>\n"
    "\t<size>\n"
    "\t\t<width>500</width>\n"
    "\t\t<height>500</height>\n"
    "\t\t<depth>3</depth>\n"
    "\t</size>\n"
    "\t<segmented>0</segmented>\n"
    "\t<object>\n"
    "\t\t<name>person</name>\n"
    "\t\t<pose>Frontal</pose>\n"
    "\t\t<truncated>0</truncated>\n"
    "\t\t<occluded>0</occluded>\n"
    "\t\t<bndbox>\n"
    "\t\t\t<xmin>304.1916</xmin>\n"
    "\t\t\t<ymin>118.2635</ymin>\n"
    "\t\t\t<xmax>482.0359</xmax>\n"
    "\t\t\t<ymax>500</ymax>\n"
    "\t\t</bndbox>\n"
    "\t\t<difficult>0</difficult>\n"
    "\t\t<part>\n"
    "\t\t\t<name>head</name>\n"
    "\t\t\t<bndbox>\n"
    "\t\t\t\t<xmin>391.1026</xmin>\n"
    "\t\t\t\t<ymin>120.3603</ymin>\n"
    "\t\t\t\t<xmax>433.1332</xmax>\n"
    "\t\t\t\t<ymax>171.6703</ymax>\n"
    "\t\t\t</bndbox>\n"
    "\t\t</part>\n"
    "\t\t<part>\n"
    "\t\t\t<name>hand</name>\n"
    "\t\t\t<bndbox>\n"
    "\t\t\t\t<xmin>303.7664</xmin>\n"
    "\t\t\t\t<ymin>194.5961</ymin>\n"
    "\t\t\t\t<xmax>332.1507</xmax>\n"
    "\t\t\t\t<ymax>224.6179</ymax>\n"
    "\t\t\t</bndbox>\n"
    "\t\t</part>\n"
    "\t</object>\n"
    "</annotation>\n";

/* Parses n bytes of text from an exact-size heap copy (no terminator, so ASan sees any read past the end). */
static frcnn_status parse_n(frcnn_ctx *ctx, const char *text, size_t n, frcnn__voc_annotation *a)
{
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, text, n);
    frcnn_status st = frcnn__voc_parse(ctx, XML_PATH, copy, n, a);
    free(copy);
    return st;
}

static frcnn_status parse(frcnn_ctx *ctx, const char *text, frcnn__voc_annotation *a)
{
    return parse_n(ctx, text, strlen(text), a);
}

static void expect_object(const frcnn__voc_annotation *a, size_t k, const char *name, double xmin, double ymin,
                          double xmax, double ymax, bool difficult, int line)
{
    assert_true(k < a->n_objects);
    const frcnn__voc_object *o = &a->objects[k];
    if (strcmp(o->name, name) != 0 || o->xmin != xmin || o->ymin != ymin || o->xmax != xmax || o->ymax != ymax ||
        o->difficult != difficult || (line > 0 && o->line != line)) {
        print_error("object %zu: got '%s' (%.9g %.9g %.9g %.9g) difficult %d line %d, want '%s' (%.9g %.9g %.9g "
                    "%.9g) difficult %d line %d\n",
                    k, o->name, o->xmin, o->ymin, o->xmax, o->ymax, o->difficult, o->line, name, xmin, ymin, xmax,
                    ymax, difficult, line);
        fail();
    }
}

/* The five chairs of 000005; lines of the <object> tags when `lines`, else not checked. */
static void expect_000005(const frcnn__voc_annotation *a, bool lines)
{
    assert_int_equal(a->width, 500);
    assert_int_equal(a->height, 375);
    assert_string_equal(a->filename, "000005.jpg");
    assert_int_equal(a->n_objects, 5);
    expect_object(a, 0, "chair", 263, 211, 324, 339, false, lines ? 20 : 0);
    expect_object(a, 1, "chair", 165, 264, 253, 372, false, lines ? 32 : 0);
    expect_object(a, 2, "chair", 5, 244, 67, 374, true, lines ? 44 : 0);
    expect_object(a, 3, "chair", 241, 194, 295, 299, false, lines ? 56 : 0);
    expect_object(a, 4, "chair", 277, 186, 312, 220, true, lines ? 68 : 0);
}

static void test_parse_voc2007_verbatim(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    frcnn__voc_annotation a;
    assert_int_equal(parse(e.ctx, VOC2007_000005, &a), FRCNN_OK);
    expect_000005(&a, true);
    frcnn__voc_annotation_free(e.ctx, &a);
    assert_null(a.objects);
    assert_int_equal(a.n_objects, 0);
    frcnn__voc_annotation_free(e.ctx, NULL);
    env_close(&e);
}

static void test_parse_parts_are_not_objects(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    frcnn__voc_annotation a;
    assert_int_equal(parse(e.ctx, VOC2012_2007_000027, &a), FRCNN_OK);
    assert_int_equal(a.width, 486);
    assert_int_equal(a.height, 500);
    assert_string_equal(a.filename, "2007_000027.jpg");
    /* One object: the head, hand and feet boxes (and their names) belong to the person's parts. */
    assert_int_equal(a.n_objects, 1);
    expect_object(&a, 0, "person", 174, 101, 349, 351, false, 15);
    frcnn__voc_annotation_free(e.ctx, &a);

    assert_int_equal(parse(e.ctx, VOC2012_2008_003483, &a), FRCNN_OK);
    assert_int_equal(a.width, 500);
    assert_int_equal(a.height, 500);
    assert_int_equal(a.n_objects, 1);
    expect_object(&a, 0, "person", 304.1916, 118.2635, 482.0359, 500, false, 20);
    frcnn__voc_annotation_free(e.ctx, &a);

    /* The same with <difficult>1 after the parts: still read as the object's flag. */
    char text[4096];
    snprintf(text, sizeof text, "%s", VOC2012_2007_000027);
    char *end_obj = strstr(text, "\t</object>");
    const char *tail = strstr(VOC2012_2007_000027, "\t</object>");
    assert_non_null(end_obj);
    assert_non_null(tail);
    snprintf(end_obj, sizeof text - (size_t)(end_obj - text), "\t\t<difficult> 1 </difficult>\n%s", tail);
    assert_int_equal(parse(e.ctx, text, &a), FRCNN_OK);
    assert_int_equal(a.n_objects, 1);
    expect_object(&a, 0, "person", 174, 101, 349, 351, true, 15);
    frcnn__voc_annotation_free(e.ctx, &a);
    env_close(&e);
}

/* Replaces every "\n" by "\r\n" into out. */
static void to_crlf(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = in; *p; p++) {
        assert_true(o + 2 < cap);
        if (*p == '\n')
            out[o++] = '\r';
        out[o++] = *p;
    }
    out[o] = '\0';
}

static void test_parse_xml_decorations(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    frcnn__voc_annotation a;
    char *crlf = malloc(16384), *text = malloc(16384);
    assert_non_null(crlf);
    assert_non_null(text);

    /* CRLF line ends: the same objects on the same lines. */
    to_crlf(VOC2007_000005, crlf, 16384);
    assert_int_equal(parse(e.ctx, crlf, &a), FRCNN_OK);
    expect_000005(&a, true);
    frcnn__voc_annotation_free(e.ctx, &a);

    /* A UTF-8 BOM and a declaration on a line of its own: the first object moves to line 21. */
    snprintf(text, 16384, "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n%s", crlf);
    assert_int_equal(parse(e.ctx, text, &a), FRCNN_OK);
    assert_int_equal(a.n_objects, 5);
    expect_object(&a, 0, "chair", 263, 211, 324, 339, false, 21);
    frcnn__voc_annotation_free(e.ctx, &a);

    /* What tools and editors add: a DOCTYPE, comments (one holding tags, one over lines), attributes (quoted '>'
     * and '/' inside), self-closing elements, a CDATA name, character references, tool-specific elements with
     * their own <name> (CVAT's attributes), <path>, an empty <depth/>, a processing instruction. */
    const char *decorated =
        "<?xml version='1.0' encoding='UTF-8' standalone=\"yes\"?>\n"                         /* 1 */
        "<!DOCTYPE annotation>\n"                                                              /* 2 */
        "<!-- written by a tool: <object><name>ghost</name></object> -->\n"                   /* 3 */
        "<annotation verified=\"yes\" note='a > b / c'>\n"                                     /* 4 */
        "  <folder/>\n"                                                                        /* 5 */
        "  <filename>  img&#x5F;01.png </filename>\n"                                          /* 6 */
        "  <path>C:\\data\\img_01.png</path>\n"                                                /* 7 */
        "  <source><database>Unknown</database></source>\n"                                   /* 8 */
        "  <size><width>640</width><height>480</height><depth/></size>\n"                      /* 9 */
        "  <segmented />\n"                                                                    /* 10 */
        "  <object id=\"1\">\n"                                                                /* 11 */
        "    <name><![CDATA[dog]]></name>\n"                                                   /* 12 */
        "    <occluded/>\n"                                                                    /* 13 */
        "    <!-- multi\n"                                                                     /* 14 */
        "         line comment -->\n"                                                          /* 15 */
        "    <bndbox unit=\"px\"><xmin>12.5</xmin><ymin>7</ymin><xmax>100.25</xmax><ymax>80</ymax></bndbox>\n" /* 16 */
        "    <attributes><attribute><name>rotation</name><value>0.0</value></attribute></attributes>\n" /* 17 */
        "    <?tool hint?>\n"                                                                  /* 18 */
        "  </object>\n"                                                                        /* 19 */
        "  <object>\n"                                                                         /* 20 */
        "    <name>cat</name><difficult>1</difficult>\n"                                       /* 21 */
        "    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>1</xmax><ymax>2</ymax></bndbox>\n"      /* 22 */
        "  </object>\n"                                                                        /* 23 */
        "</annotation>\n"                                                                      /* 24 */
        "<!-- trailing comment -->\n";
    assert_int_equal(parse(e.ctx, decorated, &a), FRCNN_OK);
    assert_int_equal(a.width, 640);
    assert_int_equal(a.height, 480);
    assert_string_equal(a.filename, "img_01.png");
    assert_int_equal(a.n_objects, 2);
    expect_object(&a, 0, "dog", 12.5, 7, 100.25, 80, false, 11);
    expect_object(&a, 1, "cat", 1, 2, 1, 2, true, 20); /* a one-pixel box: max == min is allowed */
    frcnn__voc_annotation_free(e.ctx, &a);
    free(crlf);
    free(text);
    env_close(&e);
}

static void test_parse_tool_styles(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    frcnn__voc_annotation a;
    /* CVAT's Pascal VOC export: no <difficult>, decimal coordinates, an empty <folder> and <depth>. */
    const char *cvat = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                       "<annotation>\n"
                       "  <folder></folder>\n"
                       "  <filename>frame_000000.PNG</filename>\n"
                       "  <source>\n"
                       "    <database>Unknown</database>\n"
                       "    <annotation>Unknown</annotation>\n"
                       "    <image>Unknown</image>\n"
                       "  </source>\n"
                       "  <size>\n"
                       "    <width>1920</width>\n"
                       "    <height>1080</height>\n"
                       "    <depth></depth>\n"
                       "  </size>\n"
                       "  <segmented>0</segmented>\n"
                       "  <object>\n"
                       "    <name>car</name>\n"
                       "    <occluded>0</occluded>\n"
                       "    <bndbox>\n"
                       "      <xmin>703.38</xmin>\n"
                       "      <ymin>548.36</ymin>\n"
                       "      <xmax>853.97</xmax>\n"
                       "      <ymax>643.09</ymax>\n"
                       "    </bndbox>\n"
                       "    <attributes>\n"
                       "      <attribute>\n"
                       "        <name>rotation</name>\n"
                       "        <value>0.0</value>\n"
                       "      </attribute>\n"
                       "    </attributes>\n"
                       "  </object>\n"
                       "</annotation>\n";
    assert_int_equal(parse(e.ctx, cvat, &a), FRCNN_OK);
    assert_int_equal(a.width, 1920);
    assert_int_equal(a.height, 1080);
    assert_string_equal(a.filename, "frame_000000.PNG");
    assert_int_equal(a.n_objects, 1);
    expect_object(&a, 0, "car", 703.38, 548.36, 853.97, 643.09, false, 16);
    frcnn__voc_annotation_free(e.ctx, &a);

    /* Names: entities decoded, surrounding white space and newlines trimmed, inner spaces kept. No <size>. */
    const char *names = "<annotation>\n"
                        "<object><name>\n\t  traffic light \r\n</name>"
                        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>\n"
                        "<object><name>R&amp;D &lt;x&gt; &quot;q&quot; &apos;s&apos; &#65;&#x62;</name>"
                        "<difficult>0</difficult>"
                        "<bndbox><xmin> 3 </xmin><ymin>\n4\n</ymin><xmax>+5e0</xmax><ymax>6.</ymax></bndbox>"
                        "</object>\n"
                        "<object><name>hard</name><difficult>1</difficult>"
                        "<bndbox><xmin>-3</xmin><ymin>0</ymin><xmax>0.5</xmax><ymax>1e1</ymax></bndbox></object>\n"
                        "</annotation>";
    assert_int_equal(parse(e.ctx, names, &a), FRCNN_OK);
    assert_int_equal(a.width, 0);
    assert_int_equal(a.height, 0);
    assert_string_equal(a.filename, "");
    assert_int_equal(a.n_objects, 3);
    expect_object(&a, 0, "traffic light", 1, 1, 2, 2, false, 2);
    expect_object(&a, 1, "R&D <x> \"q\" 's' Ab", 3, 4, 5, 6, false, 5);
    expect_object(&a, 2, "hard", -3, 0, 0.5, 10, true, 8); /* the newlines inside <name> and <ymin> count */
    frcnn__voc_annotation_free(e.ctx, &a);

    /* <size> saying 0 (some tools): 0, for the dataset to read the image header. No objects at all is fine. */
    assert_int_equal(parse(e.ctx, "<annotation><size><width>0</width><height>0</height></size></annotation>", &a),
                     FRCNN_OK);
    assert_int_equal(a.width, 0);
    assert_int_equal(a.height, 0);
    assert_int_equal(a.n_objects, 0);
    frcnn__voc_annotation_free(e.ctx, &a);

    /* Many objects: the array grows past its first capacity. */
    char *many = malloc(64 * 1024);
    assert_non_null(many);
    size_t len = (size_t)snprintf(many, 64 * 1024, "<annotation>");
    for (int k = 0; k < 100; k++)
        len += (size_t)snprintf(many + len, 64 * 1024 - len,
                                "<object><name>c%d</name><bndbox><xmin>%d</xmin><ymin>1</ymin><xmax>%d</xmax>"
                                "<ymax>2</ymax></bndbox></object>",
                                k, k + 1, k + 2);
    snprintf(many + len, 64 * 1024 - len, "</annotation>");
    assert_int_equal(parse(e.ctx, many, &a), FRCNN_OK);
    assert_int_equal(a.n_objects, 100);
    expect_object(&a, 0, "c0", 1, 1, 2, 2, false, 1);
    expect_object(&a, 99, "c99", 100, 1, 101, 2, false, 1);
    frcnn__voc_annotation_free(e.ctx, &a);
    free(many);
    env_close(&e);
}

/* Malformed text: FRCNN_ERR_FORMAT, the message names the path and the line, and holds `needle`. */
static void expect_bad(env *e, const char *text, size_t n, int line, const char *needle)
{
    frcnn__voc_annotation a;
    frcnn_status st = parse_n(e->ctx, text, n, &a);
    char where[128];
    if (line > 0)
        snprintf(where, sizeof where, XML_PATH ": line %d: ", line);
    else
        snprintf(where, sizeof where, XML_PATH ": ");
    const char *needles[] = {where, needle, NULL};
    if (st != FRCNN_ERR_FORMAT) {
        print_error("text \"%.*s\": status %d, wanted FRCNN_ERR_FORMAT; message: %s\n", (int)n, text, (int)st,
                    frcnn_ctx_last_error(e->ctx));
        fail();
    }
    expect_msg_has(e->ctx, needles);
    frcnn_ctx_clear_error(e->ctx);
    frcnn__voc_annotation_free(e->ctx, &a);
    assert_null(a.objects);
}

#define BAD(text, line, needle) expect_bad(&e, text, strlen(text), line, needle)

#define BOX "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox>"

static void test_parse_malformed(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    /* Structure. */
    BAD("<annotation>\n<object>\n<name>dog</nam>\n</object>\n</annotation>\n", 3, "</nam> closes <name>");
    BAD("<annotation>\n\t<size>\n\t\t<width>5</height>\n", 3, "mismatched end tag");
    BAD("<annotation>\n</object>\n</annotation>", 2, "mismatched end tag: </object> closes <annotation>");
    BAD("</annotation>", 1, "end tag without a start tag");
    BAD("<annotation>\n<size>\n<width>5", 3, "file ends inside <width");
    BAD("<annotation>\n<object>\n<name>dog</name>\n", 4, "file ends inside <object");
    BAD("<annotation>\n<!-- a comment\nthat never", 3, "file ends inside a comment");
    BAD("<annotation>\n<object", 2, "file ends inside the tag <object");
    BAD("<annotation>\n<object id=\"1\n2", 3, "file ends inside an attribute value of <object");
    BAD("<annotation>\n<![CDATA[abc", 2, "file ends inside CDATA");
    BAD("<?xml version=\"1.0\"", 1, "file ends inside a declaration");
    BAD("<?xml version=\"1.0\"?>\n<html>\n</html>\n", 2, "the root element is <html>, not <annotation>");
    BAD("<annotation>\n< object>\n", 2, "'<' not followed by an element name");
    BAD("<annotation/>\n\n<annotation/>\n", 3, "content after the end of <annotation>");
    BAD("\n\nfoo\n\n<annotation/>\n", 3, "text outside the root element");
    BAD("<annotation/>\n\nxyz\n\n\n", 3, "text outside the root element");
    BAD("<annotation>\n<name>R&D</name>\n</annotation>", 2, "'&' that starts no entity");
    BAD("<annotation>\n<name>&#xZZ;</name>\n</annotation>", 2, "bad character reference");
    BAD("<annotation>\n<name>&#0;</name>\n</annotation>", 2, "bad character reference");
    /* Numbers. */
    BAD("<annotation>\n<object><name>a</name>\n<bndbox><xmin>12a</xmin></bndbox></object></annotation>", 3,
        "<xmin> is '12a', not a number");
    BAD("<annotation>\n<object><name>a</name>\n<bndbox><xmin></xmin></bndbox></object></annotation>", 3, "<xmin>");
    BAD("<annotation>\n<object><name>a</name>\n<bndbox>\n<xmin>nan</xmin></bndbox></object></annotation>", 4,
        "'nan', not a number");
    BAD("<annotation>\n<object><name>a</name>\n<bndbox>\n<ymax>inf</ymax></bndbox></object></annotation>", 4,
        "<ymax> is 'inf'");
    BAD("<annotation>\n<object><name>a</name>\n<bndbox>\n<xmax>-INF</xmax></bndbox></object></annotation>", 4,
        "<xmax> is '-INF'");
    BAD("<annotation>\n<object><name>a</name>\n<bndbox>\n<ymin>1e999</ymin></bndbox></object></annotation>", 4,
        "<ymin> is '1e999'");
    BAD("<annotation>\n<object><name>a</name>\n<bndbox>\n<ymin>1 2</ymin></bndbox></object></annotation>", 4,
        "<ymin> is '1 2'");
    BAD("<annotation>\n<size>\n<width>5.5</width>\n</size>\n</annotation>", 3, "<width> is not a whole number");
    BAD("<annotation>\n<size>\n<height>-1</height>\n</size>\n</annotation>", 3, "<height> is not a whole number");
    BAD("<annotation>\n<size>\n<height>20000</height>\n</size>\n</annotation>", 3, "<height>");
    BAD("<annotation>\n<object><name>a</name>\n<difficult>yes</difficult>" BOX "</object></annotation>", 3,
        "<difficult> is 'yes'");
    /* Objects: the line is the <object> tag's. */
    BAD("<annotation>\n\n<object>\n<name>dog</name>\n"
        "<bndbox><xmin>50</xmin><ymin>2</ymin><xmax>40</xmax><ymax>4</ymax></bndbox>\n</object>\n</annotation>",
        3, "a max is below its min");
    BAD("<annotation>\n<object>\n<name>dog</name>\n"
        "<bndbox><xmin>1</xmin><ymin>20</ymin><xmax>4</xmax><ymax>19.5</ymax></bndbox>\n</object>\n</annotation>",
        2, "'dog' has xmin 1 ymin 20 xmax 4 ymax 19.5");
    BAD("<annotation>\n<object>\n<pose>Left</pose>\n" BOX "\n</object>\n</annotation>", 2,
        "<object> without <name>");
    BAD("<annotation>\n<object>\n<part><name>head</name></part>\n" BOX "\n</object>\n</annotation>", 2,
        "<object> without <name>");
    BAD("<annotation>\n<object>\n<name>   </name>\n" BOX "\n</object>\n</annotation>", 3, "empty <name>");
    BAD("<annotation>\n<object><name>dog</name>\n<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax></bndbox>\n"
        "</object>\n</annotation>",
        2, "'dog' has no <bndbox><ymax>");
    /* The part's box does not stand in for the object's. */
    BAD("<annotation>\n<object><name>person</name>\n<part><name>head</name>" BOX "</part>\n</object>\n</annotation>",
        2, "'person' has no <bndbox><xmin>");
    BAD("<annotation>\n<object/>\n</annotation>", 2, "<object> without <name>");
    /* Empty, blank, binary. */
    BAD("", 0, "no <annotation> element");
    BAD("  \r\n\t\n", 0, "no <annotation> element");
    BAD("<?xml version=\"1.0\"?>\n<!-- nothing -->\n", 0, "no <annotation> element");
    BAD("\xEF\xBB\xBF", 0, "no <annotation> element");
    expect_bad(&e, "\0\0\0\0", 4, 1, "text outside the root element");
    static const unsigned char png_start[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H'};
    expect_bad(&e, (const char *)png_start, sizeof png_start, 1, "text outside the root element");
    /* Pseudo-random bytes: always an error naming the file. */
    uint32_t x = 12345;
    char junk[512];
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof junk; i++) {
            x = x * 1664525u + 1013904223u;
            junk[i] = (char)(x >> 24);
        }
        junk[0] = 'J'; /* not '<', ' ' or '&': text outside the root from the first byte */
        expect_bad(&e, junk, sizeof junk, 0, "text outside the root element");
    }
    /* Long names. */
    char longtext[1024];
    snprintf(longtext, sizeof longtext, "<annotation>\n<object><name>%0200d</name>" BOX "</object></annotation>", 7);
    BAD(longtext, 2, "class name longer than 127 bytes");
    snprintf(longtext, sizeof longtext, "<annotation>\n<%070d/></annotation>", 7);
    BAD(longtext, 2, "element name longer than 63 bytes");
    env_close(&e);
}

static void test_parse_depth_limit(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char text[2048];
    for (int depth = 31; depth <= 34; depth++) {
        /* <annotation> and depth - 1 nested <a>, the deepest on line 2. */
        size_t len = (size_t)snprintf(text, sizeof text, "<annotation>\n");
        for (int i = 1; i < depth; i++)
            len += (size_t)snprintf(text + len, sizeof text - len, "<a>");
        for (int i = 1; i < depth; i++)
            len += (size_t)snprintf(text + len, sizeof text - len, "</a>");
        snprintf(text + len, sizeof text - len, "\n</annotation>\n");
        if (depth <= 32) {
            frcnn__voc_annotation a;
            assert_int_equal(parse(e.ctx, text, &a), FRCNN_OK);
            frcnn__voc_annotation_free(e.ctx, &a);
        } else {
            BAD(text, 2, "elements nested deeper than 32");
        }
    }
    env_close(&e);
}

/* Every prefix of the real file, and every single-bit flip of it: FRCNN_OK or FRCNN_ERR_FORMAT with a message
 * naming the file, never a crash or a read past the end (the text is an exact-size heap copy), never a leak. */
static void test_parse_truncations_and_bit_flips(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    const size_t n = strlen(VOC2007_000005);
    /* The end of the root element (the first "</annotation>" closes the one inside <source>). */
    const size_t complete = n - strlen("</annotation>\n") + strlen("</annotation>");
    char *buf = malloc(n);
    assert_non_null(buf);
    const char *needles[] = {XML_PATH ": ", NULL};
    for (size_t len = 0; len <= n; len++) {
        frcnn__voc_annotation a;
        frcnn_status st = parse_n(e.ctx, VOC2007_000005, len, &a);
        if (len >= complete) {
            if (st != FRCNN_OK)
                fail_msg("prefix of %zu bytes: %s", len, frcnn_ctx_last_error(e.ctx));
            expect_000005(&a, true);
        } else {
            if (st != FRCNN_ERR_FORMAT) {
                print_error("prefix of %zu bytes: status %d\n", len, (int)st);
                fail();
            }
            expect_msg_has(e.ctx, needles);
            /* Objects completed before the cut are kept until freed: never more than the file has. */
            assert_true(a.n_objects <= 5);
        }
        frcnn__voc_annotation_free(e.ctx, &a);
        tu_alloc_assert_since(&e.ca, e.base);
    }
    size_t ok = 0, bad = 0;
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(buf, VOC2007_000005, n);
            buf[i] = (char)(buf[i] ^ (1 << bit));
            frcnn__voc_annotation a;
            frcnn_status st = frcnn__voc_parse(e.ctx, XML_PATH, buf, n, &a);
            if (st == FRCNN_OK) {
                ok++;
                assert_true(a.n_objects <= 5);
            } else {
                bad++;
                if (st != FRCNN_ERR_FORMAT) {
                    print_error("byte %zu bit %d: status %d (%s)\n", i, bit, (int)st, frcnn_ctx_last_error(e.ctx));
                    fail();
                }
                expect_msg_has(e.ctx, needles);
            }
            frcnn__voc_annotation_free(e.ctx, &a);
            tu_alloc_assert_since(&e.ca, e.base);
        }
    /* Both outcomes occur: flips in text content are harmless, flips in tags are errors. */
    assert_true(ok > 100);
    assert_true(bad > 100);
    free(buf);
    env_close(&e);
}

/* ---------------------------------------------------------------------------------------------------------------
 * frcnn_voc_open
 * ------------------------------------------------------------------------------------------------------------- */

static int voc_label(const char *name)
{
    const char *const *names = frcnn_voc_class_names();
    for (int i = 0; i < FRCNN_VOC_NUM_CLASSES; i++)
        if (strcmp(names[i], name) == 0)
            return i + 1;
    fail_msg("'%s' is not a VOC class", name);
    return -1;
}

static void expect_box(const frcnn_object *o, float x1, float y1, float x2, float y2, int label, bool difficult)
{
    if (o->x1 != x1 || o->y1 != y1 || o->x2 != x2 || o->y2 != y2 || o->label != label ||
        o->difficult != difficult) {
        print_error("object (%g %g %g %g) label %d difficult %d, want (%g %g %g %g) label %d difficult %d\n",
                    (double)o->x1, (double)o->y1, (double)o->x2, (double)o->y2, (int)o->label, o->difficult,
                    (double)x1, (double)y1, (double)x2, (double)y2, label, difficult);
        fail();
    }
}

/* The standard small tree: 000005 (.jpg 20x15, a dog and a difficult person), 000007 (.Png, found only through
 * <filename>, 16x12, a chair without <difficult>, decimal), 000009 (.png found by extension, <filename> names a
 * missing .jpg, 12x10, a box reaching past the image on every side). */
static void standard_tree(const char *name, char *root, size_t rc, char *voc, size_t vc)
{
    new_tree(name, root, rc, voc, vc);
    put_image(voc, "JPEGImages/000005.jpg", 20, 15);
    put_image(voc, "JPEGImages/000007.Png", 16, 12);
    put_image(voc, "JPEGImages/000009.png", 12, 10);
    const tobj o5[] = {{"dog", 2, 3, 10, 12, 0}, {"person", 5, 5, 20, 15, 1}};
    const tobj o7[] = {{"chair", 1.5, 2.25, 16, 12, -1}};
    const tobj o9[] = {{"bird", 0, -3, 13, 40, 0}};
    put_annotation(voc, "000005", "000005.jpg", 20, 15, o5, 2, NULL);
    put_annotation(voc, "000007", " 000007.Png ", 16, 12, o7, 1, NULL);
    put_annotation(voc, "000009", "000009.jpg", 12, 10, o9, 1, NULL);
    /* Blank lines, CRLF, leading and trailing blanks, a second column (as the per-class lists have). */
    put_text(voc, "ImageSets/Main/trainval.txt", "000005\r\n\r\n  000007  1 \r\n\n000009 -1\n   \n\t\n");
}

static void check_standard(const frcnn_dataset *ds, const char *voc)
{
    assert_int_equal(frcnn_dataset_size(ds), 3);
    assert_int_equal(frcnn_dataset_num_classes(ds), 21);
    const char *const *names = frcnn_dataset_class_names(ds);
    assert_non_null(names);
    assert_string_equal(names[0], "__background__");
    for (int c = 0; c < FRCNN_VOC_NUM_CLASSES; c++)
        assert_string_equal(names[c + 1], frcnn_voc_class_names()[c]);
    frcnn_dataset_image im;
    char want[1024];

    assert_int_equal(frcnn_dataset_image_info(ds, 0, &im), FRCNN_OK);
    assert_string_equal(im.id, "000005");
    assert_string_equal(im.path, joinp(want, sizeof want, voc, "JPEGImages/000005.jpg"));
    assert_int_equal(im.width, 20);
    assert_int_equal(im.height, 15);
    assert_int_equal(im.n_objects, 2);
    /* 1-based inclusive pixels become 0-based: minus 1. */
    expect_box(&im.objects[0], 1, 2, 9, 11, voc_label("dog"), false);
    expect_box(&im.objects[1], 4, 4, 19, 14, voc_label("person"), true);

    assert_int_equal(frcnn_dataset_image_info(ds, 1, &im), FRCNN_OK);
    assert_string_equal(im.id, "000007");
    assert_string_equal(im.path, joinp(want, sizeof want, voc, "JPEGImages/000007.Png"));
    assert_int_equal(im.width, 16);
    assert_int_equal(im.height, 12);
    assert_int_equal(im.n_objects, 1);
    expect_box(&im.objects[0], 0.5f, 1.25f, 15, 11, voc_label("chair"), false);

    assert_int_equal(frcnn_dataset_image_info(ds, 2, &im), FRCNN_OK);
    assert_string_equal(im.id, "000009");
    assert_string_equal(im.path, joinp(want, sizeof want, voc, "JPEGImages/000009.png"));
    assert_int_equal(im.width, 12);
    assert_int_equal(im.height, 10);
    /* (-1, -4, 12, 39) clipped to the 12x10 image. */
    expect_box(&im.objects[0], 0, 0, 11, 9, voc_label("bird"), false);
}

static void test_voc_open_standard(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char root[512], voc[512];
    standard_tree("standard", root, sizeof root, voc, sizeof voc);
    frcnn_voc_params p = frcnn_voc_params_default();
    assert_string_equal(p.year, "2007");
    assert_string_equal(p.split, "trainval");
    assert_null(p.root);
    assert_null(p.class_names);
    assert_false(p.classes_from_annotations);
    p.root = root;
    frcnn_dataset *ds = NULL;
    frcnn_status st = frcnn_voc_open(e.ctx, &p, &ds);
    if (st != FRCNN_OK)
        fail_msg("voc_open: %s", frcnn_ctx_last_error(e.ctx));
    check_standard(ds, voc);
    /* The clipped box was reported. */
    assert_non_null(strstr(g_log, "1 boxes reached past their image and were clipped"));
    const uint64_t fp = frcnn_dataset_fingerprint(ds);
    assert_true(fp != 0);
    frcnn_dataset_image im;
    tu_expect_error_msg(e.ctx, frcnn_dataset_image_info(ds, 3, &im), FRCNN_ERR_INVALID_ARG, "image 3 of 3");
    assert_int_equal(frcnn_dataset_image_info(ds, 0, NULL), FRCNN_ERR_INVALID_ARG);
    frcnn_dataset_free(ds);

    /* The VOC2007 folder itself as root: the year is not used. */
    p.root = voc;
    p.year = "1999";
    ds = NULL;
    st = frcnn_voc_open(e.ctx, &p, &ds);
    if (st != FRCNN_OK)
        fail_msg("voc_open: %s", frcnn_ctx_last_error(e.ctx));
    check_standard(ds, voc);
    assert_true(frcnn_dataset_fingerprint(ds) == fp);
    frcnn_dataset_free(ds);

    /* A VOCdevkit root with the wrong year: not found, naming both places tried. */
    p.root = root;
    ds = NULL;
    st = frcnn_voc_open(e.ctx, &p, &ds);
    const char *needles[] = {root, "VOC1999", NULL};
    assert_int_equal(st, FRCNN_ERR_NOT_FOUND);
    expect_msg_has(e.ctx, needles);
    assert_null(ds);
    env_close(&e);
}

static void test_voc_open_classes(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char root[512], voc[512];
    new_tree("classes", root, sizeof root, voc, sizeof voc);
    put_image(voc, "JPEGImages/a.jpg", 8, 8);
    put_image(voc, "JPEGImages/b.jpg", 8, 8);
    const tobj oa[] = {{"zebra", 1, 1, 2, 2, 0}, {"dog", 1, 1, 3, 3, 0}, {"person", 2, 2, 4, 4, 1}};
    const tobj ob[] = {{"dog", 1, 1, 5, 5, 0}, {"apple", 1, 1, 6, 6, -1}};
    int lines_a[3], lines_b[2];
    put_annotation(voc, "a", NULL, 8, 8, oa, 3, lines_a);
    put_annotation(voc, "b", NULL, 8, 8, ob, 2, lines_b);
    put_text(voc, "ImageSets/Main/train.txt", "a\nb\n");

    /* From the annotations: sorted by strcmp, each once. */
    frcnn_voc_params p = frcnn_voc_params_default();
    p.root = root;
    p.split = "train";
    p.classes_from_annotations = true;
    frcnn_dataset *ds = NULL;
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_OK);
    assert_int_equal(frcnn_dataset_num_classes(ds), 5);
    const char *const *names = frcnn_dataset_class_names(ds);
    const char *want[] = {"__background__", "apple", "dog", "person", "zebra"};
    for (int c = 0; c < 5; c++)
        assert_string_equal(names[c], want[c]);
    frcnn_dataset_image im;
    assert_int_equal(frcnn_dataset_image_info(ds, 0, &im), FRCNN_OK);
    assert_int_equal(im.n_objects, 3);
    expect_box(&im.objects[0], 0, 0, 1, 1, 4, false);
    expect_box(&im.objects[1], 0, 0, 2, 2, 2, false);
    expect_box(&im.objects[2], 1, 1, 3, 3, 3, true);
    assert_int_equal(frcnn_dataset_image_info(ds, 1, &im), FRCNN_OK);
    expect_box(&im.objects[0], 0, 0, 4, 4, 2, false);
    expect_box(&im.objects[1], 0, 0, 5, 5, 1, false);
    frcnn_dataset_free(ds);

    /* An explicit list: labels follow its order, not the alphabet. */
    const char *mine[] = {"zebra", "person", "dog", "apple", "extra"};
    p.classes_from_annotations = false;
    p.class_names = mine;
    p.n_classes = 5;
    ds = NULL;
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_OK);
    assert_int_equal(frcnn_dataset_num_classes(ds), 6);
    names = frcnn_dataset_class_names(ds);
    assert_string_equal(names[0], "__background__");
    for (int c = 0; c < 5; c++)
        assert_string_equal(names[c + 1], mine[c]);
    assert_true(names[1] != mine[0]); /* copied: the caller's array need not outlive the call */
    assert_int_equal(frcnn_dataset_image_info(ds, 0, &im), FRCNN_OK);
    assert_int_equal(im.objects[0].label, 1);
    assert_int_equal(im.objects[1].label, 3);
    assert_int_equal(im.objects[2].label, 2);
    assert_int_equal(frcnn_dataset_image_info(ds, 1, &im), FRCNN_OK);
    assert_int_equal(im.objects[1].label, 4);
    frcnn_dataset_free(ds);

    /* A class not in the list: the file, the object's line and the class. */
    const char *short_list[] = {"zebra", "person", "dog"};
    p.class_names = short_list;
    p.n_classes = 3;
    ds = NULL;
    char line[32], file[600];
    snprintf(line, sizeof line, "line %d:", lines_b[1]);
    joinp(file, sizeof file, voc, "Annotations/b.xml");
    const char *needles[] = {file, line, "class 'apple'", NULL};
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_MISMATCH);
    expect_msg_has(e.ctx, needles);
    assert_null(ds);

    /* The 20 VOC classes by default: zebra is not one of them. */
    p.class_names = NULL;
    p.n_classes = 0;
    snprintf(line, sizeof line, "line %d:", lines_a[0]);
    joinp(file, sizeof file, voc, "Annotations/a.xml");
    const char *needles2[] = {file, line, "class 'zebra'", NULL};
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_MISMATCH);
    expect_msg_has(e.ctx, needles2);

    /* A bad explicit list. */
    p.class_names = short_list;
    p.n_classes = 0;
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_INVALID_ARG, "n_classes 0");
    const char *with_empty[] = {"zebra", "", "dog", "apple", "person"};
    p.class_names = with_empty;
    p.n_classes = 5;
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_INVALID_ARG, "class 2 has no name");
    env_close(&e);
}

static void test_voc_open_missing_files(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char root[512], voc[512], path[1024];
    standard_tree("missing", root, sizeof root, voc, sizeof voc);
    frcnn_voc_params p = frcnn_voc_params_default();
    p.root = root;
    frcnn_dataset *ds = NULL;

    /* No split file. */
    p.split = "val";
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_NOT_FOUND,
                        joinp(path, sizeof path, voc, "ImageSets/Main/val.txt"));
    assert_null(ds);
    /* No root. */
    char nowhere[600];
    joinp(nowhere, sizeof nowhere, g_tmp, "no-such-folder");
    p.root = nowhere;
    p.split = "trainval";
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_NOT_FOUND, nowhere);
    p.root = root;
    /* An id without annotation. */
    put_text(voc, "ImageSets/Main/noann.txt", "000005\n000011\n");
    put_image(voc, "JPEGImages/000011.jpg", 8, 8);
    p.split = "noann";
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_NOT_FOUND,
                        joinp(path, sizeof path, voc, "Annotations/000011.xml"));
    /* An annotation without image. */
    const tobj o[] = {{"dog", 1, 1, 4, 4, 0}};
    put_annotation(voc, "000013", "000013.jpg", 8, 8, o, 1, NULL);
    put_text(voc, "ImageSets/Main/noimg.txt", "000005\n000013\n");
    p.split = "noimg";
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_NOT_FOUND,
                        joinp(path, sizeof path, voc, "JPEGImages/000013.jpg"));
    /* An annotation that is a folder. */
    joinp(path, sizeof path, voc, "Annotations/000015.xml");
    make_parents(path, true);
    put_image(voc, "JPEGImages/000015.jpg", 8, 8);
    put_text(voc, "ImageSets/Main/dirann.txt", "000015\n");
    p.split = "dirann";
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_IO, path);
    /* A malformed annotation: the file and the line. */
    put_text(voc, "Annotations/000017.xml", "<annotation>\n<object>\n<name>dog</nam>\n</object>\n</annotation>\n");
    put_image(voc, "JPEGImages/000017.jpg", 8, 8);
    put_text(voc, "ImageSets/Main/badxml.txt", "000017\n");
    p.split = "badxml";
    char where[1100];
    snprintf(where, sizeof where, "%s/Annotations/000017.xml: line 3: mismatched end tag", voc);
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_FORMAT, where);
    /* The same id twice. */
    put_text(voc, "ImageSets/Main/dup.txt", "000005\n000007\n000005 1\n");
    p.split = "dup";
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_FORMAT, "'000005' is listed twice");
    /* An empty split, and an id that would leave the folder. */
    put_text(voc, "ImageSets/Main/empty.txt", "\r\n  \n");
    p.split = "empty";
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_FORMAT, "lists no image");
    put_text(voc, "ImageSets/Main/escape.txt", "000005\n../../etc/passwd\n");
    p.split = "escape";
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_FORMAT, "line 2: '../../etc/passwd'");
    assert_null(ds);
    env_close(&e);
}

static void test_voc_open_box_outside(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char root[512], voc[512], file[600], line[32];
    new_tree("outside", root, sizeof root, voc, sizeof voc);
    put_image(voc, "JPEGImages/x.jpg", 20, 15);
    int lines[2];
    /* The second box starts right of the last column (0-based x1 = 20 > 19). */
    const tobj o[] = {{"dog", 2, 3, 10, 12, 0}, {"cat", 21, 3, 30, 12, 0}};
    put_annotation(voc, "x", "x.jpg", 20, 15, o, 2, lines);
    put_text(voc, "ImageSets/Main/trainval.txt", "x\n");
    frcnn_voc_params p = frcnn_voc_params_default();
    p.root = root;
    frcnn_dataset *ds = NULL;
    joinp(file, sizeof file, voc, "Annotations/x.xml");
    snprintf(line, sizeof line, "line %d:", lines[1]);
    const char *needles[] = {file, line, "'cat' lies outside the 20x15 image", NULL};
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_FORMAT);
    expect_msg_has(e.ctx, needles);
    assert_null(ds);
    /* Above the image (0-based y2 = -1 < 0). */
    const tobj o2[] = {{"cat", 2, -5, 10, 0, 0}};
    put_annotation(voc, "x", "x.jpg", 20, 15, o2, 1, lines);
    snprintf(line, sizeof line, "line %d:", lines[0]);
    const char *needles2[] = {file, line, "lies outside", NULL};
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_FORMAT);
    expect_msg_has(e.ctx, needles2);
    /* Touching the last pixel only: kept, one pixel wide. */
    const tobj o3[] = {{"cat", 20, 15, 25, 30, 0}};
    put_annotation(voc, "x", "x.jpg", 20, 15, o3, 1, NULL);
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_OK);
    frcnn_dataset_image im;
    assert_int_equal(frcnn_dataset_image_info(ds, 0, &im), FRCNN_OK);
    expect_box(&im.objects[0], 19, 14, 19, 14, voc_label("cat"), false);
    frcnn_dataset_free(ds);
    env_close(&e);
}

static void test_voc_open_size_from_image(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char root[512], voc[512];
    new_tree("sizes", root, sizeof root, voc, sizeof voc);
    put_image(voc, "JPEGImages/zero.png", 24, 18);
    put_image(voc, "JPEGImages/none.jpg", 10, 30);
    const tobj o[] = {{"dog", 1, 1, 100, 100, 0}};
    put_annotation(voc, "zero", "zero.png", 0, 0, o, 1, NULL);
    put_annotation(voc, "none", NULL, -1, 0, o, 1, NULL);
    put_text(voc, "ImageSets/Main/trainval.txt", "zero\nnone\n");
    frcnn_voc_params p = frcnn_voc_params_default();
    p.root = voc;
    frcnn_dataset *ds = NULL;
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_OK);
    frcnn_dataset_image im;
    assert_int_equal(frcnn_dataset_image_info(ds, 0, &im), FRCNN_OK);
    assert_int_equal(im.width, 24);
    assert_int_equal(im.height, 18);
    /* Clipped to the size read from the image. */
    expect_box(&im.objects[0], 0, 0, 23, 17, voc_label("dog"), false);
    assert_int_equal(frcnn_dataset_image_info(ds, 1, &im), FRCNN_OK);
    assert_int_equal(im.width, 10);
    assert_int_equal(im.height, 30);
    expect_box(&im.objects[0], 0, 0, 9, 29, voc_label("dog"), false);
    frcnn_dataset_free(ds);
    /* Size 0 and an image that is not one: the error names the image. */
    char bad[600];
    put_text(voc, "JPEGImages/zero.png", "not a png");
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_FORMAT);
    const char *needles[] = {joinp(bad, sizeof bad, voc, "JPEGImages/zero.png"), NULL};
    expect_msg_has(e.ctx, needles);
    env_close(&e);
}

static uint64_t open_fingerprint(env *e, frcnn_voc_params *p)
{
    frcnn_dataset *ds = NULL;
    frcnn_status st = frcnn_voc_open(e->ctx, p, &ds);
    if (st != FRCNN_OK)
        fail_msg("voc_open: %s", frcnn_ctx_last_error(e->ctx));
    uint64_t fp = frcnn_dataset_fingerprint(ds);
    frcnn_dataset_free(ds);
    return fp;
}

static void test_voc_fingerprint(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char root[512], voc[512];
    new_tree("fingerprint", root, sizeof root, voc, sizeof voc);
    put_image(voc, "JPEGImages/a.jpg", 20, 15);
    put_image(voc, "JPEGImages/b.jpg", 20, 15);
    const tobj oa[] = {{"dog", 2, 3, 10, 12, 0}, {"cat", 4, 4, 8, 8, 1}};
    const tobj ob[] = {{"person", 1, 1, 5, 5, 0}};
    put_annotation(voc, "a", NULL, 20, 15, oa, 2, NULL);
    put_annotation(voc, "b", NULL, 20, 15, ob, 1, NULL);
    put_text(voc, "ImageSets/Main/trainval.txt", "a\nb\n");
    frcnn_voc_params p = frcnn_voc_params_default();
    p.root = root;
    const uint64_t fp = open_fingerprint(&e, &p);
    assert_true(fp != 0);
    assert_true(open_fingerprint(&e, &p) == fp);

    /* One coordinate. */
    const tobj oa2[] = {{"dog", 2, 3, 11, 12, 0}, {"cat", 4, 4, 8, 8, 1}};
    put_annotation(voc, "a", NULL, 20, 15, oa2, 2, NULL);
    assert_true(open_fingerprint(&e, &p) != fp);
    /* One class (dog -> horse: another label). */
    const tobj oa3[] = {{"horse", 2, 3, 10, 12, 0}, {"cat", 4, 4, 8, 8, 1}};
    put_annotation(voc, "a", NULL, 20, 15, oa3, 2, NULL);
    assert_true(open_fingerprint(&e, &p) != fp);
    /* The difficult flag. */
    const tobj oa4[] = {{"dog", 2, 3, 10, 12, 0}, {"cat", 4, 4, 8, 8, 0}};
    put_annotation(voc, "a", NULL, 20, 15, oa4, 2, NULL);
    assert_true(open_fingerprint(&e, &p) != fp);
    /* The order of the split. */
    put_annotation(voc, "a", NULL, 20, 15, oa, 2, NULL);
    put_text(voc, "ImageSets/Main/trainval.txt", "b\na\n");
    assert_true(open_fingerprint(&e, &p) != fp);
    /* Back as it was: the same value again (file layout such as CRLF does not matter). */
    put_text(voc, "ImageSets/Main/trainval.txt", "a\r\nb 1\r\n");
    assert_true(open_fingerprint(&e, &p) == fp);

    /* Class names alone: with classes from the annotations, dog -> doge keeps every label (the sorted order of
     * cat, dog/doge, person is the same) but changes the class list. */
    p.classes_from_annotations = true;
    const uint64_t fp_names = open_fingerprint(&e, &p);
    assert_true(fp_names != fp);
    const tobj oa5[] = {{"doge", 2, 3, 10, 12, 0}, {"cat", 4, 4, 8, 8, 1}};
    put_annotation(voc, "a", NULL, 20, 15, oa5, 2, NULL);
    assert_true(open_fingerprint(&e, &p) != fp_names);
    put_annotation(voc, "a", NULL, 20, 15, oa, 2, NULL);
    assert_true(open_fingerprint(&e, &p) == fp_names);
    env_close(&e);
}

static void test_voc_null_arguments(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char root[512], voc[512];
    standard_tree("nulls", root, sizeof root, voc, sizeof voc);
    frcnn_voc_params p = frcnn_voc_params_default();
    frcnn_dataset *ds = NULL;
    p.root = root;
    assert_int_equal(frcnn_voc_open(NULL, &p, &ds), FRCNN_ERR_INVALID_ARG);
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, NULL, &ds), FRCNN_ERR_INVALID_ARG, "params");
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, NULL), FRCNN_ERR_INVALID_ARG, "out");
    p.root = NULL;
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_INVALID_ARG, "params.root");
    p.root = root;
    p.year = NULL;
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_INVALID_ARG, "params.year");
    p.year = "2007";
    p.split = NULL;
    tu_expect_error_msg(e.ctx, frcnn_voc_open(e.ctx, &p, &ds), FRCNN_ERR_INVALID_ARG, "params.split");
    assert_null(ds);
    /* Accessors on NULL. */
    frcnn_dataset_free(NULL);
    assert_int_equal(frcnn_dataset_size(NULL), 0);
    assert_int_equal(frcnn_dataset_num_classes(NULL), 0);
    assert_null(frcnn_dataset_class_names(NULL));
    assert_true(frcnn_dataset_fingerprint(NULL) == 0);
    frcnn_dataset_image im;
    assert_int_equal(frcnn_dataset_image_info(NULL, 0, &im), FRCNN_ERR_INVALID_ARG);
    /* The static class list. */
    const char *const *names = frcnn_voc_class_names();
    assert_string_equal(names[0], "aeroplane");
    assert_string_equal(names[8], "chair");
    assert_string_equal(names[14], "person");
    assert_string_equal(names[FRCNN_VOC_NUM_CLASSES - 1], "tvmonitor");
    for (int c = 1; c < FRCNN_VOC_NUM_CLASSES; c++)
        assert_true(strcmp(names[c - 1], names[c]) < 0);
    env_close(&e);
}

/* Every allocation of frcnn_voc_open failing in turn: NO_MEMORY, nothing leaked, and a complete run in the end. */
static void test_voc_open_allocation_failures(void **state)
{
    (void)state;
    char root[512], voc[512];
    standard_tree("allocfail", root, sizeof root, voc, sizeof voc);
    bool passed = false;
    size_t failures = 0;
    for (size_t k = 1; k < 500 && !passed; k++) {
        env e;
        env_open(&e);
        tu_alloc_fail_next(&e.ca, k);
        frcnn_voc_params p = frcnn_voc_params_default();
        p.root = root;
        p.classes_from_annotations = (k & 1) != 0;
        frcnn_dataset *ds = NULL;
        frcnn_status st = frcnn_voc_open(e.ctx, &p, &ds);
        if (st == FRCNN_OK) {
            passed = e.ca.failed == 0;
            frcnn_dataset_free(ds);
        } else {
            failures++;
            tu_expect_error(e.ctx, st, FRCNN_ERR_NO_MEMORY);
            assert_null(ds);
        }
        env_close(&e);
    }
    assert_true(passed);
    assert_true(failures > 10);
}

/* ---------------------------------------------------------------------------------------------------------------
 * frcnn_image_prepared_size, frcnn_image_prepare
 * ------------------------------------------------------------------------------------------------------------- */

static frcnn_config sized_config(int short_side, int max_side)
{
    frcnn_config c = frcnn_config_vgg16();
    c.short_side = short_side;
    c.max_side = max_side;
    return c;
}

static void expect_prepared(frcnn_ctx *ctx, int short_side, int max_side, int w, int h, int want_w, int want_h,
                            double want_scale)
{
    frcnn_config c = sized_config(short_side, max_side);
    int pw = -1, ph = -1;
    float s = -1;
    assert_int_equal(frcnn_image_prepared_size(ctx, &c, w, h, &pw, &ph, &s), FRCNN_OK);
    if (pw != want_w || ph != want_h || s != (float)want_scale) {
        print_error("%dx%d (short %d, max %d): %dx%d scale %.9g, want %dx%d scale %.9g\n", w, h, short_side,
                    max_side, pw, ph, (double)s, want_w, want_h, want_scale);
        fail();
    }
}

static void test_prepared_size(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* VOC's typical 500x375: 600 / 375 = 1.6, 800 x 600 (800 <= 1000). */
    expect_prepared(ctx, 600, 1000, 500, 375, 800, 600, 1.6);
    expect_prepared(ctx, 600, 1000, 375, 500, 600, 800, 1.6);
    /* Very wide: 600 / 100 = 6 would make 12000, so 1000 / 2000 = 0.5. */
    expect_prepared(ctx, 600, 1000, 2000, 100, 1000, 50, 0.5);
    expect_prepared(ctx, 600, 1000, 100, 2000, 50, 1000, 0.5);
    /* Exactly at the cap: 600 / 600 * 1000 = 1000 is not above it. */
    expect_prepared(ctx, 600, 1000, 1000, 600, 1000, 600, 1.0);
    /* Rounding: 500 * 600 / 333 = 900.9 -> 901; 333 * 600 / 333 -> 600. */
    expect_prepared(ctx, 600, 1000, 333, 500, 600, 901, 600.0 / 333.0);
    /* 5 x 3 at short side 2: 5 * 2 / 3 = 3.33 -> 3, 3 * 2 / 3 -> 2; a 1 x 1 image grows to a square. */
    expect_prepared(ctx, 2, 10, 5, 3, 3, 2, 2.0 / 3.0);
    expect_prepared(ctx, 600, 1000, 1, 1, 600, 600, 600.0);
    /* Shrinking: 0.0375 * 9001 = 337.54 -> 338, and a side that would round to 0 stays 1 pixel. */
    expect_prepared(ctx, 600, 600, 16000, 9001, 600, 338, 600.0 / 16000.0);
    expect_prepared(ctx, 600, 1000, 16384, 1, 1000, 1, 1000.0 / 16384.0);
    /* Every size against the documented rule. */
    frcnn_config c = sized_config(600, 1000);
    for (int w = 1; w <= 2000; w += 7)
        for (int h = 1; h <= 2000; h += 13) {
            int lo = w < h ? w : h, hi = w < h ? h : w, pw, ph;
            double s = 600.0 / lo;
            if (s * hi > 1000)
                s = 1000.0 / hi;
            long ew = lround(w * s), eh = lround(h * s);
            float fs;
            assert_int_equal(frcnn_image_prepared_size(ctx, &c, w, h, &pw, &ph, &fs), FRCNN_OK);
            if (pw != (ew < 1 ? 1 : ew) || ph != (eh < 1 ? 1 : eh) || fs != (float)s) {
                print_error("%dx%d -> %dx%d scale %.9g, want %ldx%ld scale %.9g\n", w, h, pw, ph, (double)fs, ew, eh,
                            s);
                fail();
            }
            assert_true(pw <= 1000 && ph <= 1000);
        }
    /* Bad arguments. */
    int pw, ph;
    float s;
    assert_int_equal(frcnn_image_prepared_size(NULL, &c, 5, 5, &pw, &ph, &s), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_prepared_size(ctx, NULL, 5, 5, &pw, &ph, &s), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_prepared_size(ctx, &c, 5, 5, NULL, &ph, &s), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_prepared_size(ctx, &c, 5, 5, &pw, &ph, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error_msg(ctx, frcnn_image_prepared_size(ctx, &c, 0, 5, &pw, &ph, &s), FRCNN_ERR_INVALID_ARG, "0x5");
    tu_expect_error(ctx, frcnn_image_prepared_size(ctx, &c, 5, FRCNN_IMAGE_MAX_SIDE + 1, &pw, &ph, &s),
                    FRCNN_ERR_INVALID_ARG);
    c = sized_config(600, 599);
    tu_expect_error_msg(ctx, frcnn_image_prepared_size(ctx, &c, 5, 5, &pw, &ph, &s), FRCNN_ERR_INVALID_ARG,
                        "max_side 599");
    c = sized_config(0, 1000);
    tu_expect_error(ctx, frcnn_image_prepared_size(ctx, &c, 5, 5, &pw, &ph, &s), FRCNN_ERR_INVALID_ARG);
    frcnn_ctx_free(ctx);
}

/* An image from per-channel planes r, g, b (h, w). */
static frcnn_image *image_from(frcnn_ctx *ctx, int w, int h, const float *r, const float *g, const float *b)
{
    frcnn_image *img = NULL;
    assert_int_equal(frcnn_image_create(ctx, w, h, &img), FRCNN_OK);
    uint8_t *px = frcnn_image_pixels(img);
    for (int i = 0; i < w * h; i++) {
        px[3 * i + 0] = (uint8_t)r[i];
        px[3 * i + 1] = (uint8_t)g[i];
        px[3 * i + 2] = (uint8_t)b[i];
    }
    return img;
}

static frcnn_config norm_config(int short_side, int max_side)
{
    frcnn_config c = sized_config(short_side, max_side);
    c.pixel_means[0] = 100; /* B */
    c.pixel_means[1] = 20;  /* G */
    c.pixel_means[2] = 7.5f; /* R */
    c.pixel_stds[0] = 2;
    c.pixel_stds[1] = 0.5f;
    c.pixel_stds[2] = 4;
    return c;
}

static void expect_dims(const frcnn_tensor *t, int h, int w)
{
    assert_int_equal(frcnn_tensor_ndim(t), 4);
    assert_int_equal(frcnn_tensor_dim(t, 0), 1);
    assert_int_equal(frcnn_tensor_dim(t, 1), 3);
    assert_int_equal(frcnn_tensor_dim(t, 2), h);
    assert_int_equal(frcnn_tensor_dim(t, 3), w);
}

static void test_prepare_identity_and_flip(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    enum { W = 5, H = 3 };
    frcnn_image *img = NULL;
    assert_int_equal(frcnn_image_create(ctx, W, H, &img), FRCNN_OK);
    uint8_t *px = frcnn_image_pixels(img);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++)
                px[(y * W + x) * 3 + c] = pattern(x, y, c);
    /* short_side = 3 = the short side: scale 1, no resampling. */
    frcnn_config c = norm_config(3, 10);
    frcnn_tensor *t = NULL;
    float s = 0;
    assert_int_equal(frcnn_image_prepare(ctx, &c, img, false, &t, &s), FRCNN_OK);
    assert_true(s == 1.0f);
    expect_dims(t, H, W);
    float want[3 * H * W], want_flip[3 * H * W];
    for (int ch = 0; ch < 3; ch++) /* output channel 0 is B = input channel 2 */
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const float v = ((float)pattern(x, y, 2 - ch) - c.pixel_means[ch]) / c.pixel_stds[ch];
                want[(ch * H + y) * W + x] = v;
                want_flip[(ch * H + y) * W + (W - 1 - x)] = v;
            }
    tu_assert_identical("prepared", frcnn_tensor_data(t), want, 3 * H * W);
    /* One value by hand: B at (0, 0) is 5 + 142 = 147, (147 - 100) / 2 = 23.5; R is 5, (5 - 7.5) / 4 = -0.625. */
    assert_true(frcnn_tensor_data(t)[0] == 23.5f);
    assert_true(frcnn_tensor_data(t)[2 * H * W] == -0.625f);
    frcnn_tensor_free(t);
    t = NULL;
    assert_int_equal(frcnn_image_prepare(ctx, &c, img, true, &t, &s), FRCNN_OK);
    expect_dims(t, H, W);
    tu_assert_identical("prepared flipped", frcnn_tensor_data(t), want_flip, 3 * H * W);
    frcnn_tensor_free(t);

    /* Bad arguments. */
    assert_int_equal(frcnn_image_prepare(NULL, &c, img, false, &t, &s), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_prepare(ctx, NULL, img, false, &t, &s), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_prepare(ctx, &c, NULL, false, &t, &s), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_prepare(ctx, &c, img, false, NULL, &s), FRCNN_ERR_INVALID_ARG);
    c.pixel_stds[1] = 0;
    tu_expect_error_msg(ctx, frcnn_image_prepare(ctx, &c, img, false, &t, &s), FRCNN_ERR_INVALID_ARG, "[1]");
    c.pixel_stds[1] = 1;
    c.pixel_means[2] = NAN;
    tu_expect_error_msg(ctx, frcnn_image_prepare(ctx, &c, img, false, &t, &s), FRCNN_ERR_INVALID_ARG, "[2]");
    frcnn_image_free(img);
    frcnn_ctx_free(ctx);
}

static void test_prepare_bilinear_upscale(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* 2x2 -> 4x4. With align_corners=False output i samples input (i + 0.5) / 2 - 0.5, clamped at 0:
     * -0.25 -> 0, 0.25, 0.75, 1.25 -> index 1 (the last). Along one axis [a, b] becomes
     * [a, 0.75a + 0.25b, 0.25a + 0.75b, b]; torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear",
     * align_corners=False) of [[1, 2], [3, 4]] is [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5],
     * [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]], which this rule reproduces. */
    const float b[4] = {0, 100, 200, 255}, g[4] = {10, 10, 10, 10}, r[4] = {255, 0, 0, 255};
    /* B = [[0, 100], [200, 255]]:
     *   row 0 = [0, 25, 75, 100], row 3 = [200, 213.75, 241.25, 255],
     *   row 1 = 0.75 row 0 + 0.25 row 3 = [50, 72.1875, 116.5625, 138.75],
     *   row 2 = 0.25 row 0 + 0.75 row 3 = [150, 166.5625, 199.6875, 216.25]. */
    const float up_b[16] = {0, 25, 75, 100, 50, 72.1875f, 116.5625f, 138.75f,
                            150, 166.5625f, 199.6875f, 216.25f, 200, 213.75f, 241.25f, 255};
    /* R = [[255, 0], [0, 255]]:
     *   row 0 = [255, 191.25, 63.75, 0], row 3 = [0, 63.75, 191.25, 255],
     *   row 1 = [191.25, 159.375, 95.625, 63.75], row 2 = [63.75, 95.625, 159.375, 191.25]. */
    const float up_r[16] = {255, 191.25f, 63.75f, 0, 191.25f, 159.375f, 95.625f, 63.75f,
                            63.75f, 95.625f, 159.375f, 191.25f, 0, 63.75f, 191.25f, 255};
    frcnn_image *img = image_from(ctx, 2, 2, r, g, b);
    frcnn_config c = norm_config(4, 4);
    float want[48], want_flip[48];
    for (int i = 0; i < 16; i++) {
        const int y = i / 4, x = i % 4, m = y * 4 + (3 - x);
        want[i] = (up_b[i] - 100) / 2;
        want[16 + i] = (10 - 20) / 0.5f;
        want[32 + i] = (up_r[i] - 7.5f) / 4;
        want_flip[m] = want[i];
        want_flip[16 + m] = want[16 + i];
        want_flip[32 + m] = want[32 + i];
    }
    frcnn_tensor *t = NULL;
    float s = 0;
    assert_int_equal(frcnn_image_prepare(ctx, &c, img, false, &t, &s), FRCNN_OK);
    assert_true(s == 2.0f);
    expect_dims(t, 4, 4);
    tu_assert_close("2x bilinear", frcnn_tensor_data(t), want, 48, 1e-5, 1e-6);
    frcnn_tensor_free(t);
    assert_int_equal(frcnn_image_prepare(ctx, &c, img, true, &t, &s), FRCNN_OK);
    tu_assert_close("2x bilinear flipped", frcnn_tensor_data(t), want_flip, 48, 1e-5, 1e-6);
    frcnn_tensor_free(t);
    frcnn_image_free(img);

    /* A 2-wide, 1-tall image to 4 x 2 (short side 1 -> 2): both rows are the one input row, resampled as above:
     * B [40, 80] -> [40, 50, 70, 80]. */
    const float b2[2] = {40, 80}, z2[2] = {0, 0};
    img = image_from(ctx, 2, 1, z2, z2, b2);
    c = norm_config(2, 4);
    assert_int_equal(frcnn_image_prepare(ctx, &c, img, false, &t, &s), FRCNN_OK);
    expect_dims(t, 2, 4);
    const float want2[8] = {-30, -25, -15, -10, -30, -25, -15, -10}; /* (v - 100) / 2 */
    tu_assert_close("2x bilinear row", frcnn_tensor_data(t), want2, 8, 1e-5, 1e-6);
    frcnn_tensor_free(t);
    frcnn_image_free(img);
    frcnn_ctx_free(ctx);
}

static void test_prepare_downscale(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* 4x4 -> 2x2: output i samples input 2i + 0.5, the mean of each 2x2 block (no antialiasing, as PyTorch's
     * bilinear with antialias=False and OpenCV's INTER_LINEAR). B = 16y + 4x: blocks average to
     * (0+4+16+20)/4 = 10, (8+12+24+28)/4 = 18, (32+36+48+52)/4 = 42, (40+44+56+60)/4 = 50. */
    float b[16], g[16], r[16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            b[y * 4 + x] = (float)(16 * y + 4 * x);
            g[y * 4 + x] = (float)(x == y ? 200 : 0);
            r[y * 4 + x] = 9;
        }
    frcnn_image *img = image_from(ctx, 4, 4, r, g, b);
    frcnn_config c = norm_config(2, 2);
    frcnn_tensor *t = NULL;
    float s = 0;
    assert_int_equal(frcnn_image_prepare(ctx, &c, img, false, &t, &s), FRCNN_OK);
    assert_true(s == 0.5f);
    expect_dims(t, 2, 2);
    /* G blocks: [[200, 0], [0, 200]] on the diagonal, two of four pixels -> 100 and 0. */
    const float want[12] = {(10 - 100) / 2.0f, (18 - 100) / 2.0f, (42 - 100) / 2.0f, (50 - 100) / 2.0f,
                            (100 - 20) / 0.5f, (0 - 20) / 0.5f,   (0 - 20) / 0.5f,   (100 - 20) / 0.5f,
                            (9 - 7.5f) / 4,    (9 - 7.5f) / 4,    (9 - 7.5f) / 4,    (9 - 7.5f) / 4};
    tu_assert_close("2x downscale", frcnn_tensor_data(t), want, 12, 1e-5, 1e-6);
    frcnn_tensor_free(t);
    frcnn_image_free(img);

    /* A constant image stays constant at any scale, exactly. */
    enum { W = 37, H = 23 };
    float cb[W * H], cg[W * H], cr[W * H];
    for (int i = 0; i < W * H; i++) {
        cb[i] = 77;
        cg[i] = 5;
        cr[i] = 200;
    }
    img = image_from(ctx, W, H, cr, cg, cb);
    const int sides[][2] = {{7, 100}, {5, 9}, {22, 1000}, {1, 2}, {40, 60}};
    for (size_t k = 0; k < sizeof sides / sizeof sides[0]; k++) {
        c = norm_config(sides[k][0], sides[k][1]);
        int pw, ph;
        float ps;
        assert_int_equal(frcnn_image_prepared_size(ctx, &c, W, H, &pw, &ph, &ps), FRCNN_OK);
        assert_int_equal(frcnn_image_prepare(ctx, &c, img, k % 2 == 1, &t, &s), FRCNN_OK);
        assert_true(s == ps);
        expect_dims(t, ph, pw);
        const float *d = frcnn_tensor_data(t);
        const size_t plane = (size_t)pw * ph;
        for (size_t i = 0; i < plane; i++) {
            if (d[i] != (77 - 100) / 2.0f || d[plane + i] != (5 - 20) / 0.5f || d[2 * plane + i] != (200 - 7.5f) / 4) {
                print_error("constant image at scale %g: [%zu] = %g %g %g\n", (double)s, i, (double)d[i],
                            (double)d[plane + i], (double)d[2 * plane + i]);
                fail();
            }
        }
        frcnn_tensor_free(t);
    }
    frcnn_image_free(img);
    frcnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------------------------------------------------------
 * frcnn_dataset_load_sample
 * ------------------------------------------------------------------------------------------------------------- */

/* A tree "name" whose trainval split is one 20 x 15 PNG, <id>.png, with objects o[0 .. n); opened as a dataset.
 * voc receives the VOC2007 folder. */
static frcnn_dataset *one_image_dataset(env *e, const char *name, const char *id, const tobj *o, size_t n, char *voc,
                                        size_t voc_cap)
{
    char root[512], file[64], list[64];
    new_tree(name, root, sizeof root, voc, voc_cap);
    snprintf(file, sizeof file, "%s.png", id);
    snprintf(list, sizeof list, "%s\n", id);
    char image[96];
    snprintf(image, sizeof image, "JPEGImages/%s", file);
    put_image(voc, image, 20, 15);
    put_annotation(voc, id, file, 20, 15, o, n, NULL);
    put_text(voc, "ImageSets/Main/trainval.txt", list);
    frcnn_voc_params p = frcnn_voc_params_default();
    p.root = root;
    frcnn_dataset *ds = NULL;
    assert_int_equal(frcnn_voc_open(e->ctx, &p, &ds), FRCNN_OK);
    return ds;
}

static void test_load_sample(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char voc[512], path[1024];
    /* 0-based: dog (1, 2, 9, 11), difficult person (4, 4, 19, 14), cat (0, 0, 0, 0) (one pixel). */
    const tobj o[] = {{"dog", 2, 3, 10, 12, 0}, {"person", 5, 5, 20, 15, 1}, {"cat", 1, 1, 1, 1, 0}};
    frcnn_dataset *ds = one_image_dataset(&e, "sample", "a1", o, 3, voc, sizeof voc);
    /* short 30 over 15: scale 2, 40x30. */
    frcnn_config c = norm_config(30, 60);
    frcnn_image *img = NULL;
    assert_int_equal(frcnn_image_load(e.ctx, joinp(path, sizeof path, voc, "JPEGImages/a1.png"), &img), FRCNN_OK);
    float gt[4 * 8];
    int32_t labels[8];
    const int dog = voc_label("dog"), person = voc_label("person"), cat = voc_label("cat");
    for (int flip = 0; flip <= 1; flip++)
        for (int keep = 0; keep <= 1; keep++) {
            frcnn_tensor *t = NULL, *ref = NULL;
            float s = 0, rs = 0;
            size_t n = 99;
            memset(gt, 0xff, sizeof gt);
            assert_int_equal(
                frcnn_dataset_load_sample(e.ctx, ds, 0, flip, keep, &c, &t, &s, gt, labels, 8, &n), FRCNN_OK);
            assert_true(s == 2.0f);
            expect_dims(t, 30, 40);
            /* The pixels are frcnn_image_prepare's of the file, flipped too. */
            assert_int_equal(frcnn_image_prepare(e.ctx, &c, img, flip, &ref, &rs), FRCNN_OK);
            tu_assert_identical("sample image", frcnn_tensor_data(t), frcnn_tensor_data(ref), 3 * 30 * 40);
            frcnn_tensor_free(ref);
            frcnn_tensor_free(t);
            /* Not flipped: the box times 2. Flipped: (W - x2 - 1, y1, W - x1 - 1, y2) times 2 with W = 20:
             * dog (20-9-1, 2, 20-1-1, 11) = (10, 2, 18, 11) -> (20, 4, 36, 22); person (0, 4, 15, 14) -> (0, 8, 30,
             * 28); cat (19, 0, 19, 0) -> (38, 0, 38, 0). */
            const float plain[3][4] = {{2, 4, 18, 22}, {8, 8, 38, 28}, {0, 0, 0, 0}};
            const float flipped[3][4] = {{20, 4, 36, 22}, {0, 8, 30, 28}, {38, 0, 38, 0}};
            const int all_labels[3] = {dog, person, cat};
            float want[12];
            int32_t want_labels[3];
            size_t m = 0;
            for (int k = 0; k < 3; k++) {
                if (k == 1 && !keep)
                    continue;
                memcpy(want + 4 * m, flip ? flipped[k] : plain[k], sizeof plain[k]);
                want_labels[m++] = all_labels[k];
            }
            assert_int_equal(n, m);
            tu_assert_identical(flip ? "flipped gt" : "gt", gt, want, 4 * m);
            for (size_t k = 0; k < m; k++)
                assert_int_equal(labels[k], want_labels[k]);
        }
    /* Capacity: 2 objects without the difficult one fit in 2, not in 1; 3 with it do not fit in 2. */
    frcnn_tensor *t = NULL;
    float s;
    size_t n;
    assert_int_equal(frcnn_dataset_load_sample(e.ctx, ds, 0, false, false, &c, &t, &s, gt, labels, 2, &n), FRCNN_OK);
    assert_int_equal(n, 2);
    frcnn_tensor_free(t);
    t = NULL;
    tu_expect_error_msg(e.ctx, frcnn_dataset_load_sample(e.ctx, ds, 0, false, false, &c, &t, &s, gt, labels, 1, &n),
                        FRCNN_ERR_INVALID_ARG, "2 objects");
    tu_expect_error_msg(e.ctx, frcnn_dataset_load_sample(e.ctx, ds, 0, false, true, &c, &t, &s, gt, labels, 2, &n),
                        FRCNN_ERR_INVALID_ARG, "3 objects");
    assert_null(t);
    /* Bad arguments. */
    assert_int_equal(frcnn_dataset_load_sample(NULL, ds, 0, false, false, &c, &t, &s, gt, labels, 8, &n),
                     FRCNN_ERR_INVALID_ARG);
    tu_expect_error(e.ctx, frcnn_dataset_load_sample(e.ctx, NULL, 0, false, false, &c, &t, &s, gt, labels, 8, &n),
                    FRCNN_ERR_INVALID_ARG);
    tu_expect_error(e.ctx, frcnn_dataset_load_sample(e.ctx, ds, 0, false, false, &c, &t, &s, NULL, labels, 8, &n),
                    FRCNN_ERR_INVALID_ARG);
    tu_expect_error(e.ctx, frcnn_dataset_load_sample(e.ctx, ds, 1, false, false, &c, &t, &s, gt, labels, 8, &n),
                    FRCNN_ERR_INVALID_ARG);
    assert_null(t);
    frcnn_image_free(img);
    frcnn_dataset_free(ds);
    env_close(&e);
}

/* With the continuous convention a box ends at the far edge of its last pixel: (x1, y1, x2 + 1, y2 + 1), and the
 * mirror of (x1, x2) is (W - x2, W - x1) in those coordinates. */
static void test_load_sample_continuous(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char voc[512];
    /* 0-based: dog (1, 2, 9, 11), person (4, 4, 19, 14) up to the last column and row, cat (0, 0, 0, 0). */
    const tobj o[] = {{"dog", 2, 3, 10, 12, 0}, {"person", 5, 5, 20, 15, 0}, {"cat", 1, 1, 1, 1, 0}};
    frcnn_dataset *ds = one_image_dataset(&e, "sample_continuous", "c1", o, 3, voc, sizeof voc);
    /* Scale 2: a 40 x 30 prepared image. */
    frcnn_config c = norm_config(30, 60);
    c.box_convention = FRCNN_BOXES_CONTINUOUS;
    /* Not flipped: (x1, y1, x2 + 1, y2 + 1) times 2: dog (1, 2, 10, 12) -> (2, 4, 20, 24); person (4, 4, 20, 15)
     * -> (8, 8, 40, 30), the whole width and height; cat (0, 0, 1, 1) -> (0, 0, 2, 2).
     * Flipped, W = 20: (W - (x2 + 1), y1, W - x1, y2 + 1) times 2: dog (10, 2, 19, 12) -> (20, 4, 38, 24); person
     * (0, 4, 16, 15) -> (0, 8, 32, 30); cat (19, 0, 20, 1) -> (38, 0, 40, 2). */
    const float plain[12] = {2, 4, 20, 24, 8, 8, 40, 30, 0, 0, 2, 2};
    const float flipped[12] = {20, 4, 38, 24, 0, 8, 32, 30, 38, 0, 40, 2};
    const int32_t want_labels[3] = {voc_label("dog"), voc_label("person"), voc_label("cat")};
    float gt[4 * 4];
    int32_t labels[4];
    for (int flip = 0; flip <= 1; flip++) {
        frcnn_tensor *t = NULL;
        float sc = 0;
        size_t n = 99;
        memset(gt, 0xff, sizeof gt);
        assert_int_equal(frcnn_dataset_load_sample(e.ctx, ds, 0, flip, false, &c, &t, &sc, gt, labels, 4, &n),
                         FRCNN_OK);
        assert_true(sc == 2.0f);
        expect_dims(t, 30, 40);
        frcnn_tensor_free(t);
        assert_int_equal(n, 3);
        tu_assert_identical(flip ? "continuous flipped gt" : "continuous gt", gt, flip ? flipped : plain, 12);
        for (size_t k = 0; k < 3; k++)
            assert_int_equal(labels[k], want_labels[k]);
    }
    /* The flipped boxes are the mirror images in the prepared image's width: x1' = 40 - x2, x2' = 40 - x1. */
    for (int k = 0; k < 3; k++) {
        assert_true(flipped[4 * k] == 40 - plain[4 * k + 2] && flipped[4 * k + 2] == 40 - plain[4 * k]);
        assert_true(flipped[4 * k + 1] == plain[4 * k + 1] && flipped[4 * k + 3] == plain[4 * k + 3]);
    }
    frcnn_dataset_free(ds);
    env_close(&e);
}

static void test_load_sample_bad_images(void **state)
{
    (void)state;
    env e;
    env_open(&e);
    char root[512], voc[512], path[1024];
    new_tree("badimages", root, sizeof root, voc, sizeof voc);
    const tobj o[] = {{"dog", 2, 3, 10, 12, 0}};
    /* The annotation says 21x15, the picture is 20x15. */
    put_image(voc, "JPEGImages/wrong.png", 20, 15);
    put_annotation(voc, "wrong", NULL, 21, 15, o, 1, NULL);
    /* A .jpg that is text (the annotation has the size, so opening does not read it). */
    put_text(voc, "JPEGImages/text.jpg", "this is not a JPEG file\n");
    put_annotation(voc, "text", NULL, 20, 15, o, 1, NULL);
    /* A truncated PNG. */
    put_image(voc, "JPEGImages/cut.png", 20, 15);
    joinp(path, sizeof path, voc, "JPEGImages/cut.png");
    assert_int_equal(truncate(path, 40), 0);
    put_annotation(voc, "cut", NULL, 20, 15, o, 1, NULL);
    /* Removed after the dataset was opened. */
    put_image(voc, "JPEGImages/gone.jpg", 20, 15);
    put_annotation(voc, "gone", NULL, 20, 15, o, 1, NULL);
    put_text(voc, "ImageSets/Main/trainval.txt", "wrong\ntext\ncut\ngone\n");
    frcnn_voc_params p = frcnn_voc_params_default();
    p.root = root;
    frcnn_dataset *ds = NULL;
    assert_int_equal(frcnn_voc_open(e.ctx, &p, &ds), FRCNN_OK);
    joinp(path, sizeof path, voc, "JPEGImages/gone.jpg");
    assert_int_equal(unlink(path), 0);
    frcnn_config c = norm_config(30, 60);
    float gt[8];
    int32_t labels[2];
    frcnn_tensor *t = NULL;
    float s;
    size_t n;
    tu_expect_error_msg(e.ctx, frcnn_dataset_load_sample(e.ctx, ds, 0, false, false, &c, &t, &s, gt, labels, 2, &n),
                        FRCNN_ERR_MISMATCH, joinp(path, sizeof path, voc, "JPEGImages/wrong.png"));
    const char *needles[] = {"20x15", "21x15", NULL};
    assert_int_equal(frcnn_dataset_load_sample(e.ctx, ds, 0, true, false, &c, &t, &s, gt, labels, 2, &n),
                     FRCNN_ERR_MISMATCH);
    expect_msg_has(e.ctx, needles);
    tu_expect_error_msg(e.ctx, frcnn_dataset_load_sample(e.ctx, ds, 1, false, false, &c, &t, &s, gt, labels, 2, &n),
                        FRCNN_ERR_FORMAT, joinp(path, sizeof path, voc, "JPEGImages/text.jpg"));
    tu_expect_error_msg(e.ctx, frcnn_dataset_load_sample(e.ctx, ds, 2, false, false, &c, &t, &s, gt, labels, 2, &n),
                        FRCNN_ERR_FORMAT, joinp(path, sizeof path, voc, "JPEGImages/cut.png"));
    tu_expect_error_msg(e.ctx, frcnn_dataset_load_sample(e.ctx, ds, 3, false, false, &c, &t, &s, gt, labels, 2, &n),
                        FRCNN_ERR_IO, joinp(path, sizeof path, voc, "JPEGImages/gone.jpg"));
    assert_null(t);
    frcnn_dataset_free(ds);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_voc2007_verbatim),
        cmocka_unit_test(test_parse_parts_are_not_objects),
        cmocka_unit_test(test_parse_xml_decorations),
        cmocka_unit_test(test_parse_tool_styles),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_depth_limit),
        cmocka_unit_test(test_parse_truncations_and_bit_flips),
        cmocka_unit_test(test_voc_open_standard),
        cmocka_unit_test(test_voc_open_classes),
        cmocka_unit_test(test_voc_open_missing_files),
        cmocka_unit_test(test_voc_open_box_outside),
        cmocka_unit_test(test_voc_open_size_from_image),
        cmocka_unit_test(test_voc_fingerprint),
        cmocka_unit_test(test_voc_null_arguments),
        cmocka_unit_test(test_voc_open_allocation_failures),
        cmocka_unit_test(test_prepared_size),
        cmocka_unit_test(test_prepare_identity_and_flip),
        cmocka_unit_test(test_prepare_bilinear_upscale),
        cmocka_unit_test(test_prepare_downscale),
        cmocka_unit_test(test_load_sample),
        cmocka_unit_test(test_load_sample_continuous),
        cmocka_unit_test(test_load_sample_bad_images),
    };
    return cmocka_run_group_tests_name("voc", tests, group_setup, group_teardown);
}
