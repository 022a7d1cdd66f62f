/* SPDX-License-Identifier: GPL-2.0 */
/* The firewall: rules, prefix sets and per-source rate limits, in front of
 * everything else the router decides (forwarded frames and frames for the
 * router itself alike).
 *
 * Classification does not scan the rules. Each field is one lookup that
 * returns a bitmap of the rule positions it matches (ingress interface and
 * protocol: a hash; source and destination: an LPM trie; each port: an
 * array). Rules that reference a prefix set are taken out again when the
 * set's trie does not hold the address. The AND of the bitmaps is the set of
 * matching rules, and its lowest bit the first match. A summary word (one bit
 * per non-zero bitmap word) skips empty words, and an anchor summary (one bit
 * per word holding a rule anchored on the field: each rule is anchored on one
 * field it names) skips words where only wildcards matched, so a frame that
 * matches no rule usually costs the lookups and a few ANDs, whatever the
 * number of rules.
 *
 * Order: position 0 first. An allow or drop rule ends the search; a limit
 * rule drops what is over its bucket and lets the rest go on to the next
 * matching rule. Each interface's default policy is the implicit last rule.
 *
 * In front of all this, a pre-filter (fw_candidate()): presence bitmaps of
 * the values rules are anchored on, so a frame that no rule can match costs
 * a few array reads whatever the rule set. Fields no rule names are not
 * looked up at all (FwGen.named).
 *
 * firewall_ipv4()/firewall_ipv6() return -1 to go on, or a reason (drop).
 */
#ifndef XDPR_FIREWALL_H
#define XDPR_FIREWALL_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"
#include "maps.h"
#include "frame.h"
#include "parsing.h"

#define FW_NS_PER_SEC 1000000000ULL
#define FW_SRC 0
#define FW_DST 1

/* What the classifier looks at, gathered from the headers. */
struct fw_pkt {
	__u8 src[16];
	__u8 dst[16];
	__u32 gen;
	__u32 family;	/* 4 or 6 */
	__u32 ifindex;
	__u32 proto;
	__u32 sport;	/* host order, FW_NOPORT, or FW_ICMP_SLOT + ICMP type */
	__u32 dport;
	__u64 len;
};

/* Index of the lowest set bit of a non-zero word, by halving: BPF has no
 * count-trailing-zeros instruction.
 */
static __always_inline __u32 fw_ctz(__u64 w)
{
	__u32 n = 0;

	if (!(w & 0xffffffffULL)) {
		n += 32;
		w >>= 32;
	}
	if (!(w & 0xffff)) {
		n += 16;
		w >>= 16;
	}
	if (!(w & 0xff)) {
		n += 8;
		w >>= 8;
	}
	if (!(w & 0xf)) {
		n += 4;
		w >>= 4;
	}
	if (!(w & 0x3)) {
		n += 2;
		w >>= 2;
	}
	if (!(w & 0x1))
		n += 1;
	return n;
}

static __always_inline struct fw_bitmap *fw_bitmap(__u32 id)
{
	return bpf_map_lookup_elem(&xdpr_fw_bitmaps, &id);
}

/* Field lookups give a bitmap id, FW_NO_BITMAP when there is none. */
#define FW_NO_BITMAP 0xffffffffu

static __always_inline __u32 fw_id(const __u32 *id)
{
	return id ? *id : FW_NO_BITMAP;
}

/* The rules a source or destination address is covered by: for IPv4,
 * its /16's entry when no longer rule prefix falls in that /16, else (and
 * for IPv6) the longest prefix in the trie.
 */
