/* digest.c - line digests: DIFF twins an eighth of a page (FG_TWIN_DIGEST).
 *
 * A digest twin keeps, for each 64-byte line of a page, a 64-bit value
 * instead of the line's bytes.  A line reads changed when its digest now
 * differs from the one taken at the epoch start.
 *
 * The digest of a line of eight little-endian 64-bit words w1..w8 is
 *
 *	H_k(w) = w1 k + w2 k^2 + ... + w8 k^8
 *
 * in GF(2^64) = GF(2)[x] / (x^64 + x^4 + x^3 + x + 1), with k a secret
 * key, random and nonzero, drawn once per tracker.  Two different lines
 * w, v have equal digests iff k is a root of sum (w_i + v_i) x^i, a
 * nonzero polynomial of degree at most 8 without a constant term: x
 * times one of degree at most 7, which has at most 7 roots.  So a changed
 * line reads unchanged with probability at most 7 / (2^64 - 1) per
 * comparison, whatever the data, as long as what the program writes does
 * not depend on k (it is never exposed).  A change confined to one 64-bit
 * word is always seen: (w_i + v_i) k^i is nonzero.
 *
 * The sum is taken without reduction (carry-less products of a word and a
 * key power, XORed, 127 bits) and reduced once per line.  Two versions,
 * equal by construction and checked equal by tests/test_digest: 128-bit
 * PCLMULQDQ (x86-64 since 2010), and 512-bit VPCLMULQDQ with AVX-512
 * (one instruction multiplies four word pairs: about 165 ns a 4 KiB page
 * here, against 400 for the 128-bit one, and 190-290 for its memcpy).
 * Without PCLMULQDQ there are no digests (fg_digest_init fails).
 *
 * Pure computation: no lock, no allocation, callable from a fault
 * handler.
 */
#include "fg_internal.h"

#include <errno.h>
#include <immintrin.h>
#include <string.h>
#include <sys/random.h>

#define LINE 64
#define POLY 0x1bu /* x^4 + x^3 + x + 1: the field's x^64 */

/* a * b in GF(2^64), bit by bit: for the key powers and the tests. */
uint64_t fg_digest_gf_mul(uint64_t a, uint64_t b)
{
	uint64_t r = 0;

	for (int i = 0; i < 64; i++) {
		if (b & 1)
			r ^= a;
		b >>= 1;
		a = (a << 1) ^ (a >> 63 ? POLY : 0);
	}
	return r;
}

/* The 127-bit x (hi:lo) reduced: x_hi x^64 = x_hi (x^4 + x^3 + x + 1),
 * at most 68 bits, whose top 4 bits fold once more. */
__attribute__((target("pclmul,sse4.1"))) static inline uint64_t
reduce(__m128i x)
{
	const __m128i p = _mm_cvtsi64_si128(POLY);
	__m128i t = _mm_clmulepi64_si128(x, p, 0x01);
	__m128i u = _mm_clmulepi64_si128(t, p, 0x01);

	return (uint64_t)_mm_cvtsi128_si64(
		_mm_xor_si128(_mm_xor_si128(x, t), u));
}

__attribute__((target("pclmul,sse4.1"))) static inline uint64_t
line128(const fg_digest_key *k, const uint8_t *l)
{
	__m128i x = _mm_setzero_si128();

	for (int i = 0; i < 4; i++) {
		__m128i w = _mm_loadu_si128((const __m128i *)l + i);
		__m128i kk = _mm_loadu_si128((const __m128i *)k->pow + i);

		x = _mm_xor_si128(x, _mm_clmulepi64_si128(w, kk, 0x00));
		x = _mm_xor_si128(x, _mm_clmulepi64_si128(w, kk, 0x11));
	}
	return reduce(x);
}

__attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.1"))) static inline uint64_t
line512(__m512i kk, const uint8_t *l)
{
	__m512i w = _mm512_loadu_si512(l);
	__m512i x = _mm512_xor_si512(_mm512_clmulepi64_epi128(w, kk, 0x00),
				     _mm512_clmulepi64_epi128(w, kk, 0x11));
	__m256i y = _mm256_xor_si256(_mm512_castsi512_si256(x),
				     _mm512_extracti64x4_epi64(x, 1));

	return reduce(_mm_xor_si128(_mm256_castsi256_si128(y),
				    _mm256_extracti128_si256(y, 1)));
}

