// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * DSCP classifier, ingress policer and packet sampler for the shaping
 * package. Both programs parse Ethernet (with up to two VLAN tags), IPv4 and
 * IPv6, map the DSCP through dscp_class to a class index, and
 *   egress:  set skb->priority to the class's HTB handle, optionally re-mark
 *            the DSCP, or pace with skb->tstamp (EDT) when running over fq;
 *   ingress: police the class with a token bucket and drop what exceeds it.
 * Both count packets, bytes and drops per class and direction, and send one
 * in every N packets to user space (ring buffer, or perf buffer when built
 * with SHAPING_PERF). They return TC_ACT_UNSPEC (TCX_NEXT) so programs
 * attached after them still run.
 */
#include "shaping_bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_CLASSES 8
/* Counter slot for packets that are not IP or cannot be parsed. */
#define SLOT_OTHER MAX_CLASSES
#define SLOTS (MAX_CLASSES + 1)
#define DIR_EGRESS 0
#define DIR_INGRESS 1
#define NO_REMARK 0xff
#define MODE_HTB 0
#define MODE_EDT 1

struct class_cfg {
	__u32 handle;     /* HTB major:minor written to skb->priority; 0 leaves it */
	__u8 remark;      /* new DSCP on egress, NO_REMARK keeps it */
	__u8 pad[3];
	__u64 police_Bps; /* ingress token rate in bytes/s, 0 = no policing */
	__u64 burst;      /* ingress bucket depth in bytes */
	__u64 edt_Bps;    /* egress EDT pacing rate in bytes/s, 0 = no pacing */
	/* The same limits as picoseconds per byte and the burst as nanoseconds,
	 * for the lock-free (GCRA) variant. */
	__u64 police_ps_per_byte;
	__u64 burst_ns;
	__u64 edt_ps_per_byte;
};

struct bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tokens;  /* ingress: bytes available */
	__u64 last_ns; /* ingress: last refill or theoretical arrival time;
			  egress EDT: next departure */
};

struct counter {
	__u64 packets;
	__u64 bytes;
	__u64 drops;
};

struct settings {
	__u32 sample_every; /* 0 disables sampling */
	__u32 mode;         /* MODE_HTB or MODE_EDT */
	__u64 horizon_ns;   /* EDT: drop packets scheduled further out */
};

struct sample_event {
	__u64 ts_ns;
	__u32 ifindex;
	__u32 len;
	__u16 eth_proto;
	__u8 dscp;
	__u8 class_idx;
	__u8 dir;
	__u8 l4_proto;
	__u8 dropped;
	__u8 pad;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} dscp_class SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CLASSES);
	__type(key, __u32);
	__type(value, struct class_cfg);
} class_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CLASSES * 2);
	__type(key, __u32);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOTS * 2);
	__type(key, __u32);
	__type(value, struct counter);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

/* Per-CPU packets seen since the last sample, and events lost. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} sample_state SEC(".maps");

#ifdef SHAPING_PERF
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
#endif

struct pkt {
	__u32 l3_off;
	__u16 eth_proto;
	__u8 dscp;
	__u8 l4_proto;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* parse fills p and returns 0 for a well-formed IPv4/IPv6 header, -1 otherwise. */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p, int want_addrs)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *eth = data;
	__u32 off = ETH_HLEN;

	if ((void *)(eth + ETH_HLEN) > end)
		return -1;
	__u16 proto = ((__u16)eth[12] << 8) | eth[13];
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		__u8 *tag = data + off;
		if ((void *)(tag + 4) > end)
			return -1;
		proto = ((__u16)tag[2] << 8) | tag[3];
		off += 4;
	}
	p->eth_proto = proto;
	p->l3_off = off;
	__u8 *ip = data + off;
	if (proto == ETH_P_IP) {
		if ((void *)(ip + 20) > end)
			return -1;
		if ((ip[0] >> 4) != 4 || (ip[0] & 0x0f) < 5)
			return -1;
		p->dscp = ip[1] >> 2;
		p->l4_proto = ip[9];
		if (want_addrs) {
			__builtin_memcpy(p->saddr, ip + 12, 4);
			__builtin_memcpy(p->daddr, ip + 16, 4);
		}
		return 0;
	}
	if (proto == ETH_P_IPV6) {
		if ((void *)(ip + 40) > end)
			return -1;
		if ((ip[0] >> 4) != 6)
			return -1;
		p->dscp = ((ip[0] & 0x0f) << 2) | (ip[1] >> 6);
		p->l4_proto = ip[6];
		if (want_addrs) {
			__builtin_memcpy(p->saddr, ip + 8, 16);
			__builtin_memcpy(p->daddr, ip + 24, 16);
		}
		return 0;
	}
	return -1;
}

