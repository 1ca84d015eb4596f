/* render.c - small CPU triangle-mesh renderer for face-mesh overlays (C99, libc/libm only).
 *
 * int render_abi_version(void);
 *     Returns RENDER_ABI_VERSION (1). Bumped whenever render_mesh's signature or
 *     semantics change, so the Python binding can detect a stale librender.so.
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
 *   zbuffer        float32 scratch of height*width; idbuffer int32 scratch of height*width.
 *                  Only the bounding box of the mesh (clipped to the image) is initialised
 *                  and used, so the cost scales with the face, not the frame.
 *
 *   A pixel (row i, col j) is covered when its centre (x=j, y=i) is inside a triangle,
 *   with a top-left rule for centres exactly on an edge, so triangles sharing an edge
 *   never both draw, nor both skip, a pixel. Degenerate triangles and triangles with a
 *   non-finite vertex are skipped. The nearest (smallest interpolated z) surface wins,
 *   and only it is shaded and blended (once per pixel), so hidden surfaces never show
 *   through when alpha < 1.
 *
 *   Returns RENDER_OK (0), or without touching the image:
 *   RENDER_ERR_ARGS (-1)  null pointer / negative size,
 *   RENDER_ERR_INDEX (-2) a triangle index outside [0, n_vertices),
 *   RENDER_ERR_NOMEM (-3) out of memory (per-vertex normal scratch).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define RENDER_ABI_VERSION 1
#define RENDER_OK 0
#define RENDER_ERR_ARGS (-1)
#define RENDER_ERR_INDEX (-2)
#define RENDER_ERR_NOMEM (-3)
#define SPEC_LUT 1024 /* powf per vertex costs more than the rest of the shading: tabulate it */

int render_abi_version(void) { return RENDER_ABI_VERSION; }

/* One triangle edge prepared for exact, order-independent evaluation.
 * The edge function is always computed from the lexicographically smaller endpoint
 * (ox, oy) along (dx, dy), then multiplied by a sign. For an edge shared by two
 * triangles both therefore compute bit-identical magnitudes with opposite signs
 * (IEEE negation and round-to-nearest are symmetric), which is what makes the fill
 * rule watertight; evaluating from different endpoints would not be. Doubles: with
 * float inputs the products are (nearly) exact, so ties are genuine. */
typedef struct { double ox, oy, dx, dy; int tie; } Edge;

static inline Edge edge_setup(double ax, double ay, double bx, double by, double sign)
{
    Edge e;
    int swap = (bx < ax) || (bx == ax && by < ay);
    e.ox = swap ? bx : ax; e.oy = swap ? by : ay;
    sign = swap ? -sign : sign;
    e.dx = sign * (swap ? ax - bx : bx - ax);
    e.dy = sign * (swap ? ay - by : by - ay);
    /* Top-left rule: a centre exactly on the edge belongs to this triangle when the
     * inward gradient (-dy, dx) points right (left edge) or straight down (top edge,
     * y down). The neighbour's gradient is the exact negation, so exactly one owns it. */
    e.tie = (e.dy < 0) || (e.dy == 0 && e.dx > 0);
    return e;
}

static inline double edge_eval(const Edge *e, double px, double py)
{
    return e->dx * (py - e->oy) - e->dy * (px - e->ox);
}

/* Bitwise, not ||/&&: for sub-pixel triangles the outcome is random, so one combined
 * branch mispredicts less than a chain of short-circuit branches. */
static inline int edge_in(const Edge *e, double v) { return (v > 0) | ((v == 0) & e->tie); }

/* Written as ternaries so they compile to minss/maxss: the libm calls (and ceil/floor,
 * which need SSE4.1, not assumed) dominated the per-triangle cost. */
static inline float min3f(float a, float b, float c) { a = a < b ? a : b; return a < c ? a : c; }
static inline float max3f(float a, float b, float c) { a = a > b ? a : b; return a > c ? a : c; }
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

