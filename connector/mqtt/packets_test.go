package mqtt

import (
	"encoding/binary"

	"github.com/iotgw/gateway/internal/mqttwire"
)

// Just enough MQTT 3.1.1 encoding for raw-socket tests and the load
// generator.

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func connectPacket(clientID, user, pass string) []byte {
	var v []byte
	v = appendString(v, "MQTT")
	v = append(v, 4, 0xC2, 0, 60) // level 4; username, password, clean session; keepalive 60s
	v = appendString(v, clientID)
	v = appendString(v, user)
	v = appendString(v, pass)
	return mqttwire.AppendPacket(nil, 0x10, v)
}

func publishPacket(topic string, payload []byte) []byte {
	v := appendString(nil, topic)
	v = append(v, payload...)
	return mqttwire.AppendPacket(nil, 0x30, v)
}

func publishQoS1Packet(topic string, id uint16, payload []byte) []byte {
	v := appendString(nil, topic)
	v = binary.BigEndian.AppendUint16(v, id)
	v = append(v, payload...)
	return mqttwire.AppendPacket(nil, 0x32, v)
}

func subscribePacket(id uint16, filter string, qos byte) []byte {
	v := binary.BigEndian.AppendUint16(nil, id)
	v = appendString(v, filter)
	v = append(v, qos)
	return mqttwire.AppendPacket(nil, 0x82, v)
}

// connectOpts are the CONNECT fields the session tests vary.
type connectOpts struct {
	clientID, user, pass string
	persistent           bool   // clean session off
	keepalive            uint16 // seconds
	willTopic, willMsg   string
}

func (o connectOpts) packet() []byte {
	var v []byte
	v = appendString(v, "MQTT")
	flags := byte(0xC0)
	if !o.persistent {
		flags |= 0x02
	}
	if o.willTopic != "" {
		flags |= 0x04 // will flag, QoS 0, no retain
	}
	v = append(v, 4, flags)
	v = binary.BigEndian.AppendUint16(v, o.keepalive)
	v = appendString(v, o.clientID)
	if o.willTopic != "" {
		v = appendString(v, o.willTopic)
		v = appendString(v, o.willMsg)
	}
	v = appendString(v, o.user)
	v = appendString(v, o.pass)
	return mqttwire.AppendPacket(nil, 0x10, v)
}