static __always_inline __u32 fw_addr_id(const struct fw_pkt *p, __u32 dir)
{
	struct fw_lpm_key key = {};
	__u32 top, idx, *id;

	if (p->family == 4) {
		__builtin_memcpy(&top, dir == FW_SRC ? p->src : p->dst, 4);
		idx = (p->gen * 2 + dir) * FW_DIR16_SLOTS + (bpf_ntohl(top) >> 16);
		id = bpf_map_lookup_elem(&xdpr_fw_dir16, &idx);
		if (id && *id != FW_DIR16_TRIE)
			return *id;
	}

	key.prefixlen = 32 + (p->family == 4 ? 32 : 128);
	key.tag[0] = p->gen;
	key.tag[1] = dir;
	key.tag[2] = p->family;
	__builtin_memcpy(key.addr, dir == FW_SRC ? p->src : p->dst, 16);
	return fw_id(bpf_map_lookup_elem(&xdpr_fw_lpm, &key));
}

static __always_inline __u32 fw_port_id(const struct fw_pkt *p, __u32 dir,
					__u32 port)
{
	__u32 idx = (p->gen * 2 + dir) * FW_PORT_SLOTS + port;

	return fw_id(bpf_map_lookup_elem(&xdpr_fw_ports, &idx));
}

/* Interface and protocol: the control plane writes every combination of the
 * interfaces and protocols rules name (and "any" of each), so the first hit
 * of these four lookups is the right one. Lookups for an interface or a
 * protocol when no rule names one could not hit, and are left out.
 */
static __always_inline __u32 fw_ifproto_id(const struct fw_pkt *p, __u32 named)
{
	struct fw_ifproto_key key = { .gen = p->gen };
	__u32 *id = NULL;

	if (named & FW_NAMES_IFACE) {
		key.ifindex = p->ifindex;
		if (named & FW_NAMES_PROTO) {
			key.proto = p->proto;
			id = bpf_map_lookup_elem(&xdpr_fw_ifproto, &key);
		}
		if (!id) {
			key.proto = FW_ANY_PROTO;
			id = bpf_map_lookup_elem(&xdpr_fw_ifproto, &key);
		}
	}
	key.ifindex = 0;
	if (!id && (named & FW_NAMES_PROTO)) {
		key.proto = p->proto;
		id = bpf_map_lookup_elem(&xdpr_fw_ifproto, &key);
	}
	if (!id) {
		key.proto = FW_ANY_PROTO;
		id = bpf_map_lookup_elem(&xdpr_fw_ifproto, &key);
	}
	return fw_id(id);
}

/* Is the IPv4 address in the set in this slot? Its /16 is held whole, or
 * its /24's leaf has the address's bit. One map: the set's IPv4 part
 * changes with one pointer.
 */
static __always_inline bool fw_set_has4(const __u8 *addr, __u32 slot)
{
	void *leaves = bpf_map_lookup_elem(&xdpr_fw_setleaf, &slot);
	struct fw_set_leaf *leaf;
	__u32 host, key;

	if (!leaves)
		return false;
	__builtin_memcpy(&host, addr, 4);
	host = bpf_ntohl(host);
	key = FW_SET_LEAF_16 | (host >> 16);
	if (bpf_map_lookup_elem(leaves, &key))
		return true;
	key = host >> 8;
	leaf = bpf_map_lookup_elem(leaves, &key);
	return leaf && ((leaf->bits[(host & 0xff) >> 3] >> (host & 7)) & 1);
}

/* Is the address (of the family) in the set in this slot? Steering rules
 * ask too (bpf/include/steer.h).
 */
static __always_inline bool fw_set_contains(const __u8 *addr, __u32 family,
					    __u32 slot)
{
	struct fw_lpm_key key = {};
	void *trie;

	if (family == 4)
		return fw_set_has4(addr, slot);
	trie = bpf_map_lookup_elem(&xdpr_fw_sets, &slot);
	if (!trie)
		return false;
	key.prefixlen = 32 + 128;
	key.tag[2] = 6;
	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(trie, &key) != NULL;
}

static __always_inline bool fw_set_has(const struct fw_pkt *p, __u32 slot,
				       __u32 dir)
{
	return fw_set_contains(dir == FW_SRC ? p->src : p->dst, p->family, slot);
}