static inline uint8_t blend(uint8_t old, float shaded, float alpha)
{
    float v = old + alpha * (255.0f * shaded - old);
    v = v > 0.0f ? v : 0.0f; /* also maps NaN (e.g. NaN vertex colours) to 0 */
    v = v < 255.0f ? v : 255.0f;
    return (uint8_t)(int)(v + 0.5f);
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

    /* Validate every index before writing anything, so an error leaves the image intact.
     * Branch-free accumulation so the loop vectorises. */
    int bad = 0;
    for (long k = 0; k < 3L * n_triangles; k++)
        bad |= (uint32_t)triangles[k] >= (uint32_t)n_vertices;
    if (bad) return RENDER_ERR_INDEX;

    /* Scratch: per-vertex normals, and a per-vertex "all coordinates finite" flag so
     * triangles touching a NaN/inf vertex are skipped with three byte loads. */
    float *normals = calloc((size_t)n_vertices * 3 * sizeof(float) + (size_t)n_vertices, 1);
    if (!normals) return RENDER_ERR_NOMEM;
    unsigned char *ok = (unsigned char *)(normals + 3L * n_vertices);

    /* Bounding box of the finite vertices, clipped: the only region we touch. */
    float bx0 = INFINITY, by0 = INFINITY, bx1 = -INFINITY, by1 = -INFINITY;
    for (int v = 0; v < n_vertices; v++) {
        const float *p = vertices + 3L * v;
        ok[v] = isfinite(p[0]) && isfinite(p[1]) && isfinite(p[2]);
        if (!ok[v]) continue;
        bx0 = p[0] < bx0 ? p[0] : bx0; bx1 = p[0] > bx1 ? p[0] : bx1;
        by0 = p[1] < by0 ? p[1] : by0; by1 = p[1] > by1 ? p[1] : by1;
    }
    int X0 = ceil_in(bx0, 0, width - 1), X1 = floor_in(bx1, 0, width - 1);
    int Y0 = ceil_in(by0, 0, height - 1), Y1 = floor_in(by1, 0, height - 1);
    X0 = X0 > 0 ? X0 : 0; X1 = X1 < width - 1 ? X1 : width - 1;
    Y0 = Y0 > 0 ? Y0 : 0; Y1 = Y1 < height - 1 ? Y1 : height - 1;
    if (X0 > X1 || Y0 > Y1) { free(normals); return RENDER_OK; } /* nothing on screen */

    for (int y = Y0; y <= Y1; y++) {
        float *zr = zbuffer + (long)y * width;
        int32_t *ir = idbuffer + (long)y * width;
        for (int x = X0; x <= X1; x++) { zr[x] = INFINITY; ir[x] = -1; }
    }

    /* Pass 1: depth only. Remember the winning triangle per pixel so that pass 2
     * shades and blends exactly one fragment per pixel. Area-weighted vertex normals
     * (unnormalised cross products summed) are accumulated in the same loop. */
    for (int t = 0; t < n_triangles; t++) {
        const int32_t *tri = triangles + 3L * t;
        const int i0 = tri[0], i1 = tri[1], i2 = tri[2];
        if (!(ok[i0] & ok[i1] & ok[i2])) continue;
        const float *a = vertices + 3L * i0, *b = vertices + 3L * i1, *c = vertices + 3L * i2;

        float ux = b[0] - a[0], uy = b[1] - a[1], uz = b[2] - a[2];
        float wx = c[0] - a[0], wy = c[1] - a[1], wz = c[2] - a[2];
        float nx = uy * wz - uz * wy, ny = uz * wx - ux * wz, nz = ux * wy - uy * wx;
        float *na = normals + 3L * i0, *nb = normals + 3L * i1, *nc = normals + 3L * i2;
        na[0] += nx; na[1] += ny; na[2] += nz;
        nb[0] += nx; nb[1] += ny; nb[2] += nz;
        nc[0] += nx; nc[1] += ny; nc[2] += nz;

        /* Pixel centres inside the triangle's (clipped) box. Face triangles are about a
         * pixel in size, so this cheap test comes before the edge setup. */
        int x0 = ceil_in(min3f(a[0], b[0], c[0]), X0, X1), x1 = floor_in(max3f(a[0], b[0], c[0]), X0, X1);
        int y0 = ceil_in(min3f(a[1], b[1], c[1]), Y0, Y1), y1 = floor_in(max3f(a[1], b[1], c[1]), Y0, Y1);
        x0 = x0 > X0 ? x0 : X0; x1 = x1 < X1 ? x1 : X1;
        y0 = y0 > Y0 ? y0 : Y0; y1 = y1 < Y1 ? y1 : Y1;
        if (x0 > x1 || y0 > y1) continue;

        /* Twice the signed area, in double (float inputs make it nearly exact). */
        double ax = a[0], ay = a[1], bx = b[0], by = b[1], cx = c[0], cy = c[1];
        double area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
        if (area == 0) continue; /* degenerate */
        double sign = area > 0 ? 1.0 : -1.0, inv = 1.0 / fabs(area);
        Edge eab = edge_setup(ax, ay, bx, by, sign);
        Edge ebc = edge_setup(bx, by, cx, cy, sign);
        Edge eca = edge_setup(cx, cy, ax, ay, sign);
        double za = a[2] * inv, zb = b[2] * inv, zc = c[2] * inv;

        for (int y = y0; y <= y1; y++) {
            float *zr = zbuffer + (long)y * width;
            int32_t *ir = idbuffer + (long)y * width;
            for (int x = x0; x <= x1; x++) {
                double e0 = edge_eval(&ebc, x, y), e1 = edge_eval(&eca, x, y), e2 = edge_eval(&eab, x, y);
                if (!(edge_in(&ebc, e0) & edge_in(&eca, e1) & edge_in(&eab, e2))) continue;
                float z = (float)(e0 * za + e1 * zb + e2 * zc);
                if (z < zr[x]) { zr[x] = z; ir[x] = t; } /* ties: first triangle keeps it */
            }
        }
    }

    /* Light L and Blinn half vector H = normalise(L + V), viewer direction V = (0,0,-1). */
    float L[3] = {0.0f, 0.0f, -1.0f};
    if (light_dir) {
        float len = sqrtf(light_dir[0] * light_dir[0] + light_dir[1] * light_dir[1] + light_dir[2] * light_dir[2]);
        if (len > 0 && isfinite(len)) { L[0] = light_dir[0] / len; L[1] = light_dir[1] / len; L[2] = light_dir[2] / len; }
    }
    float H[3] = {L[0], L[1], L[2] - 1.0f};
    float hl = sqrtf(H[0] * H[0] + H[1] * H[1] + H[2] * H[2]);
    if (hl > 0) { H[0] /= hl; H[1] /= hl; H[2] /= hl; } else { H[0] = 0; H[1] = 0; H[2] = -1; }
    float lut[SPEC_LUT + 2];
    for (int k = 0; k <= SPEC_LUT; k++)
        lut[k] = specular != 0.0f ? specular * powf((float)k / SPEC_LUT, shininess) : 0.0f;
    lut[SPEC_LUT + 1] = lut[SPEC_LUT]; /* guard for the linear interpolation at 1.0 */
    const float grey[3] = {0.8f, 0.8f, 0.8f};
    const float *base = base_color ? base_color : grey;

    /* Gouraud: light each vertex once and overwrite its normal with its shaded colour.
     * Face meshes this dense have (sub-)pixel triangles, where per-pixel lighting looks
     * the same but costs a normalisation per pixel instead of per vertex. */
    float *shaded = normals;
    for (int v = 0; v < n_vertices; v++) {
        float *n = normals + 3L * v;
        float len2 = n[0] * n[0] + n[1] * n[1] + n[2] * n[2];
        float n0 = 0, n1 = 0, n2 = -1;
        if (len2 > 1e-30f && isfinite(len2)) {
            float s = 1.0f / sqrtf(len2);
            s = n[2] > 0 ? -s : s; /* two-sided: face the viewer (toward -z) */
            n0 = n[0] * s; n1 = n[1] * s; n2 = n[2] * s;
        }
        float ndl = n0 * L[0] + n1 * L[1] + n2 * L[2];
        float lit = ambient + diffuse * (ndl > 0 ? ndl : 0);
        float f = n0 * H[0] + n1 * H[1] + n2 * H[2];
        f = f > 0 ? f : 0; f = f < 1 ? f : 1; f *= SPEC_LUT;
        int k = (int)f;
        float spec = lut[k] + (f - k) * (lut[k + 1] - lut[k]);
        const float *col = vertex_colors ? vertex_colors + 3L * v : base;
        shaded[3L * v + 0] = col[0] * lit + spec;
        shaded[3L * v + 1] = col[1] * lit + spec;
        shaded[3L * v + 2] = col[2] * lit + spec;
    }

    /* Pass 2: blend the single visible fragment of each covered pixel. */
    for (int y = Y0; y <= Y1; y++) {
        const int32_t *ir = idbuffer + (long)y * width;
        uint8_t *row = image + (long)y * width * 3;
        for (int x = X0; x <= X1; x++) {
            const int t = ir[x];
            if (t < 0) continue;
            const int32_t *tri = triangles + 3L * t;
            const int i0 = tri[0], i1 = tri[1], i2 = tri[2];
            const float *a = vertices + 3L * i0, *b = vertices + 3L * i1, *c = vertices + 3L * i2;
            /* Barycentric weights of the pixel centre (only for interpolation); double,
             * like pass 1, so far-off (huge) vertices cannot overflow here. */
            double ux = (double)b[0] - a[0], uy = (double)b[1] - a[1], wx = (double)c[0] - a[0], wy = (double)c[1] - a[1];
            double px = x - (double)a[0], py = y - (double)a[1], id = 1.0 / (ux * wy - uy * wx);
            float w1 = (float)((px * wy - py * wx) * id), w2 = (float)((ux * py - uy * px) * id), w0 = 1.0f - w1 - w2;
            const float *sa = shaded + 3L * i0, *sb = shaded + 3L * i1, *sc = shaded + 3L * i2;
            uint8_t *p3 = row + 3L * x;
            float c0 = w0 * sa[0] + w1 * sb[0] + w2 * sc[0];
            float c1 = w0 * sa[1] + w1 * sb[1] + w2 * sc[1];
            float c2 = w0 * sa[2] + w1 * sb[2] + w2 * sc[2];
            p3[0] = blend(p3[0], c0, alpha);
            p3[1] = blend(p3[1], c1, alpha);
            p3[2] = blend(p3[2], c2, alpha);
        }
    }
    free(normals);
    return RENDER_OK;
}
