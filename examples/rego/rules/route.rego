# Routing policy for the gateway (rules.enabled: true loads rules/*.rego).
#
# Input, one document per message:
#   {"id": "<32 hex>", "device": "plc-1", "topic": "plant/a/env",
#    "connector": "modbus", "time": "2026-11-24T14:00:00Z",
#    "priority": 4, "qos": 1,
#    "tags": {"site": "A"},
#    "points": {"temperature": 81.5, "state": "run", "on": true}}
#
# Output: data.gateway.decision, an object with any of
#   sinks     set or array of sink names to send the message to
#   topic     new message topic (sinks apply their own topic template)
#   priority  0..255, qos 0..2
#   tags      object of tags to add or replace
#   drop      true discards the message (wins over sinks)
# An undefined decision routes the message nowhere (counted as unrouted).
package gateway

# Test traffic never leaves the gateway.
drop if input.tags.site == "test"

# Alarms go to the alarm sink at high priority under a site topic.
alarm if input.points.temperature > 80

sinks contains "cloud"

sinks contains "alarms" if alarm

decision := {"drop": true} if drop

decision := {
	"sinks": sinks,
	"topic": sprintf("plant/%s/%s/%s", [object.get(input.tags, "site", "unknown"), input.device, input.topic]),
	"priority": priority,
	"tags": {"routed_by": "rego"},
} if not drop

priority := 7 if alarm

priority := input.priority if not alarm