static __always_inline void fw_count(__u32 id, __u64 len)
{
	struct counter *c = bpf_map_lookup_elem(&xdpr_fw_count, &id);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

static __always_inline void fw_src_key(const struct fw_pkt *p, __u32 *family,
				       __u8 *addr)
{
	*family = p->family;
	__builtin_memcpy(addr, p->src, 16);
}

/* The source's bit in xdpr_fw_blkhint: the XOR of its four 32-bit words
 * (an IPv4 source has three zero words), hashed (firewall/tables.py
 * block_hash() is the same function).
 */
static __always_inline __u32 fw_block_hash(const struct fw_pkt *p)
{
	__u32 w[4];

	__builtin_memcpy(w, p->src, 16);
	return ((w[0] ^ w[1] ^ w[2] ^ w[3]) * FW_PRE_V6_MULT) >> (32 - FW_BLOCK_HINT_BITS);
}

/* The hint's word for p's source, and the source's bit in it. */
static __always_inline __u64 *fw_hint(const struct fw_pkt *p, __u64 *bit)
{
	__u32 h = fw_block_hash(p);
	__u32 word = h >> 6;

	*bit = 1ULL << (h & 63);
	return bpf_map_lookup_elem(&xdpr_fw_blkhint, &word);
}

static __always_inline void fw_hint_block(const struct fw_pkt *p)
{
	__u64 bit;
	__u64 *w = fw_hint(p, &bit);

	if (w)
		__sync_fetch_and_or(w, bit);
}

/* A source over its limit once more: past block_after such packets within a
 * second, block it for block_ns.
 */
static __always_inline void fw_strike(const struct fw_rule *r,
				      const struct fw_pkt *p,
				      struct fw_limit_state *st, __u64 now)
{
	struct fw_block_key key = {};
	struct fw_block blk = {};

	if (!r->block_after)
		return;
	if (now - st->window_start > FW_NS_PER_SEC) {
		st->window_start = now;
		st->strikes = 0;
	}
	if (++st->strikes < r->block_after)
		return;
	st->strikes = 0;
	fw_src_key(p, &key.family, key.addr);
	blk.until = now + r->block_ns;
	blk.rule_id = r->id;
	bpf_map_update_elem(&xdpr_fw_blocked, &key, &blk, BPF_ANY);
	fw_hint_block(p);
}

/* GCRA, the token bucket in arrival times: a packet is in profile when the
 * bucket's theoretical arrival time, after adding its cost, runs at most tau
 * (the burst) ahead of now. The new time is written with compare-and-swap:
 * one source's flows can arrive on several CPUs, and a plain write would let
 * each CPU spend the same tokens. A few tries, then the packet counts as over.
 */
static __always_inline bool fw_gcra(__u64 *tat, __u64 now, __u64 cost,
				    __u64 tau)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 next = (old > now ? old : now) + cost;

		if (next - now > tau)
			return false;
		if (__sync_val_compare_and_swap(tat, old, next) == old)
			return true;
	}
	return false;
}

/* A new source starts with a full bucket. With both rates, the packet
 * budget is taken first: a packet over the byte rate has spent one packet.
 */
static __always_inline int fw_limit(const struct fw_rule *r,
				    const struct fw_pkt *p, __u64 now)
{
	struct fw_limit_key key = { .rule_id = r->id };
	struct fw_limit_state *st;

	fw_src_key(p, &key.family, key.addr);
	st = bpf_map_lookup_elem(&xdpr_fw_limits, &key);
	if (!st) {
		struct fw_limit_state fresh = {
			.tat_pkt = now, .tat_byte = now, .window_start = now,
		};

		bpf_map_update_elem(&xdpr_fw_limits, &key, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&xdpr_fw_limits, &key);
		if (!st)
			return -1;	/* cannot track it: do not punish it */
	}
	if ((r->pkt_ns && !fw_gcra(&st->tat_pkt, now, r->pkt_ns, r->pkt_tau)) ||
	    (r->bps && !fw_gcra(&st->tat_byte, now,
				p->len * FW_NS_PER_SEC / r->bps, r->byte_tau))) {
		fw_strike(r, p, st, now);
		return REASON_FW_RATE_LIMIT;
	}
	return -1;
}

