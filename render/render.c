/* render.c - small CPU triangle-mesh renderer for face-mesh overlays (C99 plus, on x86-64,
 * GCC/Clang SIMD intrinsics and target attributes; libc/libm only).
 *
 * int render_abi_version(void);
 *     Returns RENDER_ABI_VERSION (7). Bumped whenever an exported function's signature or
 *     semantics change, or one is added, so the Python binding can detect a stale
 *     librender.so. Version 2 added render_maps, version 3 model_fit, version 4 the
 *     compressed leaf rows of cascade_refine, version 5 replaced csr_apply3 by
 *     loop_level3, version 6 dropped its n_cols (always n_even), version 7 added
 *     one_euro_step; render_mesh is unchanged.
 *
 * int render_mesh(uint8_t *image, int height, int width,
 *                 const float *vertices, int n_vertices,
 *                 const int32_t *triangles, int n_triangles,
 *                 const float *vertex_colors, const float *base_color, float alpha,
 *                 const float *light_dir, float ambient, float diffuse,
 *                 float specular, float shininess,
 *                 float *zbuffer, int32_t *idbuffer);
 *
 *   image          BGR uint8, C-contiguous (height, width, 3); blended in place.
 *   vertices       float32 (n_vertices, 3): x right, y down (pixels, pixel centres at
 *                  integers), z depth with LARGER z FARTHER from the camera.
 *                  Orthographic: the screen position is (x, y).
 *   triangles      int32 (n_triangles, 3) vertex indices.
 *   vertex_colors  float32 (n_vertices, 3) BGR in 0..1, interpolated; or NULL to use
 *   base_color     float32 (3,) BGR in 0..1 (NULL: light grey).
 *   alpha          pixel = (1 - alpha) * old + alpha * shaded, rounded, clamped 0..255.
 *   light_dir      float32 (3,), direction from the surface TOWARD the light (need not
 *                  be unit length; NULL or zero: headlight (0, 0, -1)).
 *   ambient, diffuse, specular, shininess
 *                  colour * (ambient + diffuse * max(0, N.L)) + specular * max(0, N.H)^shininess
 *                  (Lambert + white Blinn-Phong, viewer along -z; two-sided: N is flipped
 *                  toward the viewer). N: per-vertex normals from area-weighted face normals;
 *                  lighting is evaluated per vertex and interpolated (Gouraud).
 *   zbuffer, idbuffer
 *                  float32 / int32 scratch of height*width, kept in the signature for ABI
 *                  compatibility (must be non-NULL). The renderer now keeps its own depth
 *                  buffer, sized to the bounding box of the mesh, so they are not touched.
 *
 *   A pixel (row i, col j) is covered when its centre (x=j, y=i) is inside a triangle,
 *   with a top-left rule for centres exactly on an edge, so triangles sharing an edge
 *   never both draw, nor both skip, a pixel. Degenerate triangles and triangles with a
 *   non-finite vertex are skipped. The nearest (smallest interpolated z) surface wins
 *   (on equal z the first triangle), and only it is shaded and blended (once per pixel),
 *   so hidden surfaces never show through when alpha < 1.
 *
 *   Returns RENDER_OK (0), or without touching the image:
 *   RENDER_ERR_ARGS (-1)  null pointer / negative size,
 *   RENDER_ERR_INDEX (-2) a triangle index outside [0, n_vertices),
 *   RENDER_ERR_NOMEM (-3) out of memory (scratch buffers).
 *
 * int render_maps(int height, int width,
 *                 const float *vertices, int n_vertices,
 *                 const int32_t *triangles, int n_triangles,
 *                 const float *attributes, int n_channels,
 *                 float *depth, float *out, uint8_t *mask, int32_t *tri_out, int32_t *box);
 *
 *   Rasterises exactly like render_mesh (same vertices, coverage rule, depth test and
 *   nearest surface per pixel; no shading) and writes per-pixel maps instead of blending:
 *   attributes     float32 (n_vertices, n_channels): any per-vertex values (colours, model
 *                  or image coordinates, ...); may be NULL when out is NULL.
 *   depth          float32 (height, width) or NULL: the visible surface's interpolated z
 *                  (the vertices' units, larger farther); INFINITY where uncovered.
 *   out            float32 (height, width, n_channels) or NULL: the attributes interpolated
 *                  with the visible triangle's barycentric weights (orthographic view, so
 *                  no perspective correction); 0 where uncovered.
 *   mask           uint8 (height, width) or NULL: 1 where covered, else 0.
 *   tri_out        int32 (height, width) or NULL: index of the visible triangle, else -1.
 *   box            int32 (4,), required: receives x0, y0, x1, y1 (x1, y1 exclusive), the
 *                  bounding box of the finite vertices clipped to the image. Only the
 *                  pixels inside it are written (all of them, covered or not); the rest of
 *                  each output is left untouched. An empty box (0, 0, 0, 0) means that no
 *                  pixel centre can be covered and nothing was written.
 *   Outputs are C-contiguous with row stride width (times n_channels for out). Returns
 *   RENDER_OK or the error codes of render_mesh (RENDER_ERR_ARGS also for out without
 *   attributes or channels), having written no output pixel on error.
 *   Speed: no normals and no shading, so the triangle pass is cheaper than render_mesh's;
 *   2-4 channels are interpolated with one SSE operation per pixel (same values as the
 *   scalar loop).
 *
 * Speed (dense face meshes: ~55k triangles over ~40k pixels, so most triangles cover 0-2
 * pixel centres and per-triangle work dominates): x86-64 CPUs with AVX2 (checked at run
 * time; the library itself is plain x86-64) rasterise each triangle as one 2x2 pixel tile
 * in 4 double lanes, branch-free; triangles whose box needs more tiles take several, and
 * where the CPU also has AVX-512 (F, DQ) those at least 3 pixel centres wide take 4x2
 * tiles in 8 double lanes instead (the coarser overlay mesh and large faces have many:
 * the 1080p overlay in the video benchmark took 3.0 instead of 4.25 ms; -DRENDER_NO_AVX512
 * leaves them out). The other passes use SSE2, which every x86-64 has. Other CPUs (or
 * -DRENDER_NO_SIMD) take scalar code with the same coverage; all paths give identical images.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(RENDER_NO_SIMD)
#include <immintrin.h>
#define RENDER_X86 1      /* SSE2: part of x86-64 */
#ifndef RENDER_NO_AVX2
#define RENDER_AVX2 1     /* used only if the CPU has it */
#ifndef RENDER_NO_AVX512
#define RENDER_AVX512 1   /* 4x2 tiles for wider triangles, only if the CPU has AVX-512 F + DQ */
#endif
#endif
#endif

#define RENDER_ABI_VERSION 7
#define RENDER_OK 0
#define RENDER_ERR_ARGS (-1)
#define RENDER_ERR_INDEX (-2)
#define RENDER_ERR_NOMEM (-3)
#define SPEC_LUT 1024 /* powf per vertex costs more than the rest of the shading: tabulate it */
#define PREFETCH 16   /* triangles ahead: vertex records are 1.8 MB, read in mesh order */

int render_abi_version(void) { return RENDER_ABI_VERSION; }

/* One cache line per vertex with everything the triangle pass reads or updates, because
 * in mesh order the triangles sharing a vertex are thousands apart (cache misses). */
typedef struct {
    float p[4];      /* x, y, z, 0: the float copy the normals are computed from */
    float n[4];      /* area-weighted normal accumulator */
    double x, y, z;  /* double copies for the exact edge functions and depth */
    int16_t box[4];  /* first column, first row, -last column, -last row of the pixel
                        centres this vertex could reach (ceil/floor, clipped to the image) */
} Vert;

/* Depth buffer entry for one pixel of the mesh's bounding box: depth, barycentric weights
 * of vertices b and c, triangle (-1: none). Keeping the weights saves recomputing them per
 * pixel in the blend pass, which would touch three more vertex records per pixel. */
typedef struct { float z, w1, w2; int32_t t; } Frag;

typedef struct {
    const int32_t *tris;
    const unsigned char *ok;  /* per vertex: all coordinates finite */
    Vert *V;
    float *S;                 /* shaded colour per vertex (float4): compact for pass 2 */
    Frag *F;                  /* F + y * fs + x is pixel (x, y); three padding columns and a row */
    long fs;
    int W, H;                 /* image size */
    int wide;                 /* AVX-512: triangles wider than 2 pixel centres take 4x2 tiles */
} Ctx;

static inline float minf(float a, float b) { return a < b ? a : b; }
static inline float maxf(float a, float b) { return a > b ? a : b; }
/* ceil/floor of v after clamping v to [lo-1, hi+1] (so the int conversion is safe). */
static inline int ceil_in(float v, int lo, int hi)
{
    v = v > lo - 1 ? v : lo - 1; v = v < hi + 1 ? v : hi + 1;
    int i = (int)v; return i + (i < v);
}
static inline int floor_in(float v, int lo, int hi)
{
    v = v > lo - 1 ? v : lo - 1; v = v < hi + 1 ? v : hi + 1;
    int i = (int)v; return i - (i > v);
}

/* Largest index as unsigned (negative ones become huge); a plain loop that vectorises. */
static inline uint32_t max_index_body(const int32_t *t, long n)
{
    uint32_t m = 0;
    for (long k = 0; k < n; k++) m = (uint32_t)t[k] > m ? (uint32_t)t[k] : m;
    return m;
}
static uint32_t max_index(const int32_t *t, long n) { return max_index_body(t, n); }
#ifdef RENDER_AVX2
__attribute__((target("avx2"))) static uint32_t max_index_avx2(const int32_t *t, long n) { return max_index_body(t, n); }
#endif

/* Exact coverage. The edge function of a->b at pixel p is computed from the offsets
 * a' = a - p, b' = b - p as a'x * b'y - a'y * b'x. With float inputs the offsets and both
 * products are exact in double, so its sign is exact and does not depend on the formula;
 * and as the neighbour triangle evaluates b'x * a'y - b'y * a'x, it gets the bit-exact
 * negation even when rounding does occur (huge coordinates), so shared edges stay
 * watertight. side() returns the sign, with the top-left rule for zeros: a centre on an
 * edge belongs to the triangle whose inward normal points right, or down for a
 * horizontal edge; for the neighbour (reversed edge) exactly the opposite holds. A pixel
 * is covered iff all three sides agree (and are not 0: degenerate triangle). */
static inline int side(double e, double dx, double dy)
{
    if (e != 0) return e > 0 ? 1 : -1;
    return ((dy < 0) | ((dy == 0) & (dx > 0))) - ((dy > 0) | ((dy == 0) & (dx < 0)));
}