static __always_inline void count(__u32 slot, __u32 len, int dropped)
{
	struct counter *c = bpf_map_lookup_elem(&counters, &slot);
	if (!c)
		return;
	if (dropped) {
		c->drops++;
		return;
	}
	c->packets++;
	c->bytes += len;
}

static __always_inline void sample(struct __sk_buff *skb, struct settings *s, int dir, __u32 cls,
				   int dropped)
{
	__u32 k = 0;
	__u64 *seen;

	if (!s || s->sample_every == 0)
		return;
	seen = bpf_map_lookup_elem(&sample_state, &k);
	if (!seen)
		return;
	if (++*seen < s->sample_every)
		return;
	*seen = 0;

	struct pkt p = {};
	int ok = parse(skb, &p, 1) == 0;
	struct sample_event ev = {};
	ev.ts_ns = bpf_ktime_get_ns();
	ev.ifindex = skb->ifindex;
	ev.len = skb->len;
	ev.eth_proto = ok ? p.eth_proto : bpf_ntohs(skb->protocol);
	ev.dscp = p.dscp;
	ev.class_idx = cls;
	ev.dir = dir;
	ev.l4_proto = p.l4_proto;
	ev.dropped = dropped;
	__builtin_memcpy(ev.saddr, p.saddr, 16);
	__builtin_memcpy(ev.daddr, p.daddr, 16);

	long err;
#ifdef SHAPING_PERF
	err = bpf_perf_event_output(skb, &events, BPF_F_CURRENT_CPU, &ev, sizeof(ev));
	/* Counted here rather than from the reader's lost records: perf only
	 * reports those with the next event that fits, which may never come. */
#else
	struct sample_event *slot = bpf_ringbuf_reserve(&events, sizeof(ev), 0);
	if (slot) {
		__builtin_memcpy(slot, &ev, sizeof(ev));
		bpf_ringbuf_submit(slot, 0);
		err = 0;
	} else {
		err = -1;
	}
#endif
	if (err) {
		k = 1;
		__u64 *lost = bpf_map_lookup_elem(&sample_state, &k);
		if (lost)
			(*lost)++;
	}
}

/* remark rewrites the DSCP bits keeping ECN; IPv4 gets its checksum fixed. */
static __always_inline void remark(struct __sk_buff *skb, struct pkt *p, __u8 dscp)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *ip = data + p->l3_off;

	if ((void *)(ip + 2) > end)
		return;
	__be16 old = *(__be16 *)ip;
	__u16 h = bpf_ntohs(old);
	if (p->eth_proto == ETH_P_IP)
		h = (h & 0xff03) | ((__u16)dscp << 2);
	else
		h = (h & 0xf03f) | ((__u16)dscp << 6);
	__be16 neu = bpf_htons(h);
	if (neu == old)
		return;
	if (p->eth_proto == ETH_P_IP)
		bpf_l3_csum_replace(skb, p->l3_off + 10, old, neu, 2);
	bpf_skb_store_bytes(skb, p->l3_off, &neu, 2, 0);
}

#ifdef SHAPING_PERF
/*
 * The perf build targets older kernels (no BPF atomics before 5.12), so it
 * guards the bucket with a spin lock.
 */
/* police takes len bytes from the class bucket; 1 means drop. */
static __always_inline int police(__u32 cls, struct class_cfg *cfg, __u32 len)
{
	__u32 k = MAX_CLASSES + cls;
	struct bucket *b;
	int drop = 0;

	if (cfg->police_Bps == 0)
		return 0;
	b = bpf_map_lookup_elem(&buckets, &k);
	if (!b)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 burst = cfg->burst ? cfg->burst : 1514;
	bpf_spin_lock(&b->lock);
	__u64 tokens = burst;
	if (b->last_ns == 0 || now - b->last_ns > 1000000000ULL) {
		b->last_ns = now; /* first packet or idle for a second: full bucket */
	} else {
		__u64 added = (now - b->last_ns) * cfg->police_Bps / 1000000000ULL;
		tokens = b->tokens + added;
		if (tokens >= burst) {
			tokens = burst;
			b->last_ns = now;
		} else {
			/* Keep the fraction of a byte not yet earned for next time. */
			b->last_ns += added * 1000000000ULL / cfg->police_Bps;
		}
	}
	if (tokens >= len)
		tokens -= len;
	else
		drop = 1;
	b->tokens = tokens;
	bpf_spin_unlock(&b->lock);
	return drop;
}

/* pace sets an earliest departure time for EDT; 1 means beyond the horizon. */
static __always_inline int pace(struct __sk_buff *skb, __u32 cls, struct class_cfg *cfg,
				struct settings *s)
{
	__u32 k = cls;
	struct bucket *b;
	int drop = 0;