/* Is a block possible for p's source? Its bit in the hint, set when a
 * source is blocked, says so; most frames stop at this one read.
 */
static __always_inline bool fw_maybe_blocked(const struct fw_pkt *p)
{
	__u64 bit;
	__u64 *w = fw_hint(p, &bit);

	return w && (*w & bit);
}

static __always_inline bool fw_blocked(const struct fw_pkt *p, __u64 *now)
{
	struct fw_block_key key = {};
	struct fw_block *blk;

	if (!fw_maybe_blocked(p))
		return false;
	*now = bpf_ktime_get_ns();
	fw_src_key(p, &key.family, key.addr);
	blk = bpf_map_lookup_elem(&xdpr_fw_blocked, &key);
	return blk && blk->until > *now;
}

/* -- the pre-filter ------------------------------------------------------ */

static __always_inline bool fw_word_bit(__u64 *w, __u32 bit)
{
	return w && ((*w >> (bit & 63)) & 1);
}

static __always_inline bool fw_pre_bit(__u32 base, __u32 bit)
{
	__u32 word = base + (bit >> 6);

	return fw_word_bit(bpf_map_lookup_elem(&xdpr_fw_pre, &word), bit);
}

/* An address's bit in a presence bitmap: IPv4 by its /24, IPv6 by a hash of
 * its /32 (firewall/prefilter.py addr_bit() is the same function).
 */
static __always_inline __u32 fw_addr_bit(const __u8 *addr, __u32 family)
{
	__u32 top;

	__builtin_memcpy(&top, addr, 4);
	top = bpf_ntohl(top);
	if (family == 4)
		return top >> (32 - FW_PRE_V4_BITS);
	return (top * FW_PRE_V6_MULT) >> (32 - FW_PRE_V6_BITS);
}

/* An address's coarse bit, then its fine one, at word offsets coarse and
 * fine of map (the pre-filter, or a set's presence bitmaps).
 */
static __always_inline bool fw_addr_present(void *map, const __u8 *addr,
					    __u32 family, __u32 coarse,
					    __u32 fine)
{
	__u32 bit = fw_addr_bit(addr, family);
	__u32 cbit = bit >> (family == 4 ? FW_PRE_V4_COARSE_SHIFT :
					   FW_PRE_V6_COARSE_SHIFT);
	__u32 word = coarse + (cbit >> 6);

	if (!fw_word_bit(bpf_map_lookup_elem(map, &word), cbit))
		return false;
	word = fine + (bit >> 6);
	return fw_word_bit(bpf_map_lookup_elem(map, &word), bit);
}

static __always_inline bool fw_pre_addr(const struct fw_pkt *p, __u32 base,
					__u32 dir)
{
	bool v4 = p->family == 4;
	bool src = dir == FW_SRC;

	return fw_addr_present(&xdpr_fw_pre, src ? p->src : p->dst, p->family,
			       base + (src ? (v4 ? FW_PRE_SRC4C : FW_PRE_SRC6C) :
					     (v4 ? FW_PRE_DST4C : FW_PRE_DST6C)),
			       base + (src ? (v4 ? FW_PRE_SRC4 : FW_PRE_SRC6) :
					     (v4 ? FW_PRE_DST4 : FW_PRE_DST6)));
}

/* Has the set in this slot a prefix near the address (its presence bits)? */
static __always_inline bool fw_set_near(const struct fw_pkt *p, __u32 slot,
					__u32 dir)
{
	void *words = bpf_map_lookup_elem(&xdpr_fw_set_pre, &slot);
	bool v4 = p->family == 4;

	return words &&
	       fw_addr_present(words, dir == FW_SRC ? p->src : p->dst,
			       p->family, v4 ? FW_SET_PRE_V4C : FW_SET_PRE_V6C,
			       v4 ? FW_SET_PRE_V4 : FW_SET_PRE_V6);
}