/* Coverage and depth test of one pixel (scalar path, and centres exactly on an edge). */
static void pixel_exact(const Ctx *c, int t, const Vert *A, const Vert *B, const Vert *C, int px, int py)
{
    double ax = A->x - px, ay = A->y - py, bx = B->x - px, by = B->y - py, cx = C->x - px, cy = C->y - py;
    double eab = ax * by - ay * bx, ebc = bx * cy - by * cx, eca = cx * ay - cy * ax;
    int s = side(ebc, C->x - B->x, C->y - B->y);
    if (s == 0 || side(eca, A->x - C->x, A->y - C->y) != s || side(eab, B->x - A->x, B->y - A->y) != s) return;
    double ia = 1.0 / (eab + ebc + eca);   /* the three edge values sum to twice the area */
    float z = (float)((ebc * A->z + eca * B->z + eab * C->z) * ia);
    Frag *f = c->F + (long)py * c->fs + px;
    if (z < f->z) { f->z = z; f->t = t; f->w1 = (float)(eca * ia); f->w2 = (float)(eab * ia); }
}

/* Scalar triangle pass: normals (if asked) and depth, one pixel at a time. */
static void raster_scalar(const Ctx *c, int n_triangles, int normals)
{
    for (int t = 0; t < n_triangles; t++) {
        const int32_t *tri = c->tris + 3L * t;
        if (!(c->ok[tri[0]] & c->ok[tri[1]] & c->ok[tri[2]])) continue;
        Vert *A = c->V + tri[0], *B = c->V + tri[1], *C = c->V + tri[2];
        if (normals) {
            float ux = B->p[0] - A->p[0], uy = B->p[1] - A->p[1], uz = B->p[2] - A->p[2];
            float wx = C->p[0] - A->p[0], wy = C->p[1] - A->p[1], wz = C->p[2] - A->p[2];
            float nx = uy * wz - uz * wy, ny = uz * wx - ux * wz, nz = ux * wy - uy * wx;
            Vert *abc[3] = {A, B, C};
            for (int k = 0; k < 3; k++) { abc[k]->n[0] += nx; abc[k]->n[1] += ny; abc[k]->n[2] += nz; }
        }
        /* pixel centres inside the triangle's box, clipped to the image (any image size) */
        int x0 = ceil_in(minf(minf(A->p[0], B->p[0]), C->p[0]), 0, c->W - 1);
        int x1 = floor_in(maxf(maxf(A->p[0], B->p[0]), C->p[0]), 0, c->W - 1);
        int y0 = ceil_in(minf(minf(A->p[1], B->p[1]), C->p[1]), 0, c->H - 1);
        int y1 = floor_in(maxf(maxf(A->p[1], B->p[1]), C->p[1]), 0, c->H - 1);
        x0 = x0 > 0 ? x0 : 0; x1 = x1 < c->W - 1 ? x1 : c->W - 1;
        y0 = y0 > 0 ? y0 : 0; y1 = y1 < c->H - 1 ? y1 : c->H - 1;
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) pixel_exact(c, t, A, B, C, x, y);
    }
}

typedef struct { float L[3], H[3], ambient, diffuse, lut[SPEC_LUT + 2]; const float *colors, *base; } Light;

/* Gouraud: light each vertex once (into S). Face meshes this dense have (sub-)pixel
 * triangles, where per-pixel lighting looks the same but costs a normalisation per pixel
 * instead of per vertex. */
static void shade_scalar(const Vert *V, float *S, int v0, int n_vertices, const Light *lt)
{
    for (int v = v0; v < n_vertices; v++) {
        const float *n = V[v].n;
        float len2 = n[0] * n[0] + n[1] * n[1] + n[2] * n[2];
        float n0 = 0, n1 = 0, n2 = -1;
        if (len2 > 1e-30f && len2 < INFINITY) {
            float s = 1.0f / sqrtf(len2);
            s = n[2] > 0 ? -s : s; /* two-sided: face the viewer (toward -z) */
            n0 = n[0] * s; n1 = n[1] * s; n2 = n[2] * s;
        }
        float ndl = n0 * lt->L[0] + n1 * lt->L[1] + n2 * lt->L[2];
        float lit = lt->ambient + lt->diffuse * maxf(ndl, 0);
        float f = minf(maxf(n0 * lt->H[0] + n1 * lt->H[1] + n2 * lt->H[2], 0), 1) * SPEC_LUT;
        int k = (int)f;
        float spec = lt->lut[k] + (f - k) * (lt->lut[k + 1] - lt->lut[k]);
        const float *col = lt->colors ? lt->colors + 3L * v : lt->base;
        for (int ch = 0; ch < 3; ch++) S[4L * v + ch] = col[ch] * lit + spec;
        S[4L * v + 3] = 0;
    }
}

static inline uint8_t blend(uint8_t old, float shaded, float alpha)
{
    float v = old + alpha * (255.0f * shaded - old);
    v = v > 0.0f ? v : 0.0f; /* also maps NaN (e.g. NaN vertex colours) to 0 */
    v = v < 255.0f ? v : 255.0f;
    return (uint8_t)(int)(v + 0.5f);
}

/* Blend the single visible fragment of each covered pixel of rows y0..y1, columns x0..x1. */
static void resolve_scalar(uint8_t *image, int width, const Ctx *c, int x0, int y0, int x1, int y1, float alpha)
{
    for (int y = y0; y <= y1; y++) {
        const Frag *fr = c->F + (long)y * c->fs;
        uint8_t *row = image + (long)y * width * 3;
        for (int x = x0; x <= x1; x++) {
            if (fr[x].t < 0) continue;
            const int32_t *tri = c->tris + 3L * fr[x].t;
            float w1 = fr[x].w1, w2 = fr[x].w2, w0 = 1.0f - w1 - w2;
            const float *sa = c->S + 4L * tri[0], *sb = c->S + 4L * tri[1], *sc = c->S + 4L * tri[2];
            for (int ch = 0; ch < 3; ch++)
                row[3L * x + ch] = blend(row[3L * x + ch], w0 * sa[ch] + w1 * sb[ch] + w2 * sc[ch], alpha);
        }
    }
}

#ifdef RENDER_AVX2
/* two 16-byte halves at unrelated addresses (as _mm256_loadu2_m128, which GCC < 10 lacks) */
__attribute__((target("avx2"), always_inline)) static inline __m256 load2(const float *lo, const float *hi)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
}
__attribute__((target("avx2"), always_inline)) static inline void store2(float *lo, float *hi, __m256 v)
{
    _mm_storeu_ps(lo, _mm256_castps256_ps128(v)); _mm_storeu_ps(hi, _mm256_extractf128_ps(v, 1));
}

/* Rare: candidate pixel centres exactly on an edge go through the exact tie rule. Lane k
 * of a tile `columns` (2 or 4) wide is pixel (x0 + k % columns, y0 + k / columns). */
__attribute__((noinline)) static void ties_exact(const Ctx *c, int t, const Vert *A, const Vert *B, const Vert *C,
                                                 int x0, int y0, int mask, int columns)
{
    for (int k = 0; k < 2 * columns; k++)
        if (mask >> k & 1) pixel_exact(c, t, A, B, C, x0 + k % columns, y0 + k / columns);
}

/* Depth test of triangle t against the 2x2 pixel tile at (tx, ty), lanes in bm (bit k:
 * pixel (tx + (k & 1), ty + (k >> 1))). Branch-free except for edge ties: whether a
 * sub-pixel triangle covers 0, 1 or 2 centres is unpredictable, and a mispredicted branch
 * at the end of this dependency chain costs more than finishing the arithmetic. */
__attribute__((target("avx2"), always_inline)) static inline void
tile_avx2(const Ctx *c, int t, const Vert *A, const Vert *B, const Vert *C, int tx, int ty, int bm)
{
    const __m256d px = _mm256_add_pd(_mm256_set1_pd(tx), _mm256_setr_pd(0, 1, 0, 1));
    const __m256d py = _mm256_add_pd(_mm256_set1_pd(ty), _mm256_setr_pd(0, 0, 1, 1));
    __m256d ax = _mm256_sub_pd(_mm256_broadcast_sd(&A->x), px), ay = _mm256_sub_pd(_mm256_broadcast_sd(&A->y), py);
    __m256d bx = _mm256_sub_pd(_mm256_broadcast_sd(&B->x), px), by = _mm256_sub_pd(_mm256_broadcast_sd(&B->y), py);
    __m256d cx = _mm256_sub_pd(_mm256_broadcast_sd(&C->x), px), cy = _mm256_sub_pd(_mm256_broadcast_sd(&C->y), py);
    __m256d eab = _mm256_sub_pd(_mm256_mul_pd(ax, by), _mm256_mul_pd(ay, bx));
    __m256d ebc = _mm256_sub_pd(_mm256_mul_pd(bx, cy), _mm256_mul_pd(by, cx));
    __m256d eca = _mm256_sub_pd(_mm256_mul_pd(cx, ay), _mm256_mul_pd(cy, ax));
    /* inside: all three signs equal, i.e. min * max > 0; a zero product flags a centre on
     * an edge (or an underflow, which the exact path then sorts out) */
    __m256d pr = _mm256_mul_pd(_mm256_min_pd(eab, _mm256_min_pd(ebc, eca)), _mm256_max_pd(eab, _mm256_max_pd(ebc, eca)));
    int in = _mm256_movemask_pd(_mm256_cmp_pd(pr, _mm256_setzero_pd(), _CMP_GT_OQ)) & bm;
    int tie = _mm256_movemask_pd(_mm256_cmp_pd(pr, _mm256_setzero_pd(), _CMP_EQ_OQ)) & bm;
    if (__builtin_expect(tie, 0)) ties_exact(c, t, A, B, C, tx, ty, tie, 2);

    /* depth and weights of b and c, as pixel_exact computes them */
    __m256d ia = _mm256_div_pd(_mm256_set1_pd(1.0), _mm256_add_pd(_mm256_add_pd(eab, ebc), eca));
    __m256d z = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(ebc, _mm256_broadcast_sd(&A->z)),
                                            _mm256_mul_pd(eca, _mm256_broadcast_sd(&B->z))),
                              _mm256_mul_pd(eab, _mm256_broadcast_sd(&C->z)));
    __m128 zf = _mm256_cvtpd_ps(_mm256_mul_pd(z, ia));
    __m128 wb = _mm256_cvtpd_ps(_mm256_mul_pd(eca, ia)), wc = _mm256_cvtpd_ps(_mm256_mul_pd(eab, ia));
    /* lane k's Frag (z, w1, w2, t); the tile's rows are lanes 0-1 and 2-3 */
    __m256 q = _mm256_insertf128_ps(_mm256_castps128_ps256(zf), wb, 1);
    __m256 r = _mm256_insertf128_ps(_mm256_castps128_ps256(wc), _mm_castsi128_ps(_mm_set1_epi32(t)), 1);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256 n0 = _mm256_permutevar8x32_ps(_mm256_unpacklo_ps(q, r), perm);
    __m256 n1 = _mm256_permutevar8x32_ps(_mm256_unpackhi_ps(q, r), perm);
    static const int32_t lanes[4][8] = {{0, 0, 0, 0, 0, 0, 0, 0}, {-1, -1, -1, -1, 0, 0, 0, 0},
                                        {0, 0, 0, 0, -1, -1, -1, -1}, {-1, -1, -1, -1, -1, -1, -1, -1}};
    /* read-modify-write both rows whole (the padding column/row keeps this in bounds);
     * a fragment is replaced where its lane is inside and nearer (z decides all 4 fields) */
    float *f0 = (float *)(c->F + (long)ty * c->fs + tx), *f1 = f0 + 4 * c->fs;
    __m256 o0 = _mm256_loadu_ps(f0), o1 = _mm256_loadu_ps(f1);
    __m256 m0 = _mm256_and_ps(_mm256_permute_ps(_mm256_cmp_ps(n0, o0, _CMP_LT_OQ), 0), _mm256_loadu_ps((const float *)lanes[in & 3]));
    __m256 m1 = _mm256_and_ps(_mm256_permute_ps(_mm256_cmp_ps(n1, o1, _CMP_LT_OQ), 0), _mm256_loadu_ps((const float *)lanes[in >> 2]));
    _mm256_storeu_ps(f0, _mm256_blendv_ps(o0, n0, m0));
    _mm256_storeu_ps(f1, _mm256_blendv_ps(o1, n1, m1));
}