	if (cfg->edt_Bps == 0)
		return 0;
	b = bpf_map_lookup_elem(&buckets, &k);
	if (!b)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 delay = (__u64)skb->len * 1000000000ULL / cfg->edt_Bps;
	__u64 ts = skb->tstamp > now ? skb->tstamp : now;
	bpf_spin_lock(&b->lock);
	if (b->last_ns > ts)
		ts = b->last_ns;
	if (ts - now > s->horizon_ns)
		drop = 1;
	else
		b->last_ns = ts + delay;
	bpf_spin_unlock(&b->lock);
	if (!drop)
		skb->tstamp = ts;
	return drop;
}

#else
/*
 * gcra spends cost nanoseconds of the schedule in *tat (the theoretical
 * arrival time of the next packet) without a lock: the packet conforms when
 * its transmission would end at most limit_ns after now (a bucket of
 * limit_ns worth of bytes). *at is when it may leave.
 * Returns 1 when it does not conform.
 */
static __always_inline int gcra(__u64 *tat, __u64 now, __u64 cost, __u64 limit_ns, __u64 *at)
{
	__u64 old = *(volatile __u64 *)tat;

	if (old <= now && __sync_val_compare_and_swap(tat, old, now + cost) == old) {
		*at = now;
		return 0;
	}
	old = __sync_fetch_and_add(tat, cost);
	if (old < now)
		old = now;
	if (old - now + cost > limit_ns) {
		__sync_fetch_and_add(tat, -cost);
		return 1;
	}
	*at = old;
	return 0;
}

/* police returns 1 when the packet exceeds the class's ingress rate. */
static __always_inline int police(__u32 cls, struct class_cfg *cfg, __u32 len)
{
	__u32 k = MAX_CLASSES + cls;
	__u64 at;

	if (cfg->police_ps_per_byte == 0)
		return 0;
	struct bucket *b = bpf_map_lookup_elem(&buckets, &k);
	if (!b)
		return 0;
	__u64 cost = (__u64)len * cfg->police_ps_per_byte / 1000;
	return gcra(&b->last_ns, bpf_ktime_get_ns(), cost, cfg->burst_ns, &at);
}

/* pace sets an earliest departure time for EDT; 1 means beyond the horizon. */
static __always_inline int pace(struct __sk_buff *skb, __u32 cls, struct class_cfg *cfg,
				struct settings *s)
{
	__u32 k = cls;
	__u64 at;

	if (cfg->edt_ps_per_byte == 0)
		return 0;
	struct bucket *b = bpf_map_lookup_elem(&buckets, &k);
	if (!b)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 cost = (__u64)skb->len * cfg->edt_ps_per_byte / 1000;
	if (gcra(&b->last_ns, now, cost, s->horizon_ns, &at))
		return 1;
	if (at > skb->tstamp)
		skb->tstamp = at;
	return 0;
}

#endif

static __always_inline int classify(struct __sk_buff *skb, int dir)
{
	struct pkt p = {};
	__u32 k = 0;
	struct settings *s = bpf_map_lookup_elem(&settings, &k);
	__u32 base = dir * SLOTS;
	__u32 len = skb->len;

	if (parse(skb, &p, 0) < 0) {
		count(base + SLOT_OTHER, len, 0);
		sample(skb, s, dir, SLOT_OTHER, 0);
		return TC_ACT_UNSPEC;
	}
	k = p.dscp;
	__u32 *cp = bpf_map_lookup_elem(&dscp_class, &k);
	__u32 cls = cp ? *cp : 0;
	if (cls >= MAX_CLASSES) {
		count(base + SLOT_OTHER, len, 0);
		sample(skb, s, dir, SLOT_OTHER, 0);
		return TC_ACT_UNSPEC;
	}
	struct class_cfg *cfg = bpf_map_lookup_elem(&class_cfg, &cls);
	if (!cfg)
		return TC_ACT_UNSPEC;

	int drop = 0;
	if (dir == DIR_EGRESS) {
		if (cfg->handle)
			skb->priority = cfg->handle;
		if (s && s->mode == MODE_EDT)
			drop = pace(skb, cls, cfg, s);
		if (!drop && cfg->remark != NO_REMARK && cfg->remark < 64)
			remark(skb, &p, cfg->remark);
	} else {
		drop = police(cls, cfg, len);
	}
	count(base + cls, len, drop);
	sample(skb, s, dir, cls, drop);
	return drop ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

SEC("tc")
int classify_egress(struct __sk_buff *skb)
{
	return classify(skb, DIR_EGRESS);
}

SEC("tc")
int classify_ingress(struct __sk_buff *skb)
{
	return classify(skb, DIR_INGRESS);
}
