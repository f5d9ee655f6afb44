package rules

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/iotgw/gateway"
)

// TestIndexAgreesWithMatchTopic compares the topic trie with the gateway's
// reference matcher on random filters and topics.
func TestIndexAgreesWithMatchTopic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "", "c"}
	randTopic := func() string {
		n := 1 + r.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = levels[r.IntN(len(levels))]
		}
		return strings.Join(parts, "/")
	}
	randFilter := func() string {
		n := 1 + r.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			switch x := r.IntN(6); {
			case x == 0:
				parts[i] = "+"
			case x == 1 && i == n-1:
				parts[i] = "#"
			default:
				parts[i] = levels[r.IntN(len(levels))]
			}
		}
		return strings.Join(parts, "/")
	}
	for round := 0; round < 200; round++ {
		var rs []*compiledRule
		for i := 0; i < 20; i++ {
			rs = append(rs, &compiledRule{Rule: Rule{Name: "r", Match: Match{Topic: randFilter()}}})
		}
		ix := buildIndex(rs)
		for j := 0; j < 50; j++ {
			topic := randTopic()
			got := ix.candidates(&gateway.Message{Topic: topic}, nil)
			var want []int32
			for i, cr := range rs {
				if gateway.MatchTopic(cr.Match.Topic, topic) {
					want = append(want, int32(i))
				}
			}
			if !slices.Equal(got, want) {
				var fs []string
				for _, cr := range rs {
					fs = append(fs, cr.Match.Topic)
				}
				t.Fatalf("topic %q: index %v, MatchTopic %v\nfilters %q", topic, got, want, fs)
			}
		}
	}
}