/* Can some rule (a policy aside) match p? Every rule is anchored on one
 * value it names (firewall/prefilter.py), and a frame it matches has that
 * value: if none of p's values is present, no rule matches. Only the
 * bitmaps that hold anchors are read. A global function, verified once.
 */
__noinline bool fw_candidate(const struct fw_pkt *p, const struct fw_gen *g)
{
	__u32 base, pre;
	bool v4;

	if (!p || !g)
		return true;
	base = p->gen * FW_PRE_GEN_WORDS;
	v4 = p->family == 4;
	pre = g->pre;

	if (pre & FW_PRE_HAS_ALL)
		return true;
	if ((pre & (v4 ? FW_PRE_HAS_SRC4 : FW_PRE_HAS_SRC6)) &&
	    fw_pre_addr(p, base, FW_SRC))
		return true;
	if ((pre & (v4 ? FW_PRE_HAS_DST4 : FW_PRE_HAS_DST6)) &&
	    fw_pre_addr(p, base, FW_DST))
		return true;
	if ((pre & FW_PRE_HAS_DPORT) && fw_pre_bit(base + FW_PRE_DPORT, p->dport))
		return true;
	if ((pre & FW_PRE_HAS_SPORT) && fw_pre_bit(base + FW_PRE_SPORT, p->sport))
		return true;
	if ((pre & FW_PRE_HAS_PROTO) &&
	    fw_pre_bit(base + FW_PRE_PROTO, p->proto & 0xff))
		return true;
#pragma unroll
	for (int i = 0; i < FW_MAX_REFS; i++)
		if ((g->ref_anchor & (1u << i)) &&
		    fw_set_near(p, g->ref_slot[i] & (FW_MAX_SETS - 1),
				g->ref_dir[i]))
			return true;
	return false;
}

/* The field bitmaps of one frame, and the set references it misses. */
struct fw_match {
	union {
		__u64 id[5];	/* each field's bitmap id, until it is looked up */
		struct fw_bitmap *f[5];
	};
	__u32 unmet[FW_MAX_REFS];	/* bitmap ids, FW_NO_BITMAP for none */
};

/* Word w of the AND of every field, without the rules whose set missed. */
static __always_inline __u64 fw_word(const struct fw_match *m, __u32 w)
{
	__u64 v;

	/* the compiler knows w < FW_WORDS and would drop a plain check; the
	 * verifier cannot follow fw_ctz() that far
	 */
	asm volatile("" : "+r"(w));
	w &= FW_WORDS - 1;
	v = m->f[0]->words[w] & m->f[1]->words[w] & m->f[2]->words[w] &
	    m->f[3]->words[w] & m->f[4]->words[w];
#pragma unroll
	for (int i = 0; i < FW_MAX_REFS; i++) {
		struct fw_bitmap *need;

		if (m->unmet[i] == FW_NO_BITMAP)
			continue;
		need = fw_bitmap(m->unmet[i]);
		if (need)
			v &= ~need->words[w];
	}
	return v;
}

/* One rule matched: -2 to look further, -1 to go on routing, or a reason.
 * A global function, so the verifier checks it once on its own instead of
 * in every state of the scan that calls it.
 */
__noinline int fw_apply(const struct fw_pkt *p, __u32 pos, __u64 now)
{
	__u32 idx;
	struct fw_rule *r;
	int reason;

	if (!p)
		return -2;
	idx = (p->gen & 1) * FW_MAX_RULES + pos;
	r = bpf_map_lookup_elem(&xdpr_fw_rules, &idx);
	if (!r)
		return -2;
	fw_count(r->id, p->len);
	switch (r->action) {
	case FW_ALLOW:
		return -1;
	case FW_DROP:
		return (r->flags & FW_RULE_POLICY) ? REASON_FW_POLICY_DROP :
						     REASON_FW_DROP;
	case FW_LIMIT:
		reason = fw_limit(r, p, now ? now : bpf_ktime_get_ns());
		return reason >= 0 ? reason : -2;
	default:
		return -2;
	}
}