/* The 10% of triangles whose box needs more than one tile. */
__attribute__((target("avx2"), noinline)) static void big_avx2(const Ctx *c, int t, const Vert *A, const Vert *B,
                                                               const Vert *C, int x0, int y0, int x1, int y1)
{
    for (int ty = y0; ty <= y1; ty += 2)
        for (int tx = x0; tx <= x1; tx += 2)
            tile_avx2(c, t, A, B, C, tx, ty, (tx < x1 ? 15 : 5) & (ty < y1 ? 15 : 3));
}

#ifdef RENDER_AVX512
/* tile_avx2 for a 4x2 tile in 8 double lanes (lane k: pixel (tx + (k & 3), ty + (k >> 2))),
 * the same operations in the same order per pixel, so the same fragments. Each tile row
 * is 4 fragments, read and written whole as one 64-byte row (three padding columns keep it
 * in bounds): 3-19 % faster for large faces than masked loads and stores, which the next
 * tile's overlapping load has to wait for. */
__attribute__((target("avx512f,avx512dq"), always_inline)) static inline void
tile8_avx512(const Ctx *c, int t, const Vert *A, const Vert *B, const Vert *C, int tx, int ty, int bm)
{
    /* lanes (4 bits) -> their fragments' 16 floats (a nibble each) */
    static const uint16_t nibbles[16] = {0x0000, 0x000F, 0x00F0, 0x00FF, 0x0F00, 0x0F0F, 0x0FF0, 0x0FFF,
                                         0xF000, 0xF00F, 0xF0F0, 0xF0FF, 0xFF00, 0xFF0F, 0xFFF0, 0xFFFF};
    const __m512d px = _mm512_add_pd(_mm512_set1_pd(tx), _mm512_setr_pd(0, 1, 2, 3, 0, 1, 2, 3));
    const __m512d py = _mm512_add_pd(_mm512_set1_pd(ty), _mm512_setr_pd(0, 0, 0, 0, 1, 1, 1, 1));
    __m512d ax = _mm512_sub_pd(_mm512_set1_pd(A->x), px), ay = _mm512_sub_pd(_mm512_set1_pd(A->y), py);
    __m512d bx = _mm512_sub_pd(_mm512_set1_pd(B->x), px), by = _mm512_sub_pd(_mm512_set1_pd(B->y), py);
    __m512d cx = _mm512_sub_pd(_mm512_set1_pd(C->x), px), cy = _mm512_sub_pd(_mm512_set1_pd(C->y), py);
    __m512d eab = _mm512_sub_pd(_mm512_mul_pd(ax, by), _mm512_mul_pd(ay, bx));
    __m512d ebc = _mm512_sub_pd(_mm512_mul_pd(bx, cy), _mm512_mul_pd(by, cx));
    __m512d eca = _mm512_sub_pd(_mm512_mul_pd(cx, ay), _mm512_mul_pd(cy, ax));
    __m512d pr = _mm512_mul_pd(_mm512_min_pd(eab, _mm512_min_pd(ebc, eca)), _mm512_max_pd(eab, _mm512_max_pd(ebc, eca)));
    int in = _mm512_cmp_pd_mask(pr, _mm512_setzero_pd(), _CMP_GT_OQ) & bm;
    int tie = _mm512_cmp_pd_mask(pr, _mm512_setzero_pd(), _CMP_EQ_OQ) & bm;
    if (__builtin_expect(tie, 0)) ties_exact(c, t, A, B, C, tx, ty, tie, 4);

    __m512d ia = _mm512_div_pd(_mm512_set1_pd(1.0), _mm512_add_pd(_mm512_add_pd(eab, ebc), eca));
    __m512d z = _mm512_add_pd(_mm512_add_pd(_mm512_mul_pd(ebc, _mm512_set1_pd(A->z)),
                                            _mm512_mul_pd(eca, _mm512_set1_pd(B->z))),
                              _mm512_mul_pd(eab, _mm512_set1_pd(C->z)));
    __m256 zf = _mm512_cvtpd_ps(_mm512_mul_pd(z, ia));
    __m256 wb = _mm512_cvtpd_ps(_mm512_mul_pd(eca, ia)), wc = _mm512_cvtpd_ps(_mm512_mul_pd(eab, ia));
    __m512 q = _mm512_insertf32x8(_mm512_castps256_ps512(zf), wb, 1);
    __m512 r = _mm512_insertf32x8(_mm512_castps256_ps512(wc), _mm256_castsi256_ps(_mm256_set1_epi32(t)), 1);
    /* row 0: (z, w1, w2, t) of lanes 0-3; row 1: of lanes 4-7 (indices >= 16 pick from r) */
    const __m512i row0 = _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
    const __m512i row1 = _mm512_setr_epi32(4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31);
    __m512 n0 = _mm512_permutex2var_ps(q, row0, r), n1 = _mm512_permutex2var_ps(q, row1, r);
    float *f0 = (float *)(c->F + (long)ty * c->fs + tx), *f1 = f0 + 4 * c->fs;
    /* a fragment is replaced where its lane is inside and nearer: z (every 4th float) decides */
    __m512 o0 = _mm512_loadu_ps(f0), o1 = _mm512_loadu_ps(f1);
    int near0 = _mm512_cmp_ps_mask(n0, o0, _CMP_LT_OQ) & 0x1111, near1 = _mm512_cmp_ps_mask(n1, o1, _CMP_LT_OQ) & 0x1111;
    _mm512_storeu_ps(f0, _mm512_mask_blend_ps((__mmask16)((near0 * 0xF) & nibbles[in & 15]), o0, n0));
    _mm512_storeu_ps(f1, _mm512_mask_blend_ps((__mmask16)((near1 * 0xF) & nibbles[in >> 4]), o1, n1));
}

/* big_avx2 in 4x2 tiles, for boxes at least 3 pixel centres wide. */
__attribute__((target("avx512f,avx512dq"), noinline)) static void big_avx512(const Ctx *c, int t, const Vert *A,
                                                                            const Vert *B, const Vert *C,
                                                                            int x0, int y0, int x1, int y1)
{
    for (int ty = y0; ty <= y1; ty += 2)
        for (int tx = x0; tx <= x1; tx += 4) {
            int columns = (1 << (x1 - tx < 3 ? x1 - tx + 1 : 4)) - 1;
            tile8_avx512(c, t, A, B, C, tx, ty, columns | (ty < y1 ? columns << 4 : 0));
        }
}
#endif

__attribute__((target("avx2"), always_inline)) static inline void
tri_avx2(const Ctx *c, Vert *V, const int32_t *tri, int t, int check_ok, int normals)
{
    const int i0 = tri[0], i1 = tri[1], i2 = tri[2];
    if (check_ok && !(c->ok[i0] & c->ok[i1] & c->ok[i2])) return;
    Vert *A = V + i0, *B = V + i1, *C = V + i2;
    if (normals) {
        /* area-weighted normal cross(b - a, c - a): the scalar float operations, 4 lanes */
        __m128 pa = _mm_load_ps(A->p), pb = _mm_load_ps(B->p), pc = _mm_load_ps(C->p);
        __m128 u = _mm_sub_ps(pb, pa), w = _mm_sub_ps(pc, pa);
        __m128 u1 = _mm_shuffle_ps(u, u, _MM_SHUFFLE(3, 0, 2, 1)), w1 = _mm_shuffle_ps(w, w, _MM_SHUFFLE(3, 0, 2, 1));
        __m128 u2 = _mm_shuffle_ps(u, u, _MM_SHUFFLE(3, 1, 0, 2)), w2 = _mm_shuffle_ps(w, w, _MM_SHUFFLE(3, 1, 0, 2));
        __m128 n = _mm_sub_ps(_mm_mul_ps(u1, w2), _mm_mul_ps(u2, w1));
        _mm_store_ps(A->n, _mm_add_ps(_mm_load_ps(A->n), n));
        _mm_store_ps(B->n, _mm_add_ps(_mm_load_ps(B->n), n));
        _mm_store_ps(C->n, _mm_add_ps(_mm_load_ps(C->n), n));
    }

    /* box of pixel centres: lane-wise minimum of (x0, y0, -x1, -y1) */
    __m128i m = _mm_min_epi16(_mm_min_epi16(_mm_loadl_epi64((const __m128i *)A->box),
                                            _mm_loadl_epi64((const __m128i *)B->box)),
                              _mm_loadl_epi64((const __m128i *)C->box));
    uint64_t q = (uint64_t)_mm_cvtsi128_si64(m);
    int x0 = (int16_t)q, y0 = (int16_t)(q >> 16), dx = -(int16_t)(q >> 32) - x0, dy = -(int16_t)(q >> 48) - y0;
    if ((dx < 0) | (dy < 0)) return;   /* no centre inside: 24% of face triangles, cheapest to skip */
    if (__builtin_expect((dx > 1) | (dy > 1), 0)) {
#ifdef RENDER_AVX512
        if (c->wide && dx > 1) { big_avx512(c, t, A, B, C, x0, y0, x0 + dx, y0 + dy); return; }
#endif
        big_avx2(c, t, A, B, C, x0, y0, x0 + dx, y0 + dy);
        return;
    }
    tile_avx2(c, t, A, B, C, x0, y0, (5 + 10 * (dx != 0)) & (3 + 12 * (dy != 0)));
}

