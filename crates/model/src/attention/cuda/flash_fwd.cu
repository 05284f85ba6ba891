// Flash attention forward in bf16 with f32 accumulation, for dense and block-sparse attention.
//
// Compiled at run time by NVRTC (no headers: bf16 values travel as raw 16-bit words, the
// arithmetic is inline PTX), with -DHEAD_DIM=64 or 128. Needs sm_80 or newer (mma.sync with
// bf16 operands, ldmatrix, cp.async).
//
// One block of 4 warps computes 64 query rows (16 per warp) of one (batch, head). It walks
// over key tiles of 64 rows: dense attention over every tile of the keys, block-sparse
// attention over the tiles of the key blocks listed for its query block. Per tile:
//   S = Q Kᵀ (tensor cores, f32), masked and scaled to base 2;
//   online softmax: running row max m and row sum l, the output rescaled by 2^(m_old - m_new);
//   O += P V with P rounded to bf16 (tensor cores, f32).
// Q stays in registers for the whole walk; K and V tiles go through shared memory, the V tile
// loading while S is computed and the next K tile while P V is. Memory: two tiles of
// shared memory per block, nothing that grows with the number of keys.
//
// Fragment layouts are those of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"):
// lane = 4 g + t; A rows g and g+8, columns 2t, 2t+1 (+8); B column g, rows 2t, 2t+1 (+8);
// C rows g and g+8, columns 2t, 2t+1. ldmatrix hands every lane exactly these pairs.

#ifndef HEAD_DIM
#error "compile with -DHEAD_DIM=64 or -DHEAD_DIM=128"
#endif

#define BLOCK_M 64
#define BLOCK_N 64
#define THREADS 128
// Shared-memory row stride in 16-bit elements: 16 bytes of padding put the 8 rows an
// ldmatrix reads in 8 different bank groups.
#define ROW (HEAD_DIM + 8)
#define D_STEPS (HEAD_DIM / 16)
#define D_TILES (HEAD_DIM / 8)
#define N_TILES (BLOCK_N / 8)
#define CHUNKS_PER_ROW (HEAD_DIM / 8)
#define NEG_INF __int_as_float(0xff800000)

typedef unsigned short bf16_raw;
typedef unsigned int u32;
typedef long long i64;

__device__ __forceinline__ u32 smem_addr(const void* p) {
    unsigned long long a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (u32)a;
}

// 16 bytes global -> shared, zero-filled when `valid` is false (no global read then).
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, bool valid) {
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(n));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }

__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x4(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

// c += a b for one 16x8x16 tile, bf16 operands, f32 accumulators.
__device__ __forceinline__ void mma_bf16(float* c, const u32* a, u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two f32 -> packed bf16x2, `lo` in the low half (round to nearest even).
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Copies `rows` rows (at most 64) of HEAD_DIM elements into a shared tile; the remaining
// rows of the tile are zero-filled so that masked keys multiply zeros, never garbage.
__device__ __forceinline__ void load_tile(bf16_raw* tile, const bf16_raw* base, i64 row_stride,
                                          int rows) {
#pragma unroll
    for (int i = 0; i < BLOCK_M * CHUNKS_PER_ROW / THREADS; ++i) {
        int c = threadIdx.x + i * THREADS;
        int r = c / CHUNKS_PER_ROW;
        int col = (c % CHUNKS_PER_ROW) * 8;
        bool valid = r < rows;
        const bf16_raw* src = valid ? base + (i64)r * row_stride + col : base;
        cp_async16(smem_addr(tile + r * ROW + col), src, valid);
    }
}

// Where key tile `it` of this block starts and how many valid rows it has.
struct KeyTile {
    i64 row0;
    int rows;
};

__device__ __forceinline__ KeyTile key_tile(int it, int sk, const u32* ids, int tiles_per_block,
                                            int ck) {
    KeyTile t;
    int start, end;
    if (ids == 0) {
        start = it * BLOCK_N;
        end = sk;
    } else {
        int sel = it / tiles_per_block;
        int sub = it % tiles_per_block;
        int block_start = (int)ids[sel] * ck;
        start = block_start + sub * BLOCK_N;
        end = min(block_start + ck, sk);
    }
    t.row0 = start;
    t.rows = max(0, min(BLOCK_N, end - start));
    return t;
}

// Dense: grid (ceil(sq / 64), heads, batch); `block_ids == 0`.
// Block sparse: grid (nq * ceil(cq / 64), heads, batch) over chunk-ordered tokens; query
// block i of (batch b, head h) attends to key blocks block_ids[((b*heads + h)*nq + i)*width
// + s] for s < block_lens[(b*heads + h)*nq + i]. A query row with no key gets zeros.
// `key_bias` (nullable, f32 [batch, sk] with batch stride `bias_sb`) is added to the scores
// in natural-log units; `scale_log2` is the softmax scale times log2(e). Strides are in
// elements; the last dimension is contiguous and every row starts 16-byte aligned.
extern "C" __global__ void __launch_bounds__(THREADS)
    longcat_flash_fwd_bf16(const bf16_raw* __restrict__ q, const bf16_raw* __restrict__ k,
                           const bf16_raw* __restrict__ v, bf16_raw* __restrict__ o,
                           i64 q_sb, i64 q_sh, i64 q_ss, i64 k_sb, i64 k_sh, i64 k_ss, i64 v_sb,
                           i64 v_sh, i64 v_ss, i64 o_sb, i64 o_sh, i64 o_ss, int heads, int sq,
                           int sk, float scale_log2, const float* __restrict__ key_bias,
                           i64 bias_sb, const u32* __restrict__ block_ids,
                           const u32* __restrict__ block_lens, int nq, int width, int cq, int ck) {
    __shared__ __align__(128) bf16_raw k_tile[BLOCK_N * ROW];
    __shared__ __align__(128) bf16_raw v_tile[BLOCK_N * ROW];

    const int b = blockIdx.z;
    const int h = blockIdx.y;
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int g = lane / 4;
    const int t4 = lane % 4;

    // This block's query rows and key tiles.
    int q_start, q_rows, n_tiles, tiles_per_block = 1;
    const u32* ids = 0;
    if (block_ids == 0) {
        q_start = blockIdx.x * BLOCK_M;
        q_rows = min(BLOCK_M, sq - q_start);
        n_tiles = (sk + BLOCK_N - 1) / BLOCK_N;
    } else {
        const int q_tiles_per_block = (cq + BLOCK_M - 1) / BLOCK_M;
        const int qb = blockIdx.x / q_tiles_per_block;
        const int sub = blockIdx.x % q_tiles_per_block;
        const i64 row = ((i64)b * heads + h) * nq + qb;
        q_start = qb * cq + sub * BLOCK_M;
        q_rows = min(BLOCK_M, cq - sub * BLOCK_M);
        tiles_per_block = (ck + BLOCK_N - 1) / BLOCK_N;
        ids = block_ids + row * width;
        n_tiles = (int)min((u32)width, block_lens[row]) * tiles_per_block;
    }
    q_rows = min(q_rows, sq - q_start);
    if (q_rows <= 0) return;

    const bf16_raw* q_base = q + b * q_sb + h * q_sh + (i64)q_start * q_ss;
    const bf16_raw* k_base = k + b * k_sb + h * k_sh;
    const bf16_raw* v_base = v + b * v_sb + h * v_sh;
    const float* bias = key_bias == 0 ? 0 : key_bias + b * bias_sb;

    // Q -> shared (through the K tile) -> registers as A fragments, one per 16 columns.
    u32 qf[D_STEPS][4];
    load_tile(k_tile, q_base, q_ss, q_rows);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
    {
        const int r = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int c = (lane >> 4) * 8;
#pragma unroll
        for (int kk = 0; kk < D_STEPS; ++kk)
            ldmatrix_x4(smem_addr(k_tile + r * ROW + kk * 16 + c), qf[kk][0], qf[kk][1],
                        qf[kk][2], qf[kk][3]);
    }
    __syncthreads();

    float acc[D_TILES][4];
#pragma unroll
    for (int j = 0; j < D_TILES; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    // Rows g and g+8 of this warp's 16: running max (base 2) and this thread's partial sum.
    float m_run[2] = {NEG_INF, NEG_INF};
    float l_run[2] = {0.f, 0.f};

    if (n_tiles > 0) {
        KeyTile first = key_tile(0, sk, ids, tiles_per_block, ck);
        load_tile(k_tile, k_base + first.row0 * k_ss, k_ss, first.rows);
        cp_async_commit();
    }

    for (int it = 0; it < n_tiles; ++it) {
        const KeyTile kt = key_tile(it, sk, ids, tiles_per_block, ck);
        cp_async_wait_all();
        __syncthreads();  // K tile `it` is in; every warp is done with the previous V tile.
        load_tile(v_tile, v_base + kt.row0 * v_ss, v_ss, kt.rows);
        cp_async_commit();

        // S = Q Kᵀ for this warp's 16 rows and the tile's 64 keys.
        float s[N_TILES][4];
#pragma unroll
        for (int j = 0; j < N_TILES; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
        for (int jj = 0; jj < N_TILES / 2; ++jj) {
            const int r = jj * 16 + (lane & 7) + (lane >> 4) * 8;
            const int c = ((lane >> 3) & 1) * 8;
#pragma unroll
            for (int kk = 0; kk < D_STEPS; ++kk) {
                u32 b0, b1, b2, b3;
                ldmatrix_x4(smem_addr(k_tile + r * ROW + kk * 16 + c), b0, b1, b2, b3);
                mma_bf16(s[2 * jj], qf[kk], b0, b1);
                mma_bf16(s[2 * jj + 1], qf[kk], b2, b3);
            }
        }

        // Mask, scale to base 2, online softmax.
        float tile_max[2] = {NEG_INF, NEG_INF};
#pragma unroll
        for (int j = 0; j < N_TILES; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int col = j * 8 + 2 * t4 + (e & 1);
                float x = NEG_INF;
                if (col < kt.rows) {
                    x = s[j][e] * scale_log2;
                    if (bias != 0) x += bias[kt.row0 + col] * 1.4426950408889634f;
                }
                s[j][e] = x;
                tile_max[e >> 1] = fmaxf(tile_max[e >> 1], x);
            }
        }
        float alpha[2], m_use[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = tile_max[r];
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
            const float m_new = fmaxf(m_run[r], mx);
            // A row that has seen only masked keys keeps m = -inf; use 0 as its base so that
            // no exponent is (-inf) - (-inf).
            m_use[r] = m_new == NEG_INF ? 0.f : m_new;
            alpha[r] = exp2_approx(m_run[r] - m_use[r]);
            m_run[r] = m_new;
            l_run[r] *= alpha[r];
        }
#pragma unroll
        for (int j = 0; j < D_TILES; ++j) {
            acc[j][0] *= alpha[0];
            acc[j][1] *= alpha[0];
            acc[j][2] *= alpha[1];
            acc[j][3] *= alpha[1];
        }
        // P in bf16 as A fragments: key columns 16kk..16kk+15 are S tiles 2kk and 2kk+1.
        u32 pf[N_TILES / 2][4];
#pragma unroll
        for (int kk = 0; kk < N_TILES / 2; ++kk) {
            float p[2][4];
#pragma unroll
            for (int half = 0; half < 2; ++half) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const float x = exp2_approx(s[2 * kk + half][e] - m_use[e >> 1]);
                    p[half][e] = x;
                    l_run[e >> 1] += x;
                }
            }
            pf[kk][0] = pack_bf16(p[0][0], p[0][1]);
            pf[kk][1] = pack_bf16(p[0][2], p[0][3]);
            pf[kk][2] = pack_bf16(p[1][0], p[1][1]);
            pf[kk][3] = pack_bf16(p[1][2], p[1][3]);
        }

        cp_async_wait_all();
        __syncthreads();  // V tile `it` is in; every warp is done with the K tile.
        if (it + 1 < n_tiles) {
            const KeyTile next = key_tile(it + 1, sk, ids, tiles_per_block, ck);
            load_tile(k_tile, k_base + next.row0 * k_ss, k_ss, next.rows);
            cp_async_commit();
        }

        // O += P V: V rows are keys (the k dimension), read transposed by ldmatrix.
#pragma unroll
        for (int jd = 0; jd < D_TILES / 2; ++jd) {
            const int c = jd * 16 + (lane >> 4) * 8;
#pragma unroll
            for (int kk = 0; kk < N_TILES / 2; ++kk) {
                const int r = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                u32 b0, b1, b2, b3;
                ldmatrix_x4_trans(smem_addr(v_tile + r * ROW + c), b0, b1, b2, b3);
                mma_bf16(acc[2 * jd], pf[kk], b0, b1);
                mma_bf16(acc[2 * jd + 1], pf[kk], b2, b3);
            }
        }
    }

    // Row sums across the 4 threads that share a row, then O / l (0 for a row with no key).
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = l_run[r];
        l += __shfl_xor_sync(0xffffffff, l, 1);
        l += __shfl_xor_sync(0xffffffff, l, 2);
        inv[r] = l > 0.f ? 1.f / l : 0.f;
    }
    bf16_raw* o_base = o + b * o_sb + h * o_sh + (i64)q_start * o_ss;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = warp * 16 + g + r * 8;
        if (row < q_rows) {
            u32* dst_row = (u32*)(o_base + (i64)row * o_ss);
#pragma unroll
            for (int j = 0; j < D_TILES; ++j)
                dst_row[(j * 8 + 2 * t4) / 2] =
                    pack_bf16(acc[j][2 * r] * inv[r], acc[j][2 * r + 1] * inv[r]);
        }
    }
}
