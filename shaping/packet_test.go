package shaping

import (
	"encoding/binary"
)

// Test packet builders: Ethernet frames with optional VLAN tags around an
// IPv4 or IPv6 UDP datagram.

var (
	macDst = []byte{0x02, 0, 0, 0, 0, 2}
	macSrc = []byte{0x02, 0, 0, 0, 0, 1}
)

func ether(proto uint16, vlans ...uint16) []byte {
	b := append(append([]byte{}, macDst...), macSrc...)
	for _, v := range vlans {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return binary.BigEndian.AppendUint16(b, proto)
}

func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ipv4UDP returns an Ethernet/IPv4/UDP frame with the given DSCP and ECN.
func ipv4UDP(dscp, ecn uint8, payload int, vlans ...uint16) []byte {
	b := ether(0x0800, vlans...)
	ip := make([]byte, 20)
	ip[0] = 0x45
	ip[1] = dscp<<2 | ecn&3
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+payload))
	ip[8] = 64
	ip[9] = 17
	copy(ip[12:], []byte{10, 0, 0, 1})
	copy(ip[16:], []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip))
	b = append(b, ip...)
	udp := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(udp[0:], 4000)
	binary.BigEndian.PutUint16(udp[2:], 5000)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+payload))
	return append(b, udp...)
}

// ipv6UDP returns an Ethernet/IPv6/UDP frame with the given DSCP, ECN and
// flow label.
func ipv6UDP(dscp, ecn uint8, flow uint32, payload int, vlans ...uint16) []byte {
	b := ether(0x86DD, vlans...)
	ip := make([]byte, 40)
	tc := uint32(dscp)<<2 | uint32(ecn&3)
	binary.BigEndian.PutUint32(ip[0:], 6<<28|tc<<20|flow&0xfffff)
	binary.BigEndian.PutUint16(ip[4:], uint16(8+payload))
	ip[6] = 17
	ip[7] = 64
	ip[8], ip[23] = 0xfd, 1
	ip[24], ip[39] = 0xfd, 2
	b = append(b, ip...)
	udp := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+payload))
	return append(b, udp...)
}