__attribute__((target("avx2"), always_inline)) static inline void raster_avx2_loop(const Ctx *c, int n, int check_ok,
                                                                                 int normals)
{
    const int32_t *restrict tris = c->tris;
    Vert *restrict V = c->V;
    int t = 0;
    for (; t < n - PREFETCH; t++) {
        const int32_t *q = tris + 3L * (t + PREFETCH);
        _mm_prefetch((const char *)(V + q[0]), _MM_HINT_T0);
        _mm_prefetch((const char *)(V + q[1]), _MM_HINT_T0);
        _mm_prefetch((const char *)(V + q[2]), _MM_HINT_T0);
        tri_avx2(c, V, tris + 3L * t, t, check_ok, normals);
    }
    for (; t < n; t++) tri_avx2(c, V, tris + 3L * t, t, check_ok, normals);
}

/* Four specialisations (constant flags): the normals are only needed for shading. */
__attribute__((target("avx2"), noinline)) static void raster_avx2(const Ctx *c, int n_triangles, int check_ok,
                                                                  int normals)
{
    if (normals) {
        if (check_ok) raster_avx2_loop(c, n_triangles, 1, 1); else raster_avx2_loop(c, n_triangles, 0, 1);
    } else {
        if (check_ok) raster_avx2_loop(c, n_triangles, 1, 0); else raster_avx2_loop(c, n_triangles, 0, 0);
    }
}

/* shade_scalar, 8 vertices at a time (the same float operations, so the same colours) */
__attribute__((target("avx2"), noinline)) static void shade_avx2(const Vert *V, float *S, int n_vertices, const Light *lt)
{
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const __m256i cidx = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
    int v0 = 0;
    for (; v0 + 8 <= n_vertices; v0 += 8) {
        const Vert *W = V + v0;
        float *D = S + 4L * v0;
        __m256 r0 = load2(W[0].n, W[4].n), r1 = load2(W[1].n, W[5].n), r2 = load2(W[2].n, W[6].n), r3 = load2(W[3].n, W[7].n);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpacklo_ps(r2, r3), t2 = _mm256_unpackhi_ps(r0, r1), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 nx = _mm256_shuffle_ps(t0, t1, 0x44), ny = _mm256_shuffle_ps(t0, t1, 0xEE), nz = _mm256_shuffle_ps(t2, t3, 0x44);
        __m256 len2 = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(nx, nx), _mm256_mul_ps(ny, ny)), _mm256_mul_ps(nz, nz));
        __m256 valid = _mm256_and_ps(_mm256_cmp_ps(len2, _mm256_set1_ps(1e-30f), _CMP_GT_OQ),
                                     _mm256_cmp_ps(len2, _mm256_set1_ps(INFINITY), _CMP_LT_OQ));
        __m256 s = _mm256_div_ps(one, _mm256_sqrt_ps(len2));
        s = _mm256_xor_ps(s, _mm256_and_ps(_mm256_cmp_ps(nz, zero, _CMP_GT_OQ), _mm256_set1_ps(-0.0f)));
        __m256 n0 = _mm256_and_ps(valid, _mm256_mul_ps(nx, s)), n1 = _mm256_and_ps(valid, _mm256_mul_ps(ny, s));
        __m256 n2 = _mm256_blendv_ps(_mm256_set1_ps(-1.0f), _mm256_mul_ps(nz, s), valid);
        __m256 ndl = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(n0, _mm256_set1_ps(lt->L[0])), _mm256_mul_ps(n1, _mm256_set1_ps(lt->L[1]))),
                                   _mm256_mul_ps(n2, _mm256_set1_ps(lt->L[2])));
        __m256 lit = _mm256_add_ps(_mm256_set1_ps(lt->ambient), _mm256_mul_ps(_mm256_set1_ps(lt->diffuse), _mm256_max_ps(ndl, zero)));
        __m256 f = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(n0, _mm256_set1_ps(lt->H[0])), _mm256_mul_ps(n1, _mm256_set1_ps(lt->H[1]))),
                                 _mm256_mul_ps(n2, _mm256_set1_ps(lt->H[2])));
        f = _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(f, zero), one), _mm256_set1_ps((float)SPEC_LUT));
        __m256i k = _mm256_cvttps_epi32(f);
        __m256 lo = _mm256_i32gather_ps(lt->lut, k, 4), hi = _mm256_i32gather_ps(lt->lut + 1, k, 4);
        __m256 spec = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_sub_ps(f, _mm256_cvtepi32_ps(k)), _mm256_sub_ps(hi, lo)));
        __m256 k0 = _mm256_set1_ps(lt->base[0]), k1 = _mm256_set1_ps(lt->base[1]), k2 = _mm256_set1_ps(lt->base[2]);
        if (lt->colors) {   /* gathers are slow on some CPUs: only for per-vertex colours */
            const float *col = lt->colors + 3L * v0;
            k0 = _mm256_i32gather_ps(col, cidx, 4); k1 = _mm256_i32gather_ps(col + 1, cidx, 4); k2 = _mm256_i32gather_ps(col + 2, cidx, 4);
        }
        __m256 c0 = _mm256_add_ps(_mm256_mul_ps(k0, lit), spec);
        __m256 c1 = _mm256_add_ps(_mm256_mul_ps(k1, lit), spec);
        __m256 c2 = _mm256_add_ps(_mm256_mul_ps(k2, lit), spec);
        t0 = _mm256_unpacklo_ps(c0, c1); t1 = _mm256_unpacklo_ps(c2, zero);
        t2 = _mm256_unpackhi_ps(c0, c1); t3 = _mm256_unpackhi_ps(c2, zero);
        store2(D, D + 16, _mm256_shuffle_ps(t0, t1, 0x44));       /* vertices v0 + 0 and v0 + 4 */
        store2(D + 4, D + 20, _mm256_shuffle_ps(t0, t1, 0xEE));
        store2(D + 8, D + 24, _mm256_shuffle_ps(t2, t3, 0x44));
        store2(D + 12, D + 28, _mm256_shuffle_ps(t2, t3, 0xEE));
    }
    shade_scalar(V, S, v0, n_vertices, lt);   /* the last n_vertices % 8 */
}

/* resolve_scalar, one pixel's three channels per SSE operation (same rounding). */
__attribute__((target("avx2"), noinline)) static void
resolve_avx2(uint8_t *image, int height, int width, const Ctx *c, int x0, int y0, int x1, int y1, float alpha)
{
    const int32_t *restrict tris = c->tris;   /* locals: byte stores may alias anything */
    const float *restrict S = c->S;
    const uint8_t *end = image + (long)height * width * 3;
    const __m128 va = _mm_set1_ps(alpha), v255 = _mm_set1_ps(255.0f), vz = _mm_setzero_ps(), vh = _mm_set1_ps(0.5f);
    for (int y = y0; y <= y1; y++) {
        const Frag *fr = c->F + (long)y * c->fs;
        uint8_t *row = image + (long)y * width * 3;
        for (int x = x0; x <= x1; x++) {
            const int t = fr[x].t;
            if (t < 0) continue;
            const int32_t *tri = tris + 3L * t;
            float w1 = fr[x].w1, w2 = fr[x].w2, w0 = 1.0f - w1 - w2;
            __m128 col = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_set1_ps(w0), _mm_load_ps(S + 4L * tri[0])),
                                               _mm_mul_ps(_mm_set1_ps(w1), _mm_load_ps(S + 4L * tri[1]))),
                                    _mm_mul_ps(_mm_set1_ps(w2), _mm_load_ps(S + 4L * tri[2])));
            uint8_t *p3 = row + 3L * x;
            uint32_t o;   /* one 4-byte load (its 4th byte is unused) unless at the very end */
            if (__builtin_expect(p3 + 3 < end, 1)) memcpy(&o, p3, 4); else o = p3[0] | p3[1] << 8 | p3[2] << 16;
            __m128 old = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)o)));
            __m128 v = _mm_add_ps(old, _mm_mul_ps(va, _mm_sub_ps(_mm_mul_ps(v255, col), old)));
            v = _mm_min_ps(_mm_max_ps(v, vz), v255);   /* max first: NaN -> 0 */
            __m128i q = _mm_cvttps_epi32(_mm_add_ps(v, vh));
            uint32_t r = (uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(_mm_packs_epi32(q, q), q));
            /* 2 + 1 byte stores: a 4-byte store would make the next pixel's load stall */
            uint16_t r01 = (uint16_t)r;
            memcpy(p3, &r01, 2); p3[2] = (uint8_t)(r >> 16);
        }
    }
}
#endif

/* Everything both entry points do before shading: validate the indices, build the vertex
 * records, find the bounding box of the finite vertices on screen, allocate and clear its
 * depth buffer and rasterise every triangle into it (pass 1), with the vertex normals
 * accumulated when `normals` is set. Sets *empty (and allocates nothing) when no pixel
 * centre can be covered. On success the caller frees r->lt and r->F. */
typedef struct {
    Light *lt;      /* one allocation: Light, vertex records V, shaded colours S, ok flags */
    Frag *F;        /* depth buffer of the box (plus padding) */
    Ctx c;
    int X0, Y0, X1, Y1, simd, empty;
} Raster;

