// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test-only fault injector for kernels without sch_netem: attached after the
 * shaper on egress, it drops a configured share of packets and duplicates
 * another share. Clones carry FAULT_MARK so they pass through untouched.
 */
#include "shaping_bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define FAULT_MARK 0x1a7e0001

struct fault_cfg {
	__u32 loss_ppm; /* packets dropped per million */
	__u32 dup_ppm;  /* packets duplicated per million */
};

struct fault_stats {
	__u64 seen;
	__u64 dropped;
	__u64 duplicated;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fault_cfg);
} fault_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fault_stats);
} fault_stats SEC(".maps");

SEC("tc")
int inject_faults(struct __sk_buff *skb)
{
	__u32 k = 0;
	struct fault_cfg *cfg = bpf_map_lookup_elem(&fault_cfg, &k);
	struct fault_stats *st = bpf_map_lookup_elem(&fault_stats, &k);

	if (!cfg || !st || skb->mark == FAULT_MARK)
		return TC_ACT_UNSPEC;
	st->seen++;
	if (cfg->loss_ppm && bpf_get_prandom_u32() % 1000000 < cfg->loss_ppm) {
		st->dropped++;
		return TC_ACT_SHOT;
	}
	if (cfg->dup_ppm && bpf_get_prandom_u32() % 1000000 < cfg->dup_ppm) {
		__u32 mark = skb->mark;
		skb->mark = FAULT_MARK;
		if (bpf_clone_redirect(skb, skb->ifindex, 0) == 0)
			st->duplicated++;
		skb->mark = mark;
	}
	return TC_ACT_UNSPEC;
}