/* The scan of one frame's candidates, for bpf_loop(). */
struct fw_scan {
	struct fw_match m;
	struct fw_pkt *p;
	__u64 sum[FW_SUMMARY_WORDS];
	__u64 word;
	__u64 now;
	__u32 base;
	__u32 k;
	int reason;
	bool done;	/* scanned to a verdict or to the end */
};

/* One step either takes the next candidate word from the summary or looks
 * at the next rule in the current word, lowest position first. A bpf_loop()
 * callback, so the verifier checks it once, not once per step.
 */
static long fw_step(__u64 i, void *data)
{
	struct fw_scan *s = data;
	__u32 k, bit;
	int reason;

	if (!s->word) {
		k = s->k;
		if (k >= FW_SUMMARY_WORDS) {
			s->done = true;
			return 1;
		}
		k &= FW_SUMMARY_WORDS - 1;
		if (!s->sum[k]) {
			s->k = k + 1;
			return 0;
		}
		bit = fw_ctz(s->sum[k]);
		s->sum[k] &= s->sum[k] - 1;
		s->base = (k * 64 + bit) * 64;
		s->word = fw_word(&s->m, k * 64 + bit);
		return 0;
	}
	reason = fw_apply(s->p, s->base + fw_ctz(s->word), s->now);
	s->word &= s->word - 1;
	if (reason == -2)
		return 0;
	s->reason = reason;
	s->done = true;
	return 1;
}

/* The drop policy of p's interface, for a frame no rule can match, or -1. */
static __always_inline int fw_policy(const struct fw_pkt *p)
{
	struct fw_policy_key key = { .gen = p->gen, .ifindex = p->ifindex };
	__u32 *pos = bpf_map_lookup_elem(&xdpr_fw_policy, &key);
	int reason;

	if (!pos)
		return -1;
	reason = fw_apply(p, *pos, 0);
	return reason == -2 ? -1 : reason;
}

/* The bitmap id of each field: looked up where some rule names the field,
 * else the generation's bitmap of every rule (all are wildcards there).
 */
static __always_inline void fw_field_ids(struct fw_pkt *p,
					 const struct fw_gen *g, __u64 *ids)
{
	__u32 named = g->named;
	__u32 all = g->all_id;

	ids[0] = (named & (FW_NAMES_IFACE | FW_NAMES_PROTO)) ?
			 fw_ifproto_id(p, named) : all;
	ids[1] = (named & FW_NAMES_SRC) ? fw_addr_id(p, FW_SRC) : all;
	ids[2] = (named & FW_NAMES_DST) ? fw_addr_id(p, FW_DST) : all;
	ids[3] = (named & FW_NAMES_SPORT) ? fw_port_id(p, FW_SRC, p->sport) : all;
	ids[4] = (named & FW_NAMES_DPORT) ? fw_port_id(p, FW_DST, p->dport) : all;
}

/* The rules' verdict for p, or -1. A global function: the verifier checks
 * it once, on its own, instead of once per call site (plain and VLAN-tagged,
 * IPv4 and IPv6), which took the program from 855,172 processed instructions
 * to about 100,000 (the limit is 1,000,000).
 */