static int rasterise(Raster *r, int height, int width, const float *vertices, int n_vertices,
                     const int32_t *triangles, int n_triangles, int normals)
{
    r->lt = NULL; r->F = NULL; r->empty = 1;
#ifdef RENDER_AVX2
    /* images wider or taller than 32766 px would not fit the 16-bit boxes of tri_avx2 */
    const int simd = width < 32767 && height < 32767 && __builtin_cpu_supports("avx2");
#else
    enum { simd = 0 };
#endif
    r->simd = simd;
    /* Validate every index before writing anything, so an error leaves the outputs intact. */
#ifdef RENDER_AVX2
    if (simd ? max_index_avx2(triangles, 3L * n_triangles) >= (uint32_t)n_vertices :
#else
    if (
#endif
        max_index(triangles, 3L * n_triangles) >= (uint32_t)n_vertices) return RENDER_ERR_INDEX;

    Light *lt = malloc(sizeof(Light) + (size_t)n_vertices * (sizeof(Vert) + 16 + 1) + 64);
    if (!lt) return RENDER_ERR_NOMEM;
    Vert *V = (Vert *)(((uintptr_t)(lt + 1) + 63) & ~(uintptr_t)63);
    float *S = (float *)(V + n_vertices);
    unsigned char *ok = (unsigned char *)(S + 4L * n_vertices);

    /* Vertex records and the bounding box of the finite vertices. The per-vertex box
     * clips to the image, so a 16-bit lane-wise minimum gives a triangle's range. */
    float bx0 = INFINITY, by0 = INFINITY, bx1 = -INFINITY, by1 = -INFINITY;
    int all_ok = 1;
#ifdef RENDER_X86
    /* SSE2: the box lanes are ceil(x, y, -x, -y) clamped to (0, 0, 1-W, 1-H)..(W, H, 1, 1);
     * max/min put NaN on the lower bound, which is harmless as such vertices are skipped */
    const __m128 lo4 = _mm_setr_ps(0.0f, 0.0f, (float)(1 - width), (float)(1 - height));
    const __m128 hi4 = _mm_setr_ps((float)width, (float)height, 1.0f, 1.0f), neg_zw = _mm_setr_ps(0.0f, 0.0f, -0.0f, -0.0f);
    __m128 bmin = _mm_set1_ps(INFINITY), bmax = _mm_set1_ps(-INFINITY);
    for (int v = 0; v < n_vertices; v++) {
        const float *p = vertices + 3L * v;
        Vert *q = V + v;
        __m128 pv = _mm_setr_ps(p[0], p[1], p[2], 0.0f);
        int fin = (_mm_movemask_ps(_mm_cmpeq_ps(_mm_sub_ps(pv, pv), _mm_setzero_ps())) & 7) == 7; /* inf-inf is NaN */
        ok[v] = (unsigned char)fin;
        all_ok &= fin;
        _mm_store_ps(q->p, pv);
        _mm_store_ps(q->n, _mm_setzero_ps());
        _mm_storeu_pd(&q->x, _mm_cvtps_pd(pv));
        q->z = p[2];
        __m128 b4 = _mm_min_ps(_mm_max_ps(_mm_xor_ps(_mm_movelh_ps(pv, pv), neg_zw), lo4), hi4);
        __m128i i4 = _mm_cvttps_epi32(b4);
        i4 = _mm_sub_epi32(i4, _mm_castps_si128(_mm_cmplt_ps(_mm_cvtepi32_ps(i4), b4)));   /* ceil */
        _mm_storel_epi64((__m128i *)q->box, _mm_packs_epi32(i4, i4));
        if (fin) { bmin = _mm_min_ps(bmin, pv); bmax = _mm_max_ps(bmax, pv); }
    }
    float bb[8];
    _mm_storeu_ps(bb, bmin); _mm_storeu_ps(bb + 4, bmax);
    bx0 = bb[0]; by0 = bb[1]; bx1 = bb[4]; by1 = bb[5];
#else
    for (int v = 0; v < n_vertices; v++) {
        const float *p = vertices + 3L * v;
        Vert *q = V + v;
        ok[v] = isfinite(p[0]) && isfinite(p[1]) && isfinite(p[2]);
        all_ok &= ok[v];
        q->p[0] = p[0]; q->p[1] = p[1]; q->p[2] = p[2]; q->p[3] = 0;   /* no box: only the AVX2 path uses it */
        q->n[0] = q->n[1] = q->n[2] = q->n[3] = 0;
        q->x = p[0]; q->y = p[1]; q->z = p[2];
        if (!ok[v]) continue;
        bx0 = minf(bx0, p[0]); bx1 = maxf(bx1, p[0]);
        by0 = minf(by0, p[1]); by1 = maxf(by1, p[1]);
    }
#endif
    int X0 = ceil_in(bx0, 0, width - 1), X1 = floor_in(bx1, 0, width - 1);
    int Y0 = ceil_in(by0, 0, height - 1), Y1 = floor_in(by1, 0, height - 1);
    X0 = X0 > 0 ? X0 : 0; X1 = X1 < width - 1 ? X1 : width - 1;
    Y0 = Y0 > 0 ? Y0 : 0; Y1 = Y1 < height - 1 ? Y1 : height - 1;
    if (X0 > X1 || Y0 > Y1) { free(lt); return RENDER_OK; } /* nothing on screen */

    /* Depth buffer over the bounding box only, plus three padding columns and a row for
     * the 2x2 and 4x2 tiles at its right and bottom edges. */
    long fs = X1 - X0 + 4, rows = Y1 - Y0 + 2;
    Frag *Fm = malloc((size_t)(fs * rows) * sizeof(Frag));
    if (!Fm) { free(lt); return RENDER_ERR_NOMEM; }
    for (long k = 0; k < fs * rows; k++) { Fm[k].z = INFINITY; Fm[k].w1 = Fm[k].w2 = 0; Fm[k].t = -1; }
    Ctx c = {triangles, ok, V, S, Fm - ((long)Y0 * fs + X0), fs, width, height, 0};
#ifdef RENDER_AVX512
    c.wide = simd && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#endif

    /* Pass 1: normals and depth; the winning triangle and its weights per pixel. */
#ifdef RENDER_AVX2
    if (simd) raster_avx2(&c, n_triangles, !all_ok, normals); else
#endif
        raster_scalar(&c, n_triangles, normals);
    r->lt = lt; r->F = Fm; r->c = c;
    r->X0 = X0; r->Y0 = Y0; r->X1 = X1; r->Y1 = Y1; r->empty = 0;
    return RENDER_OK;
}

int render_mesh(uint8_t *image, int height, int width,
                const float *vertices, int n_vertices,
                const int32_t *triangles, int n_triangles,
                const float *vertex_colors, const float *base_color, float alpha,
                const float *light_dir, float ambient, float diffuse,
                float specular, float shininess,
                float *zbuffer, int32_t *idbuffer)
{
    if (height < 0 || width < 0 || n_vertices < 0 || n_triangles < 0) return RENDER_ERR_ARGS;
    if (height == 0 || width == 0 || n_triangles == 0) return RENDER_OK;
    if (!image || !vertices || !triangles || !zbuffer || !idbuffer) return RENDER_ERR_ARGS;
    (void)zbuffer; (void)idbuffer;

    Raster r;
    int rc = rasterise(&r, height, width, vertices, n_vertices, triangles, n_triangles, 1);
    if (rc != RENDER_OK || r.empty) return rc;
    Light *lt = r.lt;

    /* Light L and Blinn half vector H = normalise(L + V), viewer direction V = (0,0,-1). */
    lt->L[0] = 0.0f; lt->L[1] = 0.0f; lt->L[2] = -1.0f;
    if (light_dir) {
        float len = sqrtf(light_dir[0] * light_dir[0] + light_dir[1] * light_dir[1] + light_dir[2] * light_dir[2]);
        if (len > 0 && isfinite(len))
            for (int k = 0; k < 3; k++) lt->L[k] = light_dir[k] / len;
    }
    float H[3] = {lt->L[0], lt->L[1], lt->L[2] - 1.0f};
    float hl = sqrtf(H[0] * H[0] + H[1] * H[1] + H[2] * H[2]);
    if (hl > 0) { H[0] /= hl; H[1] /= hl; H[2] /= hl; } else { H[0] = 0; H[1] = 0; H[2] = -1; }
    memcpy(lt->H, H, sizeof H);
    for (int k = 0; k <= SPEC_LUT; k++)
        lt->lut[k] = specular != 0.0f ? specular * powf((float)k / SPEC_LUT, shininess) : 0.0f;
    lt->lut[SPEC_LUT + 1] = lt->lut[SPEC_LUT]; /* guard for the linear interpolation at 1.0 */
    static const float grey[3] = {0.8f, 0.8f, 0.8f};
    lt->ambient = ambient; lt->diffuse = diffuse;
    lt->colors = vertex_colors; lt->base = base_color ? base_color : grey;

    /* Shade the vertices, then pass 2: blend the single visible fragment of each pixel. */
#ifdef RENDER_AVX2
    if (r.simd) { shade_avx2(r.c.V, r.c.S, n_vertices, lt);
                  resolve_avx2(image, height, width, &r.c, r.X0, r.Y0, r.X1, r.Y1, alpha); } else
#endif
    { shade_scalar(r.c.V, r.c.S, 0, n_vertices, lt); resolve_scalar(image, width, &r.c, r.X0, r.Y0, r.X1, r.Y1, alpha); }
    free(r.F);
    free(r.lt);
    return RENDER_OK;
}

/* Attributes of one row of the box. In pixel order the visible triangles, and so their
 * vertex indices and attribute rows, are scattered over the mesh arrays: each pixel would
 * wait for two dependent cache misses. A software pipeline hides them: the triangle of
 * pixel x + 2 * AHEAD is prefetched, the attribute rows of pixel x + AHEAD are prefetched
 * (its indices are in cache by then), and pixel x is computed. `nch` is a constant in the
 * specialisations below, so the channel loop unrolls. */
#define AHEAD 6
static inline void attributes_row(const int32_t *restrict tris, const Frag *restrict fr, int x0, int x1,
                                  const float *restrict attributes, int nch, float *restrict out)
{
    for (int x = x0; x <= x1; x++) {
        int xa = x + 2 * AHEAD <= x1 ? x + 2 * AHEAD : x1, xb = x + AHEAD <= x1 ? x + AHEAD : x1;
        int ta = fr[xa].t, tb = fr[xb].t;
        __builtin_prefetch(tris + 3L * (ta >= 0 ? ta : 0));
        if (tb >= 0) {
            const int32_t *q = tris + 3L * tb;
            __builtin_prefetch(attributes + (long)q[0] * nch);
            __builtin_prefetch(attributes + (long)q[1] * nch);
            __builtin_prefetch(attributes + (long)q[2] * nch);
        }
        float *o = out + (long)(x - x0) * nch;
        const int t = fr[x].t;
        if (t < 0) { for (int k = 0; k < nch; k++) o[k] = 0.0f; continue; }
        const int32_t *tri = tris + 3L * t;
        const float w1 = fr[x].w1, w2 = fr[x].w2, w0 = 1.0f - w1 - w2;
        const float *a = attributes + (long)tri[0] * nch, *b = attributes + (long)tri[1] * nch,
                    *d = attributes + (long)tri[2] * nch;
        for (int k = 0; k < nch; k++) o[k] = w0 * a[k] + w1 * b[k] + w2 * d[k];
    }
}
static void attributes_row_1(const int32_t *t, const Frag *f, int x0, int x1, const float *a, float *o) { attributes_row(t, f, x0, x1, a, 1, o); }
static void attributes_row_2(const int32_t *t, const Frag *f, int x0, int x1, const float *a, float *o) { attributes_row(t, f, x0, x1, a, 2, o); }
static void attributes_row_3(const int32_t *t, const Frag *f, int x0, int x1, const float *a, float *o) { attributes_row(t, f, x0, x1, a, 3, o); }
static void attributes_row_4(const int32_t *t, const Frag *f, int x0, int x1, const float *a, float *o) { attributes_row(t, f, x0, x1, a, 4, o); }

#ifdef RENDER_X86
/* attributes_row for 2-4 channels with one SSE operation per pixel (the same float
 * operations per channel, so the same values), from a copy of the attributes padded to
 * 4 floats per vertex. */
static inline void attributes_row_sse(const int32_t *restrict tris, const Frag *restrict fr, int x0, int x1,
                                      const float *restrict a4, int nch, float *restrict out)
{
    for (int x = x0; x <= x1; x++) {
        float *o = out + (long)(x - x0) * nch;
        const int t = fr[x].t;
        __m128 v = _mm_setzero_ps();
        if (t >= 0) {
            const int32_t *tri = tris + 3L * t;
            const float w1 = fr[x].w1, w2 = fr[x].w2, w0 = 1.0f - w1 - w2;
            v = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_set1_ps(w0), _mm_load_ps(a4 + 4L * tri[0])),
                                      _mm_mul_ps(_mm_set1_ps(w1), _mm_load_ps(a4 + 4L * tri[1]))),
                           _mm_mul_ps(_mm_set1_ps(w2), _mm_load_ps(a4 + 4L * tri[2])));
        }
        if (nch == 4) { _mm_storeu_ps(o, v); continue; }
        _mm_storel_pi((__m64 *)o, v);
        if (nch == 3) _mm_store_ss(o + 2, _mm_movehl_ps(v, v));
    }
}
static void attributes_sse_2(const int32_t *t, const Frag *f, int x0, int x1, const float *a, float *o) { attributes_row_sse(t, f, x0, x1, a, 2, o); }
static void attributes_sse_3(const int32_t *t, const Frag *f, int x0, int x1, const float *a, float *o) { attributes_row_sse(t, f, x0, x1, a, 3, o); }
static void attributes_sse_4(const int32_t *t, const Frag *f, int x0, int x1, const float *a, float *o) { attributes_row_sse(t, f, x0, x1, a, 4, o); }
#endif