__attribute__((target("pclmul,sse4.1"))) static void
page128(const fg_digest_key *k, uint64_t *d, const uint8_t *p, size_t n)
{
	for (size_t g = 0; g < n; g++)
		d[g] = line128(k, p + g * LINE);
}

__attribute__((target("pclmul,sse4.1"))) static uint64_t
changed128(const fg_digest_key *k, const uint8_t *p, const uint64_t *d,
	   size_t n)
{
	uint64_t m = 0;

	for (size_t g = 0; g < n; g++)
		m |= (uint64_t)(line128(k, p + g * LINE) != d[g]) << g;
	return m;
}

__attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.1"))) static void
page512(const fg_digest_key *k, uint64_t *d, const uint8_t *p, size_t n)
{
	__m512i kk = _mm512_loadu_si512(k->pow);

	for (size_t g = 0; g < n; g++)
		d[g] = line512(kk, p + g * LINE);
}

__attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.1"))) static uint64_t
changed512(const fg_digest_key *k, const uint8_t *p, const uint64_t *d,
	   size_t n)
{
	__m512i kk = _mm512_loadu_si512(k->pow);
	uint64_t m = 0;

	for (size_t g = 0; g < n; g++)
		m |= (uint64_t)(line512(kk, p + g * LINE) != d[g]) << g;
	return m;
}

static bool have_pclmul(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("pclmul") &&
	       __builtin_cpu_supports("sse4.1");
}

static bool have_vpclmul(void)
{
	return have_pclmul() && __builtin_cpu_supports("avx512f") &&
	       __builtin_cpu_supports("avx512vl") &&
	       __builtin_cpu_supports("vpclmulqdq");
}

int fg_digest_set_key(fg_digest_key *k, uint64_t key, int impl)
{
	uint64_t p = key;

	if (!key)
		return fg_fail(-EINVAL, "line digests: the key must be nonzero");
	if (!have_pclmul())
		return fg_fail(-FG_EUNAVAIL,
			       "line digests (FG_TWIN_DIGEST) need the "
			       "PCLMULQDQ instruction, which this CPU lacks; "
			       "use copies (FG_TWIN_FORM=copy)");
	if (impl == FG_DIGEST_ANY)
		impl = have_vpclmul() ? FG_DIGEST_512 : FG_DIGEST_128;
	if (impl == FG_DIGEST_512 && !have_vpclmul())
		return fg_fail(-FG_EUNAVAIL, "line digests: this CPU has no "
					     "AVX-512 VPCLMULQDQ");
	if (impl != FG_DIGEST_128 && impl != FG_DIGEST_512)
		return fg_fail(-EINVAL, "line digests: version %d unknown",
			       impl);
	for (int i = 0; i < 8; i++) {
		k->pow[i] = p;
		p = fg_digest_gf_mul(p, key);
	}
	k->impl = impl;
	return 0;
}

int fg_digest_init(fg_digest_key *k)
{
	uint64_t key = 0;

	/* getrandom(2) blocks only before the pool is first seeded, at
	 * boot; a short read cannot happen for 8 bytes. */
	while (!key) {
		ssize_t n = getrandom(&key, sizeof key, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof key)
			return fg_fail(-errno, "line digests: no random key "
					       "from getrandom (%s)",
				       strerror(errno));
	}
	return fg_digest_set_key(k, key, FG_DIGEST_ANY);
}

void fg_digest_page(const fg_digest_key *k, uint64_t *d, const void *page,
		    size_t lines)
{
	if (k->impl == FG_DIGEST_512)
		page512(k, d, page, lines);
	else
		page128(k, d, page, lines);
}

uint64_t fg_digest_changed(const fg_digest_key *k, const void *page,
			   const uint64_t *d, size_t lines)
{
	return k->impl == FG_DIGEST_512 ? changed512(k, page, d, lines)
					: changed128(k, page, d, lines);
}

void fg_digest_lines(const fg_digest_key *k, uint64_t *d, const void *page,
		     uint64_t mask)
{
	while (mask) {
		unsigned g = (unsigned)__builtin_ctzll(mask);

		if (k->impl == FG_DIGEST_512)
			page512(k, d + g, (const uint8_t *)page + g * LINE, 1);
		else
			page128(k, d + g, (const uint8_t *)page + g * LINE, 1);
		mask &= mask - 1;
	}
}