__noinline int fw_classify(struct fw_pkt *p)
{
	struct fw_scan s = { .p = p, .reason = -1 };
	struct fw_bitmap *any;
	__u32 unnamed;
	struct fw_summary *sm[5];
	struct fw_match *m = &s.m;
	struct fw_gen *g;

	if (!p)
		return -1;
	g = bpf_map_lookup_elem(&xdpr_fw_gens, &p->gen);
	if (!g)
		return -1;
	/* the clock is read only where it is needed: a source the block hint
	 * names, and a limit rule that matched (a clock read is not cheap in
	 * a VM)
	 */
	if (g->has_block && fw_blocked(p, &s.now))
		return REASON_FW_BLOCKED;
	if (!fw_candidate(p, g))
		return g->has_policy ? fw_policy(p) : -1;
	fw_field_ids(p, g, m->id);
	/* First the summaries, from an array: */
#pragma unroll
	for (int i = 0; i < 5; i++) {
		__u32 id = m->id[i];

		sm[i] = bpf_map_lookup_elem(&xdpr_fw_summary, &id);
		if (!sm[i])
			return -1;	/* a generation being torn down: none match */
	}
	/* A word can hold a match only if every field has it, and if some
	 * field holds a rule anchored there: each rule is anchored on one field
	 * it names, so wildcards alone (a source no rule names, a port no rule
	 * names) do not make every word a candidate.
	 */
#pragma unroll
	for (int i = 0; i < FW_SUMMARY_WORDS; i++)
		s.sum[i] = sm[0]->summary[i] & sm[1]->summary[i] &
			   sm[2]->summary[i] & sm[3]->summary[i] &
			   sm[4]->summary[i] &
			   (sm[0]->anchor[i] | sm[1]->anchor[i] |
			    sm[2]->anchor[i] | sm[3]->anchor[i] |
			    sm[4]->anchor[i]);
	if (!(s.sum[0] | s.sum[1] | s.sum[2] | s.sum[3]))
		return -1;	/* no rule: the policy is a rule too */
	/* ... then, for a frame some rule may match, the whole bitmaps. A
	 * field no rule names takes another field's bitmap (an AND is the same
	 * twice), the bitmap of every rule only when no field is named.
	 */
	any = NULL;
	unnamed = 0;
#pragma unroll
	for (int i = 0; i < 5; i++) {
		__u32 id = m->id[i];

		if (id == g->all_id) {
			unnamed |= 1u << i;
			continue;
		}
		m->f[i] = fw_bitmap(id);
		if (!m->f[i])
			return -1;
		any = m->f[i];
	}
	if (!any) {
		any = fw_bitmap(g->all_id);
		if (!any)
			return -1;
	}
#pragma unroll
	for (int i = 0; i < 5; i++)
		if (unnamed & (1u << i))
			m->f[i] = any;
	/* Rules on a set the address is not in are taken out. */
#pragma unroll
	for (int i = 0; i < FW_MAX_REFS; i++) {
		m->unmet[i] = FW_NO_BITMAP;
		if (i < g->nrefs &&
		    !fw_set_has(p, g->ref_slot[i] & (FW_MAX_SETS - 1),
				g->ref_dir[i]))
			m->unmet[i] = g->ref_need[i];
	}
	/* the usual match (one candidate word, its first rule decides) in two
	 * steps without bpf_loop()'s calls; the rest in the loop
	 */
	if (!fw_step(0, &s) && !fw_step(1, &s))
		bpf_loop(FW_MAX_STEPS, fw_step, &s, 0);
	/* out of steps (a frame matching over a thousand limit rules): fail
	 * closed, never let it past the rules it did not reach
	 */
	return s.done ? s.reason : REASON_FW_UNPARSED;
}

/* The verdict as a constant: the router indexes its counters with it, and
 * the verifier follows a constant where it loses a computed range.
 */
static __always_inline int fw_const(int reason)
{
	asm volatile("" : "+r"(reason));	/* keep the compiler from merging */
	return reason;
}