/* Pass 2 of render_maps: for every pixel of the box, the visible fragment's depth, triangle,
 * coverage and interpolated attributes (one output at a time: each loop is simple). */
static void resolve_maps(const Ctx *c, int width, int x0, int y0, int x1, int y1,
                         const float *restrict attributes, const float *restrict a4, int n_channels,
                         float *restrict depth, float *restrict out, uint8_t *restrict mask,
                         int32_t *restrict tri_out)
{
    const int32_t *restrict tris = c->tris;
    for (int y = y0; y <= y1; y++) {
        const Frag *restrict fr = c->F + (long)y * c->fs;
        const long row = (long)y * width;
        if (depth)
            for (int x = x0; x <= x1; x++) depth[row + x] = fr[x].z;   /* INFINITY where uncovered */
        if (mask)
            for (int x = x0; x <= x1; x++) mask[row + x] = (uint8_t)(fr[x].t >= 0);
        if (tri_out)
            for (int x = x0; x <= x1; x++) tri_out[row + x] = fr[x].t;
        if (!out) continue;
        float *o = out + (row + x0) * n_channels;
#ifdef RENDER_X86
        if (a4) {
            if (n_channels == 2) attributes_sse_2(tris, fr, x0, x1, a4, o);
            else if (n_channels == 3) attributes_sse_3(tris, fr, x0, x1, a4, o);
            else attributes_sse_4(tris, fr, x0, x1, a4, o);
            continue;
        }
#else
        (void)a4;
#endif
        switch (n_channels) {
        case 1: attributes_row_1(tris, fr, x0, x1, attributes, o); break;
        case 2: attributes_row_2(tris, fr, x0, x1, attributes, o); break;
        case 3: attributes_row_3(tris, fr, x0, x1, attributes, o); break;
        case 4: attributes_row_4(tris, fr, x0, x1, attributes, o); break;
        default: attributes_row(tris, fr, x0, x1, attributes, n_channels, o);
        }
    }
}

int render_maps(int height, int width,
                const float *vertices, int n_vertices,
                const int32_t *triangles, int n_triangles,
                const float *attributes, int n_channels,
                float *depth, float *out, uint8_t *mask, int32_t *tri_out, int32_t *box)
{
    if (height < 0 || width < 0 || n_vertices < 0 || n_triangles < 0 || n_channels < 0) return RENDER_ERR_ARGS;
    if (!box) return RENDER_ERR_ARGS;
    box[0] = box[1] = box[2] = box[3] = 0;
    if (height == 0 || width == 0 || n_triangles == 0) return RENDER_OK;
    if (!vertices || !triangles || (out && (!attributes || n_channels == 0))) return RENDER_ERR_ARGS;

    Raster r;
    int rc = rasterise(&r, height, width, vertices, n_vertices, triangles, n_triangles, 0);
    if (rc != RENDER_OK || r.empty) return rc;
    float *a4 = NULL, *a4_mem = NULL;
#ifdef RENDER_X86
    if (out && n_channels >= 2 && n_channels <= 4) {   /* padded copy for the SSE path */
        a4_mem = malloc((size_t)n_vertices * 16 + 16);
        if (!a4_mem) { free(r.F); free(r.lt); return RENDER_ERR_NOMEM; }
        a4 = (float *)(((uintptr_t)a4_mem + 15) & ~(uintptr_t)15);
        for (long v = 0; v < n_vertices; v++) {
            float *q = a4 + 4 * v;
            const float *src = attributes + v * n_channels;
            q[0] = src[0]; q[1] = src[1]; q[2] = n_channels > 2 ? src[2] : 0.0f; q[3] = n_channels > 3 ? src[3] : 0.0f;
        }
    }
#endif
    resolve_maps(&r.c, width, r.X0, r.Y0, r.X1, r.Y1, attributes, a4, n_channels, depth, out, mask, tri_out);
    box[0] = r.X0; box[1] = r.Y0; box[2] = r.X1 + 1; box[3] = r.Y1 + 1;
    free(a4_mem);
    free(r.F);
    free(r.lt);
    return RENDER_OK;
}

/* ------------------------------------------------------------------------------------------
 * Face-model kernels that sit beside the renderer (one library, one build): the 68-landmark
 * tree cascade, the dense-mesh subdivision and (at the end of the file) the model fit. They
 * are ports of the numpy reference implementations in service/landmarks68.py
 * (CascadeRefiner.refine) and service/face_model.py (the sparse subdivision maps,
 * FaceModel.fit); tests compare them.
 * ------------------------------------------------------------------------------------------ */

/* Grey level of one pixel: OpenCV's COLOR_BGR2GRAY for 8-bit images, bit for bit
 * (fixed point, 14 fractional bits, round half up). */
static inline float gray_at(const uint8_t *p, int channels)
{
    if (channels == 1) return (float)p[0];
    return (float)(((int)p[0] * 1868 + (int)p[1] * 9617 + (int)p[2] * 4899 + (1 << 13)) >> 14);
}

/* Nearest integer (ties to even, as np.rint) clamped to [0, hi]; NaN gives 0. Every v below 0
 * rounds to 0 or less and every v at or above hi to hi or more, so clamping first gives the
 * same result, and then the conversion cannot overflow. On x86-64 one cvtsd2si (default
 * rounding mode: to nearest, ties to even): libm's nearbyint is a function call that saves
 * and restores the floating-point environment, which cost more than the rest of the
 * cascade's sampling (two calls per feature point, 8000 per face and frame). */
static inline int rint_clamp(double v, int hi)
{
    if (!(v > 0.0)) return 0;  /* also NaN */
    if (v >= (double)hi) return hi;
#ifdef RENDER_X86
    return _mm_cvtsd_si32(_mm_set_sd(v));
#else
    return (int)nearbyint(v);
#endif
}

#define CASCADE_MAX_TREES 4096
#define CASCADE_MAX_POINTS 4096

/* sums[j] = sum over k of leaf[rows[k] * width + j], j < width (a multiple of 8), exact in
 * int32. GCC leaves the plain nested loop scalar (a read-modify-write of the sum per value:
 * it was the cascade's largest cost), so on x86-64 eight columns at a time stay in two SSE2
 * registers while the rows go by (sign-extended by unpacking each value into the high half
 * and shifting back). */
static void cascade_sum_rows(const int16_t *leaf, const long *rows, int n_trees, int width, int32_t *sums)
{
#ifdef RENDER_X86
    for (int j = 0; j < width; j += 8) {
        __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();
        for (int k = 0; k < n_trees; k++) {
            const __m128i x = _mm_loadu_si128((const __m128i *)(leaf + rows[k] * width + j));
            lo = _mm_add_epi32(lo, _mm_srai_epi32(_mm_unpacklo_epi16(x, x), 16));
            hi = _mm_add_epi32(hi, _mm_srai_epi32(_mm_unpackhi_epi16(x, x), 16));
        }
        _mm_storeu_si128((__m128i *)(sums + j), lo);
        _mm_storeu_si128((__m128i *)(sums + j + 4), hi);
    }
#else
    for (int j = 0; j < width; j++) sums[j] = 0;
    for (int k = 0; k < n_trees; k++) {
        const int16_t *row = leaf + rows[k] * width;
        for (int j = 0; j < width; j++) sums[j] += row[j];
    }
#endif
}

/* Refine 68 landmarks in place with a cascade of regression trees.
 *
 * image     : height x width x channels uint8 (channels 1 = grey, 3 = BGR), rows `stride` bytes apart
 * shape     : (68, 2) float64 landmarks in image pixels, updated in place
 * frame     : origin x, origin y, scale, then the 2x2 rotation row-major (r00, r01, r10, r11)
 * anchors   : (T, P) int32 landmark index of each feature point
 * offsets   : (T, P, 2) float64 offsets in face-frame units
 * split_u/v : (T, K * N) int32 feature indices of each node (N = 2^D - 1 nodes per tree)
 * thresholds: (T, K * N) float32
 * leaves    : (T, K * (N + 1), Q) int16 leaf corrections as Q coefficients on the stage's basis,
 *             in units of leaf_scales[t]: correction = leaf_scales[t] * coefficients @ basis[t]
 *             (each face reads K scattered rows per stage from a table of megabytes, so the
 *             row size decides the speed: int16 and Q < 136 coefficients; the sums are exact
 *             integers)
 * leaf_scales: (T,) float64
 * n_coefficients: Q, a multiple of 8, at most 136 (136 with identity bases: plain leaves)
 * leaf_basis: (T, Q, 136) float32, face-frame units per coefficient
 * work      : P floats of scratch
 * Returns 0, or -1 on bad arguments (at most CASCADE_MAX_TREES trees and CASCADE_MAX_POINTS
 * feature points per stage). */