static __always_inline int fw_verdict(int reason)
{
	switch (reason) {
	case REASON_FW_DROP:
		return fw_const(REASON_FW_DROP);
	case REASON_FW_POLICY_DROP:
		return fw_const(REASON_FW_POLICY_DROP);
	case REASON_FW_RATE_LIMIT:
		return fw_const(REASON_FW_RATE_LIMIT);
	case REASON_FW_BLOCKED:
		return fw_const(REASON_FW_BLOCKED);
	case REASON_FW_UNPARSED:
		return fw_const(REASON_FW_UNPARSED);
	default:
		return -1;
	}
}

/* Is any rule loaded, and which generation is live: one read. */
static __always_inline bool fw_live_gen(__u32 *gen)
{
	__u32 key = 0;
	struct fw_state *st = bpf_map_lookup_elem(&xdpr_fw_state, &key);

	if (!st || !st->enabled)
		return false;
	*gen = st->gen & 1;
	return true;
}

/* Ports at l4 if the protocol has them and the datagram holds them (the
 * frame's end for the verifier, the datagram's for the meaning). An ICMP or
 * ICMPv6 message puts its type in the source-port field, in slots of its own
 * past every port, so port ranges never match it.
 */
static __always_inline void fw_ports(struct fw_pkt *p, const void *l4,
				     const void *l3_end, const void *end)
{
	const __u8 *type = l4;
	const __be16 *ports = parse_port_words(l4, l3_end, end);

	p->sport = FW_NOPORT;
	p->dport = FW_NOPORT;
	if (p->proto == (p->family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6)) {
		if ((const void *)(type + 1) <= end &&
		    (const void *)(type + 1) <= l3_end)
			p->sport = FW_ICMP_SLOT + *type;
		return;
	}
	if (!l4_has_ports(p->proto) || !ports)
		return;
	p->sport = bpf_ntohs(ports[0]);
	p->dport = bpf_ntohs(ports[1]);
}

/* Any IPv4 frame with a sane version and IHL: options, fragments (only the
 * first has ports), bad checksums and TTL 1 included.
 */
static __always_inline int firewall_ipv4(struct xdp_md *ctx,
					 const struct iphdr *iph, void *end)
{
	struct fw_pkt p = {};
	const void *l3_end = (void *)iph + bpf_ntohs(iph->tot_len);

	if (!fw_live_gen(&p.gen))
		return -1;
	p.family = 4;
	p.ifindex = ctx->ingress_ifindex;
	p.proto = iph->protocol;
	p.len = xdp_frame_len(ctx);
	__builtin_memcpy(p.src, &iph->saddr, 4);
	__builtin_memcpy(p.dst, &iph->daddr, 4);
	if (iph->frag_off & bpf_htons(IP_OFFSET)) {
		p.sport = FW_NOPORT;
		p.dport = FW_NOPORT;
	} else {
		fw_ports(&p, (void *)iph + (iph->ihl & 0xf) * 4, l3_end, end);
	}
	return fw_verdict(fw_classify(&p));
}

static __always_inline int firewall_ipv6(struct xdp_md *ctx,
					 const struct ipv6hdr *ip6h, void *end)
{
	struct fw_pkt p = {};
	const void *l3_end = (void *)(ip6h + 1) + bpf_ntohs(ip6h->payload_len);
	const void *l4;

	if (!fw_live_gen(&p.gen))
		return -1;
	p.family = 6;
	p.ifindex = ctx->ingress_ifindex;
	p.len = xdp_frame_len(ctx);
	__builtin_memcpy(p.src, &ip6h->saddr, 16);
	__builtin_memcpy(p.dst, &ip6h->daddr, 16);
	/* a rule on ports must not be dodged with a destination options header */
	l4 = parse_ipv6_extensions(ip6h, l3_end, end, &p.proto);
	if (l4 && ipv6_walked_extension(p.proto))
		return REASON_FW_UNPARSED;	/* fail closed */
	if (l4) {
		fw_ports(&p, l4, l3_end, end);
	} else {
		p.sport = FW_NOPORT;
		p.dport = FW_NOPORT;
	}
	return fw_verdict(fw_classify(&p));
}

#endif