int cascade_refine(const uint8_t *image, int height, int width, int channels, long stride,
                   double *shape, const double *frame,
                   int n_stages, int n_points, int n_trees, int depth,
                   const int32_t *anchors, const double *offsets,
                   const int32_t *split_u, const int32_t *split_v, const float *thresholds,
                   const int16_t *leaves, const double *leaf_scales,
                   int n_coefficients, const float *leaf_basis, float *work)
{
    if (!image || !shape || !frame || height <= 0 || width <= 0 || (channels != 1 && channels != 3)
        || n_stages < 0 || n_points <= 0 || n_points > CASCADE_MAX_POINTS
        || n_trees <= 0 || n_trees > CASCADE_MAX_TREES || depth <= 0 || depth > 16
        || n_coefficients <= 0 || n_coefficients > 136 || n_coefficients % 8 || !leaf_basis)
        return -1;
    const int q_width = n_coefficients;
    const double s = frame[2];  /* frame[0:2], the origin, is not needed: shapes move relative to themselves */
    const double r00 = frame[3], r01 = frame[4], r10 = frame[5], r11 = frame[6];
    const int n_nodes = (1 << depth) - 1, n_leaves = 1 << depth;
    int32_t sums[136];
    double delta[136];
    long rows[CASCADE_MAX_TREES];
    long pixel[CASCADE_MAX_POINTS];  /* byte offset of each feature point's pixel */
    for (int t = 0; t < n_stages; t++) {
        const int32_t *anc = anchors + (long)t * n_points;
        const double *off = offsets + (long)t * n_points * 2;
        /* Addresses first, each prefetched, then the reads: the frame is out of the cache by
         * now (the network ran in between) and the points are scattered over the face, so
         * this lets the misses overlap. */
        for (int p = 0; p < n_points; p++) {
            const int a = anc[p];
            if (a < 0 || a >= 68) return -1;
            /* location = shape[a] + (offset @ rot.T) * scale */
            const double lx = shape[2 * a] + (off[2 * p] * r00 + off[2 * p + 1] * r01) * s;
            const double ly = shape[2 * a + 1] + (off[2 * p] * r10 + off[2 * p + 1] * r11) * s;
            pixel[p] = (long)rint_clamp(ly, height - 1) * stride + (long)rint_clamp(lx, width - 1) * channels;
#if defined(__GNUC__)
            __builtin_prefetch(image + pixel[p], 0, 0);
#endif
        }
        for (int p = 0; p < n_points; p++) work[p] = gray_at(image + pixel[p], channels);
        const int32_t *u = split_u + (long)t * n_trees * n_nodes;
        const int32_t *v = split_v + (long)t * n_trees * n_nodes;
        const float *thr = thresholds + (long)t * n_trees * n_nodes;
        const int16_t *leaf = leaves + (long)t * n_trees * n_leaves * q_width;
        const float *basis = leaf_basis + (long)t * q_width * 136;
        /* Walk the trees level by level, all trees at each level: each walk is a chain of
         * dependent loads, and interleaving the trees lets the chains overlap. Then prefetch
         * every tree's leaf row before summing them: the rows are scattered over a table of
         * megabytes, so with all the fetches in flight at once the memory latency overlaps
         * instead of adding up tree after tree. */
        for (int k = 0; k < n_trees; k++) rows[k] = 0;
        for (int d = 0; d < depth; d++) {
            for (int k = 0; k < n_trees; k++) {
                const long at = (long)k * n_nodes + rows[k];
                const int32_t iu = u[at], iv = v[at];
                if (iu < 0 || iu >= n_points || iv < 0 || iv >= n_points) return -1;
                rows[k] = 2 * rows[k] + 1 + ((work[iu] - work[iv]) > thr[at]);
            }
        }
        for (int k = 0; k < n_trees; k++) {
            const long row = (long)k * n_leaves + (rows[k] - n_nodes);
            rows[k] = row;
#if defined(__GNUC__)
            const char *start = (const char *)(leaf + row * q_width);
            const int bytes = q_width * (int)sizeof(int16_t);
            for (int b = 0; b < bytes; b += 64) __builtin_prefetch(start + b, 0, 0);
            __builtin_prefetch(start + bytes - 1, 0, 0);  /* a misaligned row's last line */
#endif
        }
        cascade_sum_rows(leaf, rows, n_trees, q_width, sums);
        /* delta = leaf_scales[t] * sums @ basis[t] (face-frame units) */
        for (int j = 0; j < 136; j++) delta[j] = 0.0;
        for (int c = 0; c < q_width; c++) {
            const double w = sums[c] * leaf_scales[t];
            const float *b = basis + (long)c * 136;
            for (int j = 0; j < 136; j++) delta[j] += w * b[j];
        }
        /* shape += (delta @ rot.T) * scale */
        for (int i = 0; i < 68; i++) {
            const double dx = delta[2 * i], dy = delta[2 * i + 1];
            shape[2 * i] += (dx * r00 + dy * r01) * s;
            shape[2 * i + 1] += (dx * r10 + dy * r11) * s;
        }
    }
    return 0;
}

/* One level of Loop subdivision of 3-column float32 rows (service/subdivision.py builds it as
 * a sparse map; service/kernels.py NativeSubdivision splits that map into this form):
 *   out rows [0, n_even): the old vertices, smoothed: CSR over the n_even rows of in (the old
 *       vertices too; int32 indptr, uint16 column indices, float32 weights);
 *   out rows [n_even, n_even + n_odd): one per edge, 4 uint16 indices (a, b, c, d) per row:
 *       3/8 (a + b) + 1/8 (c + d), or (a + b) / 2 for a boundary edge (c = d = 0xFFFF).
 * The edge rows need no weights and half the index bytes of a CSR map (the level that makes
 * the dense mesh reads 0.47 MB instead of 1.17 MB), and rows are read and written 4 floats
 * wide (the 4th lane spills into the next row, written after it; never past either array).
 * n_even < 65535. Returns 0, or -1 on an index out of range. */
int loop_level3(int n_even, int n_odd, const int32_t *indptr, const uint16_t *indices,
                const float *weights, const uint16_t *edges, const float *in, float *out)
{
    const int n_rows = n_even + n_odd, n_cols = n_even;   /* in holds the old vertices */
    for (int r = 0; r < n_even; r++) {
        float x = 0.0f, y = 0.0f, z = 0.0f;
        for (int32_t k = indptr[r]; k < indptr[r + 1]; k++) {
            const int c = indices[k];
            if (c >= n_cols) return -1;
            const float w = weights[k];
            x += w * in[3 * c]; y += w * in[3 * c + 1]; z += w * in[3 * c + 2];
        }
        out[3L * r] = x; out[3L * r + 1] = y; out[3L * r + 2] = z;
    }
    float *o = out + 3L * n_even;
    for (int r = n_even; r < n_rows; r++, o += 3) {
        const uint16_t *e = edges + 4L * (r - n_even);
        const int a = e[0], b = e[1], c = e[2], d = e[3], boundary = c == 0xFFFF;
        if (a >= n_cols || b >= n_cols || (!boundary && (c >= n_cols || d >= n_cols))) return -1;
#ifdef RENDER_X86
        /* 4-wide unless a read would pass the end of in or the write the end of out */
        const int wide_in = a < n_cols - 1 && b < n_cols - 1 && (boundary || (c < n_cols - 1 && d < n_cols - 1));
        if (wide_in && r < n_rows - 1) {
            __m128 s = _mm_add_ps(_mm_loadu_ps(in + 3 * a), _mm_loadu_ps(in + 3 * b));
            _mm_storeu_ps(o, boundary ? _mm_mul_ps(_mm_set1_ps(0.5f), s) :
                             _mm_add_ps(_mm_mul_ps(_mm_set1_ps(0.375f), s),
                                        _mm_mul_ps(_mm_set1_ps(0.125f),
                                                   _mm_add_ps(_mm_loadu_ps(in + 3 * c), _mm_loadu_ps(in + 3 * d)))));
            continue;
        }
#endif
        const float *pa = in + 3 * a, *pb = in + 3 * b;
        for (int k = 0; k < 3; k++)
            o[k] = boundary ? 0.5f * (pa[k] + pb[k]) : 0.375f * (pa[k] + pb[k]) + 0.125f * (in[3 * c + k] + in[3 * d + k]);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The 62-parameter model fit (port of service/face_model.py FaceModel.fit, numpy reference).
 * Per face and frame it is ~20 small numpy calls per alternation (a 3x3 SVD, centring, two
 * 1404 x 50 products), so per-call overhead, not arithmetic, was its time.
 * ------------------------------------------------------------------------------------------ */

/* Eigenvector of the largest eigenvalue of a symmetric 4x4 matrix (cyclic Jacobi). */
static void largest_eigenvector4(double a[4][4], double out[4])
{
    double v[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    for (int sweep = 0; sweep < 50; sweep++) {
        double off = 0.0, diag = 0.0;
        for (int p = 0; p < 4; p++) {
            diag += a[p][p] * a[p][p];
            for (int q = p + 1; q < 4; q++) off += a[p][q] * a[p][q];
        }
        if (off <= 1e-30 * diag) break;  /* also when all is zero */
        for (int p = 0; p < 3; p++)
            for (int q = p + 1; q < 4; q++) {
                if (a[p][q] == 0.0) continue;
                const double theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < 4; k++) {  /* A <- A J (columns p, q) */
                    const double akp = a[k][p], akq = a[k][q];
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for (int k = 0; k < 4; k++) {  /* A <- J^T A (rows p, q) */
                    const double apk = a[p][k], aqk = a[q][k];
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for (int k = 0; k < 4; k++) {  /* V <- V J */
                    const double vkp = v[k][p], vkq = v[k][q];
                    v[k][p] = c * vkp - s * vkq;
                    v[k][q] = s * vkp + c * vkq;
                }
            }
    }
    int best = 0;
    for (int k = 1; k < 4; k++)
        if (a[k][k] > a[best][best]) best = k;
    for (int k = 0; k < 4; k++) out[k] = v[k][best];
}

/* Least-squares similarity target ~= scale * R @ source + t over n points (float64, (n, 3)),
 * the same optimum as service.pose.umeyama (proper rotation), found with Horn's quaternion
 * method (1987): no 3x3 SVD, and a reflection can never come out. */
static void similarity_fit(const double *src, const double *tgt, int n, double R[9], double *scale, double t[3])
{
    double ms[3] = {0, 0, 0}, mt[3] = {0, 0, 0};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) { ms[k] += src[3 * i + k]; mt[k] += tgt[3 * i + k]; }
    for (int k = 0; k < 3; k++) { ms[k] /= n; mt[k] /= n; }
    double S[3][3] = {{0}}, var_s = 0.0;  /* S[a][b] = sum of centred src_a * tgt_b */
    for (int i = 0; i < n; i++) {
        const double sx = src[3 * i] - ms[0], sy = src[3 * i + 1] - ms[1], sz = src[3 * i + 2] - ms[2];
        const double tx = tgt[3 * i] - mt[0], ty = tgt[3 * i + 1] - mt[1], tz = tgt[3 * i + 2] - mt[2];
        S[0][0] += sx * tx; S[0][1] += sx * ty; S[0][2] += sx * tz;
        S[1][0] += sy * tx; S[1][1] += sy * ty; S[1][2] += sy * tz;
        S[2][0] += sz * tx; S[2][1] += sz * ty; S[2][2] += sz * tz;
        var_s += sx * sx + sy * sy + sz * sz;
    }
    double N[4][4] = {
        {S[0][0] + S[1][1] + S[2][2], S[1][2] - S[2][1], S[2][0] - S[0][2], S[0][1] - S[1][0]},
        {S[1][2] - S[2][1], S[0][0] - S[1][1] - S[2][2], S[0][1] + S[1][0], S[2][0] + S[0][2]},
        {S[2][0] - S[0][2], S[0][1] + S[1][0], -S[0][0] + S[1][1] - S[2][2], S[1][2] + S[2][1]},
        {S[0][1] - S[1][0], S[2][0] + S[0][2], S[1][2] + S[2][1], -S[0][0] - S[1][1] + S[2][2]}};
    double q[4];
    largest_eigenvector4(N, q);
    const double w = q[0], x = q[1], y = q[2], z = q[3];
    const double nq = w * w + x * x + y * y + z * z;
    R[0] = (w * w + x * x - y * y - z * z) / nq; R[1] = 2 * (x * y - w * z) / nq; R[2] = 2 * (x * z + w * y) / nq;
    R[3] = 2 * (y * x + w * z) / nq; R[4] = (w * w - x * x + y * y - z * z) / nq; R[5] = 2 * (y * z - w * x) / nq;
    R[6] = 2 * (z * x - w * y) / nq; R[7] = 2 * (z * y + w * x) / nq; R[8] = (w * w - x * x - y * y + z * z) / nq;
    double trace = 0.0;  /* trace(R^T cov) with cov[i][j] = S[j][i] / n: the singular values' signed sum */
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) trace += R[3 * i + j] * S[j][i];
    *scale = var_s > 0 ? trace / var_s : 0.0;
    for (int i = 0; i < 3; i++)
        t[i] = mt[i] - *scale * (R[3 * i] * ms[0] + R[3 * i + 1] * ms[1] + R[3 * i + 2] * ms[2]);
}

/* vertices = mean + basis @ coefficients, the product in float32. The basis is given transposed,
 * (K, 3n), so the product is K independent row updates that the compiler vectorises (a dot
 * product per row would be a reduction, which C's strict float order keeps scalar). */
static inline __attribute__((always_inline)) void model_vertices(const double *mean, const float *basis_t,
                                                                int n3, int K, const float *coef, float *acc,
                                                                double *out)
{
    for (int r = 0; r < n3; r++) acc[r] = 0.0f;
    for (int k = 0; k < K; k++) {
        const float *row = basis_t + (long)k * n3;
        const float c = coef[k];
        for (int r = 0; r < n3; r++) acc[r] += c * row[r];
    }
    for (int r = 0; r < n3; r++) out[r] = mean[r] + (double)acc[r];
}

/* The 62-parameter fit of service/face_model.py (FaceModel.fit) in one call.
 *
 * points       : (n, 3) float64 FaceMesh points in image pixels (finite; checked by the caller)
 * mean         : (n, 3) float64 model mean
 * basis_t      : (K, 3n) float32 shape+expression basis, transposed
 * solver_t     : (3n, K) float32 ridge solve, transposed
 * coefficients : (K,) float64: in, the start when warm != 0 (else ignored); out, the fit
 * camera       : (12,) float64 out: [scale * R | t] row-major
 * work         : scratch of 3n float64 then 6n float32 (48n bytes)
 * spread       : (1,) float64 out: RMS distance of the points from their centroid, so the
 *                caller can reject points that do not span a face (then the fit is NaN)
 * Alternates `iterations` times: similarity fit of the current model face to the points,
 * then the ridge solve of the coefficients in the model frame; a last similarity fit.
 * The float32 products sum in another order than numpy's BLAS (agreement ~1e-6 relative).
 * Returns 0, or -1 on bad arguments. */
static inline __attribute__((always_inline)) void
fit_body(const double *points, int n, const double *mean, const float *basis_t, const float *solver_t,
         int K, int iterations, int warm, double *coefficients, double *camera, void *work)
{
    const int n3 = 3 * n;
    double *vertices = (double *)work;
    float *diff = (float *)(vertices + n3), *acc = diff + n3;
    float coef[1024];
    if (warm) {
        for (int k = 0; k < K; k++) coef[k] = (float)coefficients[k];
        model_vertices(mean, basis_t, n3, K, coef, acc, vertices);
    } else {
        for (int k = 0; k < K; k++) coefficients[k] = 0.0;
        memcpy(vertices, mean, sizeof(double) * n3);
    }
    double R[9], s, t[3];
    for (int it = 0; it < iterations; it++) {
        similarity_fit(vertices, points, n, R, &s, t);
        for (int i = 0; i < n; i++) {  /* aligned = R^T (p - t) / s, minus the mean */
            const double px = points[3 * i] - t[0], py = points[3 * i + 1] - t[1], pz = points[3 * i + 2] - t[2];
            for (int k = 0; k < 3; k++)
                diff[3 * i + k] = (float)((px * R[k] + py * R[3 + k] + pz * R[6 + k]) / s - mean[3 * i + k]);
        }
        for (int k = 0; k < K; k++) coef[k] = 0.0f;
        for (int r = 0; r < n3; r++) {  /* coef = solver @ diff as row updates (see model_vertices) */
            const float *row = solver_t + (long)r * K;
            const float d = diff[r];
            for (int k = 0; k < K; k++) coef[k] += d * row[k];
        }
        for (int k = 0; k < K; k++) coefficients[k] = (double)coef[k];
        model_vertices(mean, basis_t, n3, K, coef, acc, vertices);
    }
    similarity_fit(vertices, points, n, R, &s, t);
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) camera[4 * i + j] = s * R[3 * i + j];
        camera[4 * i + 3] = t[i];
    }
}
static void fit_sse2(const double *p, int n, const double *m, const float *b, const float *s, int K, int it,
                     int warm, double *c, double *cam, void *w) { fit_body(p, n, m, b, s, K, it, warm, c, cam, w); }
#ifdef RENDER_AVX2
/* The same code compiled for AVX2: the products run 8 floats wide instead of 4. */
__attribute__((target("avx2"))) static void fit_avx2(const double *p, int n, const double *m, const float *b,
                                                     const float *s, int K, int it, int warm, double *c,
                                                     double *cam, void *w)
{
    fit_body(p, n, m, b, s, K, it, warm, c, cam, w);
}
#endif

int model_fit(const double *points, int n, const double *mean, const float *basis_t, const float *solver_t,
              int K, int iterations, int warm, double *coefficients, double *camera, void *work, double *spread)
{
    if (!points || !mean || !basis_t || !solver_t || !coefficients || !camera || !work || !spread || n < 3
        || K <= 0 || K > 1024 || iterations < 0)
        return -1;
    double centroid[3] = {0, 0, 0}, sum_sq = 0.0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) centroid[k] += points[3 * i + k];
    for (int k = 0; k < 3; k++) centroid[k] /= n;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) sum_sq += (points[3 * i + k] - centroid[k]) * (points[3 * i + k] - centroid[k]);
    *spread = sqrt(sum_sq / n);
#ifdef RENDER_AVX2
    if (__builtin_cpu_supports("avx2")) {
        fit_avx2(points, n, mean, basis_t, solver_t, K, iterations, warm, coefficients, camera, work);
        return 0;
    }
#endif
    fit_sse2(points, n, mean, basis_t, solver_t, K, iterations, warm, coefficients, camera, work);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * one_euro_step: one frame of the One-Euro filter over n values (service/smoothing.py,
 * OneEuroFilter; its numpy code is the reference the tests compare with).
 *
 *   x          the new raw values; scale: per value divisor of the speed
 *   state_x    the previous smoothed values, replaced by the new ones
 *   state_dx   the previous smoothed speeds, replaced by the new ones
 *   Per value:  dx = (x - state_x) / dt;  state_dx += alpha(d_cutoff) (dx - state_dx);
 *               cutoff = min_cutoff + beta |state_dx| / scale;
 *               state_x += alpha(cutoff) (x - state_x),  alpha(c) = 1 / (1 + 1 / (2 pi c dt)).
 *   Returns 1 when every new smoothed value is finite, 0 when one is not, -1 on bad arguments.
 *   One pass instead of ~15 numpy calls over the face's ~1,700 values.
 * ------------------------------------------------------------------------------------------ */
int one_euro_step(int n, const double *x, const double *scale, double dt, double min_cutoff, double beta,
                  double d_cutoff, double *state_x, double *state_dx)
{
    if (n < 0 || (n > 0 && (!x || !scale || !state_x || !state_dx)) || !(dt > 0.0))
        return -1;
    const double two_pi_dt = 2.0 * 3.14159265358979323846 * dt, inverse_dt = 1.0 / dt;
    const double alpha_d = 1.0 / (1.0 + 1.0 / (two_pi_dt * d_cutoff));
    uint64_t exponents = 0;  /* an OR of exponent fields: all ones where a value is inf or NaN */
    for (int i = 0; i < n; i++) {
        const double change = x[i] - state_x[i];
        const double speed = state_dx[i] + alpha_d * (change * inverse_dt - state_dx[i]);
        /* alpha(cutoff) = 1 / (1 + 1 / c) = c / (c + 1), c = 2 pi dt cutoff: one division */
        const double c = two_pi_dt * (min_cutoff + beta * fabs(speed) / scale[i]);
        const double value = state_x[i] + c / (c + 1.0) * change;
        state_dx[i] = speed;
        state_x[i] = value;
        uint64_t bits;
        memcpy(&bits, &value, sizeof bits);
        exponents |= (~bits & 0x7ff0000000000000ULL) == 0;
    }
    return exponents == 0;
}
